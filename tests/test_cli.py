"""The `syncd` command as a user runs it: a real process, exit codes, stable JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def run_json(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    done = run(cwd, *args, "--json", env=env)
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


def human_lines(stderr: str) -> list[str]:
    """What stderr says to a person: the structured log lines (JSON) left out."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def position(config: str, line_with: str, value: str) -> str:
    """`syncd.yaml:LINE:COLUMN` of `value` on the first config line containing `line_with`."""
    for number, line in enumerate(config.splitlines(), 1):
        if line_with in line:
            return f"syncd.yaml:{number}:{line.index(value) + 1}"
    raise AssertionError(f"{line_with!r} is not in the config")


USAGE_ERRORS = [
    (("sync", "--max-delete", "abc"), "argument --max-delete: 'abc'"),
    (("sync", "--max-delete", "-5"), "argument --max-delete: '-5'"),
    (("sync", "--max-delete", "150%"), "argument --max-delete: '150%'"),
    (("--log-level", "bogus", "sync"), "argument --log-level: invalid choice: 'bogus'"),
    (("runs", "ls", "--dataset", "nosuch"), "unknown dataset 'nosuch'"),
    (("items", "ls", "nosuch"), "unknown dataset 'nosuch'"),
    (("changes", "nosuch"), "unknown dataset 'nosuch'"),
]


@pytest.mark.parametrize(
    ("args", "message"), USAGE_ERRORS, ids=[" ".join(args) for args, _ in USAGE_ERRORS]
)
def test_usage_errors_exit_2_naming_the_bad_value(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    done = run(project, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    import syncd

    done = run(tmp_path, "--version")
    assert done.returncode == 0
    assert re.fullmatch(r"syncd \d+\.\d+\.\d+\n", done.stdout)
    assert done.stdout == f"syncd {syncd.__version__}\n"


def _actions(
    parser: argparse.ArgumentParser, path: str = "syncd"
) -> Iterator[tuple[str, argparse.Action]]:
    """Every action of `parser` and of its subcommands, with the command it belongs to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield path, choice  # the subcommand's line in its parent's --help
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_every_option_of_every_command_has_help() -> None:
    from syncd.cli.main import build_parser

    found = list(_actions(build_parser()))
    missing = [
        f"{command}: {'/'.join(action.option_strings) or action.dest}"
        for command, action in found
        if not action.help
    ]
    assert missing == []
    # The walk reached the nested subcommands, not only the top level.
    assert {"syncd sync", "syncd items ls", "syncd manifest"} <= {c for c, _ in found}


TWO_PROVIDERS = """\
catalog: sqlite:///.syncd/catalog.db
integrations:
  - {name: disk, provider: local}
  - {name: aws, provider: s3, profile: no-such-profile}
drivers:
  - {name: photos, integration: disk, bucket: ./photos}
  - {name: raw, integration: aws, bucket: my-bucket}
datasets:
  - {name: pets, drivers: [photos, raw]}
"""


def test_a_failing_driver_does_not_hide_the_others(project: Path) -> None:
    (project / "syncd.yaml").write_text(TWO_PROVIDERS)
    (project / "aws-config").write_text("")
    (project / "aws-credentials").write_text("")
    # No real profile can exist: the AWS config files the child reads are empty.
    env = {
        "AWS_CONFIG_FILE": str(project / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(project / "aws-credentials"),
    }
    located = (
        f"{position(TWO_PROVIDERS, 'profile:', 'no-such-profile')}: integrations[1].profile: "
        "AWS profile 'no-such-profile' is not in the AWS config files"
    )

    code, out = run_json(project, "sync", env=env)
    assert code == 1 and out["exit_code"] == 1
    by_driver = {r["driver"]: r for r in out["results"]}
    assert by_driver["photos"]["status"] == "succeeded"
    assert by_driver["photos"]["counts"] == {
        "listed": 10,
        "added": 10,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "skipped": 0,
    }
    assert by_driver["raw"]["status"] == "failed"
    assert by_driver["raw"]["reason"].startswith(located)
    code, runs = run_json(project, "runs", "ls", env=env)
    assert sorted((r["driver"], r["status"]) for r in runs) == [
        ("photos", "succeeded"),
        ("raw", "failed"),
    ]

    done = run(project, "sync", env=env)
    assert done.returncode == 1
    rows = [line.split() for line in done.stdout.splitlines()]
    assert ["pets", "│", "photos", "│", "succeeded"] in [row[:5] for row in rows]
    assert ["pets", "│", "raw", "│", "failed"] in [row[:5] for row in rows]
    assert f"pets ← raw: failed: {located}" in done.stderr
    assert "Traceback" not in done.stderr


AZURE_SECRETS = """\
catalog: sqlite:///.syncd/catalog.db
integrations:
  - {name: disk, provider: local}
  - {name: garbled, provider: azure, connection_string: env:SYNCD_TEST_GARBLED}
  - {name: unset, provider: azure, connection_string: env:SYNCD_TEST_UNSET}
drivers:
  - {name: photos, integration: disk, bucket: ./photos}
  - {name: frames, integration: garbled, bucket: frames}
  - {name: scans, integration: unset, bucket: scans}
datasets:
  - {name: pets, drivers: [photos, frames, scans]}
"""


def test_config_validate_locates_secrets_that_cannot_be_used(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "syncd.yaml").write_text(AZURE_SECRETS)
    monkeypatch.delenv("SYNCD_TEST_UNSET", raising=False)
    secret = "s3cr3t-without-any-equals-sign"
    env = {"SYNCD_TEST_GARBLED": secret}
    expected = [
        f"{position(AZURE_SECRETS, 'SYNCD_TEST_GARBLED', 'env:')}: "
        "integrations[1].connection_string: the secret from env:SYNCD_TEST_GARBLED is not "
        "Key=Value pairs",
        f"{position(AZURE_SECRETS, 'SYNCD_TEST_UNSET', 'env:')}: "
        "integrations[2].connection_string: secret reference env:SYNCD_TEST_UNSET: "
        "environment variable SYNCD_TEST_UNSET is not set",
    ]

    done = run(project, "config", "validate", env=env)
    assert done.returncode == 2
    lines = human_lines(done.stderr)
    assert lines[0] == "config error:"
    assert len(lines) == 3
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(start)
    assert secret not in done.stderr

    code, out = run_json(project, "config", "validate", env=env)
    assert code == 2 and out["valid"] is False
    assert len(out["errors"]) == 2
    for error, start in zip(out["errors"], expected, strict=True):
        assert error.startswith(start)
    assert secret not in json.dumps(out)


def run_on_terminal(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stdout on a pseudo-terminal, as a person at a shell would."""
    master, slave = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "syncd", *args],
        cwd=cwd,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": "", "COLUMNS": "200"},
    ) as child:
        os.close(slave)
        output = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not chunk:
                break
            output += chunk
        os.close(master)
        assert child.stderr is not None
        stderr = child.stderr.read().decode()
        code = child.wait(timeout=120)
    return code, output.decode(), stderr


