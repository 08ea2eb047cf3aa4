"""`syncd deploy package aws|gcp|azure --out DIR`: build what each cloud deploys.

- aws: `syncd-aws-lambda.zip`, handler `handlers.aws_lambda.handler`, with manylinux wheels
  for the Lambda Python 3.11 x86_64 runtime (boto3 is in the runtime and is left out);
- gcp: a source folder with `main.py` (entry points `on_storage_event`, `on_pubsub_push`,
  `on_storage_event_gen1`), the `syncd` package and `requirements.txt`;
- azure: a function-app folder with `function_app.py`, `host.json`, the `syncd` package and
  `requirements.txt`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

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
