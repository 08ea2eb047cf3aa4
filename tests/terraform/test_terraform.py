"""The Terraform modules parse, pin Terraform and their provider, and checkov finds nothing to
fail; every check a module skips says why, in the resource."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
CHECKOV = ROOT / ".peers" / "checkov" / "bin" / "checkov"


@pytest.mark.parametrize(
    "path", sorted(TERRAFORM.rglob("*.tf")), ids=lambda p: p.relative_to(TERRAFORM).as_posix()
)
def test_every_tf_file_parses(path: Path) -> None:
    with path.open() as handle:
        document = hcl2.load(handle)
    assert document


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_modules_document_every_variable_and_output(cloud: str) -> None:
    for name in ("variables.tf", "outputs.tf"):
        with (TERRAFORM / cloud / name).open() as handle:
            blocks = hcl2.load(handle).get("variable" if name == "variables.tf" else "output", [])
        assert blocks
        for block in blocks:
            ((label, body),) = block.items()
            assert body.get("description"), f"{cloud}/{name}: {label} has no description"


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_modules_pin_terraform_and_their_provider(cloud: str) -> None:
    with (TERRAFORM / cloud / "versions.tf").open() as handle:
        (block,) = hcl2.load(handle)["terraform"]
    assert "<" in block["required_version"] and ">=" in block["required_version"]
    (providers,) = block["required_providers"]
    name = {"aws": "aws", "gcp": "google", "azure": "azurerm"}[cloud]
    provider = providers[name]
    assert provider["source"].strip('"') == f"hashicorp/{name}"
    assert provider["version"].strip('"')


def test_checkov_has_no_failed_check() -> None:
    assert CHECKOV.exists(), "checkov is missing: run `bash scripts/setup`"
    done = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed >= 40
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} {check['resource']} skipped without a reason"
