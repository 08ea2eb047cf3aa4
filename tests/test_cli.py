"""The `syncd` command as a user runs it: a real process, exit codes, stable JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONFIG = """\
catalog: sqlite:///.syncd/catalog.db
integrations:
  - {name: disk, provider: local}
drivers:
  - {name: photos, integration: disk, bucket: ./photos}
datasets:
  - {name: pets, drivers: [photos]}
"""


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": "", **(env or {})},
        timeout=120,
    )


def run_json(cwd: Path, *args: str) -> tuple[int, Any]:
    done = run(cwd, *args, "--json")
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "syncd.yaml").write_text(CONFIG)
    photos = tmp_path / "photos"
    for n in range(10):
        (photos / "cats").mkdir(parents=True, exist_ok=True)
        (photos / "cats" / f"cat {n}.jpg").write_bytes(b"x" * (n + 1))
    return tmp_path


def test_init_writes_a_config_that_validates(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    (tmp_path / "data").mkdir()
    assert run(tmp_path, "config", "validate").returncode == 0
    again = run(tmp_path, "init")
    assert again.returncode == 2 and "--force" in again.stderr


def test_config_errors_exit_2_with_location(tmp_path: Path) -> None:
    (tmp_path / "syncd.yaml").write_text(CONFIG.replace("integration: disk", "integration: nas"))
    done = run(tmp_path, "config", "validate")
    assert done.returncode == 2
    assert "syncd.yaml:5:33: drivers[0].integration: unknown integration 'nas'" in done.stderr
    missing = run(tmp_path, "--config", "absent.yaml", "sync")
    assert missing.returncode == 2 and "absent.yaml: no such config file" in missing.stderr


def test_sync_json_then_rerun_writes_nothing(project: Path) -> None:
    code, out = run_json(project, "sync")
    assert code == 0 and out["exit_code"] == 0 and out["dry_run"] is False
    (result,) = out["results"]
    assert result["dataset"] == "pets" and result["driver"] == "photos"
    assert result["status"] == "succeeded"
    assert result["counts"] == {
        "listed": 10,
        "added": 10,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "skipped": 0,
    }
    code, out = run_json(project, "sync")
    assert out["results"][0]["counts"]["unchanged"] == 10
    assert out["results"][0]["counts"]["added"] == 0

    done = run(project, "changes", "pets", "--since", "0", "--json")
    changes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [c["id"] for c in changes] == list(range(1, 11))
    assert {c["op"] for c in changes} == {"added"}

    done = run(project, "items", "ls", "pets", "--prefix", "cats/cat 1", "--json")
    items = [json.loads(line) for line in done.stdout.splitlines()]
    assert [i["key"] for i in items] == ["cats/cat 1.jpg"]
    assert items[0]["media_kind"] == "image" and items[0]["size"] == 2

    code, runs = run_json(project, "runs", "ls")
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    code, datasets = run_json(project, "datasets", "ls")
    assert datasets[0]["name"] == "pets" and datasets[0]["items"] == 10


def test_dry_run_plans_and_writes_nothing(project: Path) -> None:
    code, out = run_json(project, "sync", "--dry-run")
    assert code == 0
    plan = out["results"][0]["plan"]
    assert len(plan) == 10 and {p["op"] for p in plan} == {"added"}
    code, datasets = run_json(project, "datasets", "ls")
    assert datasets == []


def test_safety_stop_exits_3_and_override_applies(project: Path) -> None:
    run(project, "sync")
    for n in range(7):
        (project / "photos" / "cats" / f"cat {n}.jpg").unlink()
    code, out = run_json(project, "sync")
    assert code == 3 and out["exit_code"] == 3
    assert out["results"][0]["status"] == "aborted"
    assert "7 deletes of 10 live items" in out["results"][0]["reason"]
    done = run(project, "items", "ls", "pets", "--json")
    assert len(done.stdout.splitlines()) == 10

    code, out = run_json(project, "sync", "--max-delete", "100%")
    assert code == 0 and out["results"][0]["counts"]["deleted"] == 7
    done = run(project, "items", "ls", "pets", "--deleted", "--json")
    assert sum(json.loads(line)["deleted"] for line in done.stdout.splitlines()) == 7


def test_missing_folder_is_a_safety_stop_that_names_it(project: Path) -> None:
    run(project, "sync")
    (project / "photos").rename(project / "moved")
    code, out = run_json(project, "sync")
    assert code == 3
    assert (
        "photos" in out["results"][0]["reason"] and "does not exist" in out["results"][0]["reason"]
    )


def test_unknown_dataset_exits_2(project: Path) -> None:
    done = run(project, "items", "ls", "nope")
    assert done.returncode == 2 and "unknown dataset 'nope'" in done.stderr
    assert run(project, "sync", "--dataset", "nope").returncode == 2


def test_logs_are_json_lines_on_stderr_when_not_a_terminal(project: Path) -> None:
    done = run(project, "sync")
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"sync started", "sync finished"} <= {e["event"] for e in events}
    assert all("timestamp" in e and "level" in e for e in events)


def test_demo_syncs_the_sample_folder(tmp_path: Path) -> None:
    done = run(tmp_path, "demo", "--dir", "demo")
    assert done.returncode == 0, done.stderr
    for key in ("dicom/chest-ct/IM0001.dcm", "nifti/brain.nii.gz", "video/intersection.mp4"):
        assert key in done.stdout
    code, out = run_json(tmp_path, "--config", "demo/syncd.yaml", "sync")
    assert code == 0 and out["results"][0]["counts"]["unchanged"] == 11
