"""`syncd deploy package|lock|enable-eventbridge`: function packages, and buckets ready
for them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncd.cli.context import EXIT_OK, UsageError


def cmd_package(args: argparse.Namespace) -> int:
    from deploy.package import DeployError, build

    try:
        built = build(args.cloud, Path(args.out), with_deps=not args.no_deps)
    except DeployError as exc:
        raise UsageError(str(exc)) from None
    print(f"built {built} ({built.stat().st_size:,} bytes)")
    return EXIT_OK


def cmd_lock(args: argparse.Namespace) -> int:
    from deploy.package import DeployError, lock

    for cloud in args.clouds:
        try:
            print(f"wrote {lock(cloud)}")
        except DeployError as exc:
            raise UsageError(str(exc)) from None
    return EXIT_OK


def cmd_enable_eventbridge(args: argparse.Namespace) -> int:
    import boto3

    from deploy.eventbridge import enable_eventbridge

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    if enable_eventbridge(s3, args.bucket):
        print(f"{args.bucket}: EventBridge delivery on; its other notifications are unchanged")
    else:
        print(f"{args.bucket}: EventBridge delivery was already on")
    return EXIT_OK


def register(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="build serverless function packages")
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    p = actions.add_parser("package", help="build the archive one cloud deploys")
    p.add_argument("cloud", choices=["aws", "gcp", "azure"], help="which cloud's package")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--no-deps", action="store_true", help="leave third-party wheels out (aws, azure)"
    )
    p.set_defaults(func=cmd_package)

    p = actions.add_parser("lock", help="pin the functions' dependencies (deploy/constraints-*)")
    p.add_argument(
        "clouds", nargs="*", default=["aws", "gcp", "azure"], help="which clouds (default: all)"
    )
    p.set_defaults(func=cmd_lock)

    p = actions.add_parser(
        "enable-eventbridge",
        help="turn on a bucket's EventBridge delivery, keeping its other notifications",
    )
    p.add_argument("bucket", help="the S3 bucket")
    p.add_argument("--profile", help="AWS profile (default: the default credential chain)")
    p.add_argument("--region", help="the bucket's region")
    p.add_argument("--endpoint-url", help="an S3-compatible endpoint")
    p.set_defaults(func=cmd_enable_eventbridge)
