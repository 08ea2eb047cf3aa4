"""`syncd deploy package`: archives that are reproducible, compiled, pinned, carry only what
a function runs, import on their own, and build from an installed syncd."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.package import ARCHIVES, constraints_path

ROOT = Path(__file__).resolve().parent.parent
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SYNCD_CONFIG": "", **(env or {})},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Every cloud's archive, built twice into two folders."""
    out = tmp_path_factory.mktemp("packages")
    archives: dict[str, Path] = {}
    for cloud in ARCHIVES:
        for copy in ("a", "b"):
            done = run("deploy", "package", cloud, "--out", str(out / copy), cwd=out)
            assert done.returncode == 0, done.stderr
        archives[cloud] = out / "a" / ARCHIVES[cloud]
    yield archives


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("cloud", sorted(ARCHIVES))
def test_two_builds_of_one_commit_are_byte_identical(built: dict[str, Path], cloud: str) -> None:
    first = built[cloud]
    second = first.parent.parent / "b" / first.name
    assert digest(first) == digest(second)


@pytest.mark.parametrize("cloud", sorted(ARCHIVES))
def test_archives_carry_the_handler_and_the_core_only(built: dict[str, Path], cloud: str) -> None:
    with zipfile.ZipFile(built[cloud]) as bundle:
        names = set(bundle.namelist())
        infos = bundle.infolist()
    entry = {"aws": "handlers/aws_lambda.py", "gcp": "main.py", "azure": "function_app.py"}
    assert entry[cloud] in names and "syncd/events/apply.py" in names
    assert not any(n.startswith(("syncd/cli/", "deploy/")) or n == "syncd/demo.py" for n in names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    # Compiled for the runtime: a read-only function filesystem cannot cache bytecode.
    assert "syncd/events/__pycache__/apply.cpython-311.pyc" in names


def test_dependencies_are_the_pinned_versions(built: dict[str, Path]) -> None:
    pins = dict(
        line.split("==")
        for line in constraints_path("aws").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    with zipfile.ZipFile(built["aws"]) as bundle:
        versions = {
            name.split("/")[0].removesuffix(".dist-info").rsplit("-", 1)[1]
            for name in bundle.namelist()
            if name.startswith("pydantic-") and name.endswith(".dist-info/METADATA")
        }
    assert versions == {pins["pydantic"]}
    with zipfile.ZipFile(built["gcp"]) as bundle:
        requirements = bundle.read("requirements.txt").decode().split()
    assert requirements and all("==" in line for line in requirements)
    assert any(line.startswith("functions-framework==") for line in requirements)


def test_the_lambda_archive_runs_its_handler_alone(built: dict[str, Path], tmp_path: Path) -> None:
    """The base interpreter without site-packages: only the archive can be imported. The
    handler applies an SQS delivery to a SQLite catalog and answers Lambda's way."""
    with zipfile.ZipFile(built["aws"]) as bundle:
        bundle.extractall(tmp_path / "task")
    body = json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "eventTime": "2026-11-23T08:00:00.000Z",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": "a+b.jpg", "size": 3}},
                }
            ]
        }
    )
    event = {
        "Records": [
            {
                "messageId": "1",
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import handlers.aws_lambda as h; "
        "print(json.dumps(h.handler(json.loads(sys.argv[2]), None)))"
    )
    done = subprocess.run(
        [BASE_PYTHON, "-I", "-S", "-c", script, str(tmp_path / "task"), json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "SYNCD_CATALOG_URL": f"sqlite:///{tmp_path / 'c.db'}",
            "SYNCD_CONFIG_YAML": "integrations: [{name: a, provider: s3}]\n"
            "drivers: [{name: d, integration: a, bucket: b}]\ndatasets: [{name: s, drivers: [d]}]",
        },
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"batchItemFailures": []}


def test_the_azure_archive_imports_from_its_bundled_packages(
    built: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(built["azure"]) as bundle:
        bundle.extractall(tmp_path / "app")
    site = tmp_path / "app" / ".python_packages" / "lib" / "site-packages"
    script = (
        "import sys; sys.path[:0] = sys.argv[1:3]; import function_app; print(function_app.app)"
    )
    done = subprocess.run(
        [BASE_PYTHON, "-I", "-S", "-c", script, str(tmp_path / "app"), str(site)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SYNCD_CONFIG_YAML": "{}", "SYNCD_CATALOG_URL": "sqlite:///:memory:"},
    )
    assert done.returncode == 0, done.stderr


def test_packages_build_from_an_installed_syncd(tmp_path: Path) -> None:
    """Not from a checkout: syncd installed (without its dependencies, which this venv has)
    into a folder of its own, run from elsewhere."""
    target = tmp_path / "installed"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    built = run(
        "deploy", "package", "gcp", "--out", "out", cwd=elsewhere, env={"PYTHONPATH": str(target)}
    )
    assert built.returncode == 0, built.stderr
    assert (elsewhere / "out" / ARCHIVES["gcp"]).is_file()
    located = subprocess.run(
        [
            sys.executable,
            "-c",
            "import deploy, handlers; print(deploy.__file__, handlers.__file__)",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert str(target) in located.stdout and str(ROOT) not in located.stdout


def test_an_unknown_cloud_is_a_usage_error(tmp_path: Path) -> None:
    bad = run("deploy", "package", "oracle", "--out", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