@pytest.mark.parametrize(
    ("command", "header"),
    [
        (("items", "ls", "pets"), "driver\tkey\tsize\tkind\tmodified\tchange"),
        (("changes", "pets"), "id\top\tdriver\tkey\tsize\tat\trun"),
    ],
    ids=["items", "changes"],
)
def test_long_listings_page_on_a_terminal_and_stream_when_piped(
    project: Path, command: tuple[str, ...], header: str
) -> None:
    shutil.rmtree(project / "photos")
    (project / "photos").mkdir()
    for n in range(250):
        (project / "photos" / f"{n:03d}.jpg").write_bytes(b"x")
    assert run(project, "sync").returncode == 0

    code, shown, stderr = run_on_terminal(project, *command)
    assert code == 0, stderr
    rows = [line for line in shown.splitlines() if "│" in line]
    assert len(rows) == 100
    assert "099.jpg" in rows[-1] and "100.jpg" not in shown
    assert "... 150 more (use --limit N or --all)" in human_lines(stderr)

    piped = run(project, *command)
    assert piped.returncode == 0
    lines = piped.stdout.splitlines()
    assert lines[0] == header and len(lines) == 251
    assert all(line.count("\t") == header.count("\t") for line in lines)
    assert "249.jpg" in lines[-1]
    assert len(run(project, *command, "--limit", "10").stdout.splitlines()) == 1 + 10
    as_json = [json.loads(line) for line in run(project, *command, "--json").stdout.splitlines()]
    assert sorted(entry["key"] for entry in as_json) == [f"{n:03d}.jpg" for n in range(250)]


def test_dry_run_without_a_catalog_prints_the_plan_and_creates_nothing(project: Path) -> None:
    shutil.rmtree(project / "photos")
    (project / "photos").mkdir()
    keys = [f"{n:04d}.jpg" for n in range(1200)]
    for key in keys:
        (project / "photos" / key).write_bytes(b"x")

    def planned_rows(stdout: str) -> list[str]:
        return [line for line in stdout.splitlines() if line.split("│")[0].strip() == "added"]

    short = run(project, "sync", "--dry-run")
    assert short.returncode == 0, short.stderr
    assert len(planned_rows(short.stdout)) == 20
    assert "... and 1,180 more (--plan or --json shows every one)" in short.stdout

    full = run(project, "sync", "--dry-run", "--plan")
    assert full.returncode == 0
    assert len(planned_rows(full.stdout)) == 1200 and "more" not in full.stdout

    code, out = run_json(project, "sync", "--dry-run")
    assert code == 0 and out["dry_run"] is True
    (result,) = out["results"]
    assert result["counts"]["added"] == 1200
    assert [p["key"] for p in result["plan"]] == keys
    assert {p["op"] for p in result["plan"]} == {"added"}

    assert not (project / ".syncd").exists()


