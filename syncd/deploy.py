"""`syncd deploy package aws|gcp|azure --out DIR`: build what each cloud deploys.

- aws: `syncd-aws-lambda.zip`, handler `handlers.aws_lambda.handler`, with manylinux wheels
  for the Lambda Python 3.11 x86_64 runtime (boto3 is in the runtime and is left out);
- gcp: a source folder with `main.py` (entry points `on_storage_event`, `on_pubsub_push`,
  `on_storage_event_gen1`), the `syncd` package and `requirements.txt`;
- azure: a function-app folder with `function_app.py`, `host.json`, the `syncd` package and
  `requirements.txt`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import syncd

PACKAGE = Path(syncd.__file__).resolve().parent
HANDLERS = PACKAGE.parent / "handlers"
CORE = ["pydantic>=2.6", "pyyaml>=6.0", "structlog>=24.1", "psycopg[binary]>=3.1"]
REQUIREMENTS = {
    "aws": CORE,
    "gcp": [*CORE, "functions-framework>=3.5", "cloudevents>=1.10"],
    "azure": [*CORE, "azure-functions>=1.18"],
}


class DeployError(Exception):
    """The package cannot be built (the message says why)."""


def _copy_package(target: Path) -> None:
    shutil.copytree(
        PACKAGE, target / "syncd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def _handler(*parts: str) -> Path:
    path = HANDLERS.joinpath(*parts)
    if not path.exists():
        raise DeployError(f"{path} is missing: build from a checkout of the syncd repository")
    return path


def build_aws(out: Path, *, with_deps: bool = True) -> Path:
    with tempfile.TemporaryDirectory(prefix="syncd-lambda-") as tmp:
        root = Path(tmp)
        _copy_package(root)
        (root / "handlers").mkdir()
        (root / "handlers" / "__init__.py").write_text("")
        shutil.copy(_handler("aws_lambda.py"), root / "handlers" / "aws_lambda.py")
        if with_deps:
            command = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(root),
                "--platform",
                "manylinux2014_x86_64",
                "--implementation",
                "cp",
                "--python-version",
                "3.11",
                "--only-binary=:all:",
                *REQUIREMENTS["aws"],
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise DeployError(f"pip could not fetch Lambda wheels:\n{done.stderr[-2000:]}")
        out.mkdir(parents=True, exist_ok=True)
        archive = out / "syncd-aws-lambda.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    bundle.write(path, path.relative_to(root).as_posix())
    return archive


def _source_folder(out: Path, handlers: dict[str, Path], requirements: list[str]) -> Path:
    """A folder the cloud builds from: the syncd package, the entry files, requirements.txt."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "syncd", ignore_errors=True)
    _copy_package(out)
    for name, source in handlers.items():
        shutil.copy(source, out / name)
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return out


def build_gcp(out: Path) -> Path:
    return _source_folder(
        out, {"main.py": _handler("gcp_function", "main.py")}, REQUIREMENTS["gcp"]
    )


def build_azure(out: Path) -> Path:
    handlers = {
        "function_app.py": _handler("azure_function", "function_app.py"),
        "host.json": _handler("azure_function", "host.json"),
    }
    return _source_folder(out, handlers, REQUIREMENTS["azure"])


def cmd_package(args: argparse.Namespace) -> int:
    from syncd.cli import UsageError

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
    return 0


def register(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="build serverless function packages")
    actions = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    p = actions.add_parser("package", help="build the artifact one cloud deploys")
    p.add_argument("cloud", choices=["aws", "gcp", "azure"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-deps", action="store_true", help="aws: leave third-party wheels out")
    p.set_defaults(func=cmd_package)
