"""`syncd deploy package`: artifacts that import on their own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SYNCD_CONFIG": ""},
    )


def test_lambda_zip_carries_its_wheels_and_imports_alone(tmp_path: Path) -> None:
    done = run("deploy", "package", "aws", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "out" / "syncd-aws-lambda.zip"
    with zipfile.ZipFile(archive) as bundle:
        names = set(bundle.namelist())
        bundle.extractall(tmp_path / "unzipped")
    assert {"handlers/aws_lambda.py", "syncd/events/aws.py", "syncd/catalog/postgres.py"} <= names
    assert any(n.startswith("pydantic_core/_pydantic_core.cpython-311-x86_64") for n in names)
    assert any(n.startswith("psycopg_binary/") for n in names)
    # The base interpreter without site-packages: only the zip's contents can be imported.
    probe = subprocess.run(
        [
            BASE_PYTHON,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import handlers.aws_lambda as h; "
            "import psycopg; print(h.handler.__name__)",
            str(tmp_path / "unzipped"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "handler"


def test_gcp_and_azure_folders(tmp_path: Path) -> None:
    assert run("deploy", "package", "gcp", "--out", "gcp", cwd=tmp_path).returncode == 0
    gcp = tmp_path / "gcp"
    assert (gcp / "main.py").exists() and (gcp / "syncd" / "events" / "gcp.py").exists()
    assert "functions-framework" in (gcp / "requirements.txt").read_text()
    assert run("deploy", "package", "azure", "--out", "az", cwd=tmp_path).returncode == 0
    azure = tmp_path / "az"
    for name in ("function_app.py", "host.json", "requirements.txt", "syncd/events/azure.py"):
        assert (azure / name).exists()
    assert "azure-functions" in (azure / "requirements.txt").read_text()
    bad = run("deploy", "package", "oracle", "--out", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
