"""Build the artifact each cloud deploys, reproducibly.

- aws: `syncd-aws-lambda.zip`, handler `handlers.aws_lambda.handler`, with manylinux wheels
  for the Lambda Python 3.11 x86_64 runtime (boto3 is in the runtime and is left out);
- gcp: `syncd-gcp-function.zip`, a source archive with `main.py` at its root (entry points
  `on_storage_event`, `on_pubsub_push`, `on_storage_event_gen1`) and a pinned
  `requirements.txt` that Cloud Build installs;
- azure: `syncd-azure-function.zip`, a run-from-package archive: `function_app.py`,
  `host.json`, and the dependencies under `.python_packages/lib/site-packages`.

Every archive carries the handler and syncd's core, not the CLI, the demo or this builder.
Two builds of one commit are byte-identical: entries sorted, fixed timestamps and modes,
bytecode compiled with hash-based `.pyc` under a fixed hash seed, dependencies at the
versions `deploy/constraints-CLOUD.txt` pins (regenerate them with `syncd deploy lock`).
Bytecode is compiled when this Python is the runtime's (3.11): a read-only function
filesystem cannot cache it, so without it every cold start compiles every module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

import syncd

CLOUDS = ("aws", "gcp", "azure")
RUNTIME_PYTHON = (3, 11)
ARCHIVES = {
    "aws": "syncd-aws-lambda.zip",
    "gcp": "syncd-gcp-function.zip",
    "azure": "syncd-azure-function.zip",
}
_CORE = ["pydantic>=2.6", "pyyaml>=6.0", "structlog>=24.1", "psycopg[binary]>=3.1"]
REQUIREMENTS = {
    "aws": _CORE,
    "gcp": [*_CORE, "functions-framework>=3.5", "cloudevents>=1.10"],
    "azure": [*_CORE, "azure-functions>=1.18"],
}
#: Where the wheels of each cloud are unpacked inside its archive (None: not bundled; the
#: cloud installs `requirements.txt` itself).
_SITE = {"aws": "", "gcp": None, "azure": ".python_packages/lib/site-packages"}
#: Parts of syncd a function never imports.
_NOT_SHIPPED = ("cli", "demo.py", "__pycache__")
_EPOCH = (1980, 1, 1, 0, 0, 0)


class DeployError(Exception):
    """The package cannot be built (the message says why)."""


def constraints_path(cloud: str) -> Path:
    return Path(str(resources.files("deploy").joinpath(f"constraints-{cloud}.txt")))


def _source(name: str) -> Path:
    """A file of the `handlers` package, wherever syncd is installed."""
    path = Path(str(resources.files("handlers").joinpath(name)))
    if not path.is_file():
        raise DeployError(f"{path} is missing: reinstall syncd (pip install 'syncd[all]')")
    return path


def _copy_core(root: Path) -> None:
    package = Path(syncd.__file__).resolve().parent
    shutil.copytree(package, root / "syncd", ignore=shutil.ignore_patterns(*_NOT_SHIPPED, "*.pyc"))


def _pip_target(cloud: str, target: Path) -> None:
    """The cloud's dependencies, as manylinux wheels for the runtime, at pinned versions."""
    constraints = constraints_path(cloud)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        ".".join(map(str, RUNTIME_PYTHON)),
        "--only-binary=:all:",
        "--constraint",
        str(constraints),
        *REQUIREMENTS[cloud],
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployError(f"pip could not fetch {cloud} wheels:\n{done.stderr[-2000:]}")
    # pip records where it was run from; that would differ between two builds.
    for record in target.glob("*.dist-info/direct_url.json"):
        record.unlink()


def _compile(root: Path) -> bool:
    """Hash-based bytecode for every module, when this Python is the runtime's."""
    if sys.version_info[:2] != RUNTIME_PYTHON:
        return False
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            # Paths in tracebacks as the runtime will see them, not this build folder's.
            "-s",
            str(root),
            str(root),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if done.returncode != 0:
        raise DeployError(f"could not compile the package:\n{done.stdout[-2000:]}")
    return True


def write_zip(root: Path, archive: Path) -> None:
    """Every file under `root`, sorted, with fixed times and modes: the same bytes for the
    same files."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_EPOCH)
            mode = (
                0o755 if os.access(path, os.X_OK) and path.suffix not in (".py", ".pyc") else 0o644
            )
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes(), compresslevel=9)


def _pinned_requirements(cloud: str) -> str:
    lines = [
        line.strip()
        for line in constraints_path(cloud).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return "\n".join(lines) + "\n"


def build(cloud: str, out: Path, *, with_deps: bool = True) -> Path:
    """Build `cloud`'s archive into folder `out`; return its path."""
    if cloud not in CLOUDS:
        raise DeployError(f"unknown cloud {cloud!r} (one of {', '.join(CLOUDS)})")
    with tempfile.TemporaryDirectory(prefix=f"syncd-{cloud}-") as tmp:
        root = Path(tmp)
        _copy_core(root)
        if cloud == "aws":
            (root / "handlers").mkdir()
            (root / "handlers" / "__init__.py").write_text("")
            shutil.copy(_source("aws_lambda.py"), root / "handlers" / "aws_lambda.py")
        elif cloud == "gcp":
            shutil.copy(_source("gcp_function/main.py"), root / "main.py")
            (root / "requirements.txt").write_text(_pinned_requirements(cloud))
        else:
            shutil.copy(_source("azure_function/function_app.py"), root / "function_app.py")
            shutil.copy(_source("azure_function/host.json"), root / "host.json")
            (root / "requirements.txt").write_text(_pinned_requirements(cloud))
        site = _SITE[cloud]
        if with_deps and site is not None:
            _pip_target(cloud, root / site)
        _compile(root)
        out.mkdir(parents=True, exist_ok=True)
        archive = out / ARCHIVES[cloud]
        write_zip(root, archive)
    return archive


def lock(cloud: str) -> Path:
    """Resolve `cloud`'s dependencies for its runtime now and pin them in its constraints
    file (what every later build installs)."""
    with tempfile.TemporaryDirectory(prefix="syncd-lock-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--disable-pip-version-check",
            "--report",
            str(report),
            "--target",
            str(Path(tmp) / "target"),
            "--platform",
            "manylinux2014_x86_64",
            "--implementation",
            "cp",
            "--python-version",
            ".".join(map(str, RUNTIME_PYTHON)),
            "--only-binary=:all:",
            *REQUIREMENTS[cloud],
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise DeployError(
                f"pip could not resolve {cloud}'s dependencies:\n{done.stderr[-2000:]}"
            )
        resolved = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{item['metadata']['name'].lower()}=={item['metadata']['version']}" for item in resolved
    )
    path = constraints_path(cloud)
    header = (
        f"# The {cloud} function's dependencies, as `syncd deploy lock {cloud}` resolved them "
        f"for CPython {'.'.join(map(str, RUNTIME_PYTHON))} on manylinux x86_64.\n"
    )
    path.write_text(header + "\n".join(pins) + "\n")
    return path
