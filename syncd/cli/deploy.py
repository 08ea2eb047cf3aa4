"""`syncd deploy package aws|gcp|azure`: build the artifact a cloud deploys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncd.cli.context import EXIT_OK, UsageError
from syncd.deploy import DeployError, build_aws, build_azure, build_gcp


def cmd_package(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        if args.cloud == "aws":
            built = build_aws(out, with_deps=not args.no_deps)
        elif args.cloud == "gcp":
            built = build_gcp(out)
        else:
            built = build_azure(out)
    except DeployError as exc:
        raise UsageError(str(exc)) from None
    print(f"built {built}")
    return EXIT_OK


def register(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="build serverless function packages")
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    p = actions.add_parser("package", help="build the artifact one cloud deploys")
    p.add_argument("cloud", choices=["aws", "gcp", "azure"], help="which cloud's package")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-deps", action="store_true", help="aws: leave third-party wheels out")
    p.set_defaults(func=cmd_package)