def test_manifest_into_a_missing_folder_exits_2_and_creates_nothing(project: Path) -> None:
    assert run(project, "sync").returncode == 0
    out = "nonexistent/dir/m.json"
    done = run(project, "manifest", "pets", "--format", "encord-json", "--out", out)
    assert done.returncode == 2
    assert human_lines(done.stderr) == [
        f"error: cannot write {out}: folder nonexistent/dir does not exist"
    ]
    assert not (project / "nonexistent").exists()


def test_manifest_read_failure_is_one_line_and_leaves_no_partial_file(project: Path) -> None:
    shutil.rmtree(project / "photos")
    (project / "photos" / "misc").mkdir(parents=True)
    # No extension: only its bytes can tell the manifest what it is.
    (project / "photos" / "misc" / "NOEXT").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert run(project, "sync").returncode == 0
    shutil.rmtree(project / "photos")
    (project / "out").mkdir()

    done = run(
        project, "manifest", "pets", "--format", "encord-json", "--probe", "--out", "out/m.json"
    )
    assert done.returncode == 1
    (line,) = human_lines(done.stderr)
    assert line.startswith("error: ") and "photos" in line and "misc/NOEXT" in line
    assert "Traceback" not in done.stderr
    assert list((project / "out").iterdir()) == []


def test_demo_hints_work_as_printed_from_anywhere(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("syncd")
    env = {**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""}
    demo = subprocess.run(
        [str(script), "demo", "--dir", "my demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    (start,) = [n for n, line in enumerate(lines) if line.startswith("Try: ")]
    hints = [lines[start].removeprefix("Try: "), lines[start + 1]]
    assert hints[1].startswith(" ")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    changes, manifest = (
        subprocess.run(["bash", "-c", hint], cwd=elsewhere, capture_output=True, text=True, env=env)
        for hint in hints
    )
    assert changes.returncode == 0, changes.stderr
    assert "dicom/chest-ct/IM0001.dcm" in changes.stdout
    assert manifest.returncode == 0, manifest.stderr
    assert json.loads(manifest.stdout)["images"]
    assert list(elsewhere.iterdir()) == []


BIG_FOLDER_FILES = 60_000


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """60,000 one-byte files: a sync of them takes long enough to be interrupted.

    Made in RAM (/dev/shm) where there is one: on a busy disk creating them takes longer
    than every other test of this file together."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="syncd-big-", dir=shm))
    else:
        root = tmp_path_factory.mktemp("big")
    try:
        for folder in range(60):
            sub = root / f"d{folder:02d}"
            sub.mkdir()
            for n in range(BIG_FOLDER_FILES // 60):
                fd = os.open(sub / f"f{n:04d}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                os.write(fd, b"x")
                os.close(fd)
        yield root
    finally:
        shutil.rmtree(root)


def committed_changes(catalog: Path) -> int:
    """Changes committed so far, read as another process would (0 before the first)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{catalog.as_uri()}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM changes").fetchone()[0])
    except sqlite3.Error:  # not created, or not migrated, yet
        return 0


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_during_sync_records_an_interrupted_run(
    tmp_path: Path, big_folder: Path, signum: signal.Signals, code: int, message: str
) -> None:
    (tmp_path / "syncd.yaml").write_text(CONFIG.replace("./photos", str(big_folder)))
    catalog = tmp_path / ".syncd" / "catalog.db"
    with subprocess.Popen(
        [sys.executable, "-m", "syncd", "sync"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""},
        # As a terminal starts it: a suite run in the background of a script inherits
        # SIGINT ignored, and Python then leaves it ignored.
        preexec_fn=_sigint_default,
    ) as child:
        deadline = time.monotonic() + 60
        while committed_changes(catalog) == 0 and child.poll() is None:
            assert time.monotonic() < deadline, "no change was committed within 60 s"
            time.sleep(0.005)
        assert child.poll() is None, "the sync finished before it could be interrupted"
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == code
    assert message in human_lines(stderr)
    assert "Traceback" not in stderr

    _, (interrupted,) = run_json(tmp_path, "runs", "ls")
    assert interrupted["status"] == "interrupted"
    assert interrupted["finished_at"] is not None
    changes = run(tmp_path, "changes", "pets", "--json").stdout.splitlines()
    committed = sum(json.loads(line)["run_id"] == interrupted["id"] for line in changes)
    assert 0 < committed < BIG_FOLDER_FILES
    assert interrupted["counts"]["added"] == committed

    again, out = run_json(tmp_path, "sync")
    assert again == 0
    assert out["results"][0]["status"] == "succeeded"
    assert out["results"][0]["counts"]["added"] == BIG_FOLDER_FILES - committed
    _, (pets,) = run_json(tmp_path, "datasets", "ls")
    assert pets["items"] == BIG_FOLDER_FILES
