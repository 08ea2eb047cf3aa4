"""`syncd status` and `syncd dead-letters` on real SQLite and PostgreSQL catalogs, run in
process through `syncd.cli.main.main`."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.catalog import Catalog, open_catalog
from syncd.cli.main import main

HTML_KEY = "<b>x</b>.jpg"
MARKUP = "not JSON [/x] [bold]k[/bold]"


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    # main() installs its SIGTERM handler in the main thread: give pytest its own back.
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


@pytest.fixture
def project(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Dataset `pets`: driver `photos` (3 files, one named with HTML) syncs; driver `gone`
    (a missing folder) is aborted. Dataset `events`: S3 bucket `media`, fed by events."""
    photos = tmp_path / "photos"
    (photos / "<b>x<").mkdir(parents=True)
    (photos / HTML_KEY).write_bytes(b"abc")
    (photos / "a.jpg").write_bytes(b"aaaa")
    (photos / "b.jpg").write_bytes(b"bbbbb")
    config = {
        "catalog": catalog_url,
        "integrations": [
            {"name": "disk", "provider": "local"},
            {"name": "aws", "provider": "s3"},
        ],
        "drivers": [
            {"name": "photos", "integration": "disk", "bucket": str(photos)},
            {"name": "gone", "integration": "disk", "bucket": str(tmp_path / "missing")},
            # Fed by events only (dead-letter retries below); never synced here.
            {"name": "media", "integration": "aws", "bucket": "media"},
        ],
        "datasets": [
            {"name": "pets", "drivers": ["photos", "gone"]},
            {"name": "events", "drivers": ["media"]},
        ],
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.delenv("SYNCD_CATALOG_URL", raising=False)
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, _ = cli(capsys, *args, "--json")
    return code, json.loads(out)


def synced(capsys: pytest.CaptureFixture[str], *drivers: str) -> None:
    for driver in drivers:
        cli(capsys, "sync", "--driver", driver)


def driver_rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (dataset,) = summary["datasets"]
    return {row["name"]: row for row in dataset["drivers"]}


def dead_letters(url: str, *letters: tuple[str, str, str]) -> None:
    catalog = open_catalog(url)
    try:
        with catalog.transaction() as tx:
            for source, reason, payload in letters:
                tx.dead_letter(source, reason, payload)
    finally:
        catalog.close()


def test_status_reports_datasets_runs_and_exits_1_for_a_failing_driver(
    project: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    synced(capsys, "photos", "gone")
    code, summary = cli_json(capsys, "status")
    assert code == 1 and summary["exit_code"] == 1
    (dataset,) = summary["datasets"]
    assert (dataset["name"], dataset["items"], dataset["bytes"]) == ("pets", 3, 12)
    rows = driver_rows(summary)
    assert rows["photos"]["last_run"]["status"] == "succeeded"
    assert rows["photos"]["last_run"]["counts"]["added"] == 3
    assert rows["photos"]["failing"] is False
    assert rows["gone"]["failing"] is True
    assert rows["gone"]["last_run"]["status"] == "aborted"
    assert 0 <= rows["gone"]["age_seconds"] < 120
    (failing,) = summary["failing"]
    assert (failing["driver"], failing["status"]) == ("gone", "aborted")
    assert "missing" in failing["reason"]
    assert [r["driver"] for r in summary["recent_failures"]] == ["gone"]
    assert summary["daemon"] is None
    assert summary["dead_letters"] == {"count": 0, "more": False, "newest": []}

    code, out, _ = cli(capsys, "status")
    assert code == 1
    assert "pets" in out and "photos" in out and "succeeded" in out and "aborted" in out
    assert "failing: pets/gone: run" in out and "does not exist" in out
    assert "dead letters: 0" in out and "leases: none held" in out


def test_status_exits_0_once_the_failing_driver_recovers(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synced(capsys, "photos", "gone")
    assert cli_json(capsys, "status")[0] == 1
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "c.jpg").write_bytes(b"c")
    synced(capsys, "gone")
    code, summary = cli_json(capsys, "status")
    assert code == 0 and summary["failing"] == []
    assert driver_rows(summary)["gone"]["last_run"]["status"] == "succeeded"
    # The aborted run is still history.
    assert [r["driver"] for r in summary["recent_failures"]] == ["gone"]
    assert cli(capsys, "status")[0] == 0


def test_status_needs_no_config_and_keeps_failing_while_a_rerun_runs(
    project: Path,
    catalog_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced(capsys, "gone")
    catalog = open_catalog(catalog_url)
    try:
        # A new run of the failing driver, still running (this process is alive).
        dataset_id = catalog.find_id("dataset", "pets")
        driver_id = catalog.find_id("driver", "gone")
        assert dataset_id is not None and driver_id is not None
        running = catalog.begin_run(dataset_id, driver_id, watermark=catalog.last_change_id())
    finally:
        catalog.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("SYNCD_CONFIG", str(elsewhere / "absent.yaml"))
    code, summary = cli_json(capsys, "--catalog", catalog_url, "status")
    assert code == 1
    row = driver_rows(summary)["gone"]
    assert row["last_run"]["id"] == running and row["last_run"]["status"] == "running"
    assert row["last_finished"]["status"] == "aborted" and row["failing"] is True
    code, out, _ = cli(capsys, "--catalog", catalog_url, "status")
    assert code == 1 and "running (last finished: aborted)" in out


def test_status_shows_dead_letters_without_payloads_and_live_leases(
    project: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    synced(capsys, "photos")
    dead_letters(
        catalog_url,
        *[
            ("sqs:raw", f"cannot parse {HTML_KEY} #{n}", f'{{"secret-payload": {n}}}')
            for n in range(7)
        ],
    )
    catalog = open_catalog(catalog_url)
    try:
        assert catalog.claim_lease("sync:pets/photos", "replica-a", 60) is not None
        released = catalog.claim_lease("sync:pets/gone", "replica-b", 60)
        assert released is not None
        catalog.release_lease("sync:pets/gone", "replica-b", released)
    finally:
        catalog.close()
    code, summary = cli_json(capsys, "status")
    assert code == 0
    letters = summary["dead_letters"]
    assert letters["count"] == 7 and letters["more"] is False
    assert [d["reason"] for d in letters["newest"]] == [
        f"cannot parse {HTML_KEY} #{n}" for n in (6, 5, 4, 3, 2)
    ]
    assert letters["newest"][0]["source"] == "sqs:raw"
    assert "secret-payload" not in json.dumps(summary)
    (lease,) = summary["leases"]
    assert (lease["name"], lease["owner"], lease["mine"]) == (
        "sync:pets/photos",
        "replica-a",
        False,
    )
    assert 50 < lease["expires_in_seconds"] <= 60

    code, out, _ = cli(capsys, "status")
    assert code == 0
    assert "dead letters: 7" in out and f"cannot parse {HTML_KEY} #6" in out
    assert "secret-payload" not in out
    assert "sync:pets/photos" in out and "replica-a" in out and "sync:pets/gone" not in out


def test_dead_letters_ls_and_discard(
    project: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "dead-letters", "ls")
    assert code == 0 and "no dead letters" in out
    assert cli_json(capsys, "dead-letters", "ls") == (0, [])
    dead_letters(
        catalog_url,
        ("pubsub:raw", MARKUP, "{broken\npayload"),
        ("sqs:raw", "no Records", '{"Records": null}'),
    )
    code, listed = cli_json(capsys, "dead-letters", "ls")
    assert code == 0
    assert [(d["source"], d["reason"], d["payload"]) for d in listed] == [
        ("sqs:raw", "no Records", '{"Records": null}'),
        ("pubsub:raw", MARKUP, "{broken\npayload"),
    ]
    newest, oldest = listed[0]["id"], listed[1]["id"]
    assert [d["id"] for d in cli_json(capsys, "dead-letters", "ls", "--limit", "1")[1]] == [newest]
    code, out, _ = cli(capsys, "dead-letters", "ls")
    assert code == 0 and "no Records" in out and "{broken payload" in out
    # Taken literally, not as rich markup (which `[/x]` would even crash).
    assert MARKUP in out
    code, out, _ = cli(capsys, "status")
    assert code == 0 and MARKUP in out

    code, out, _ = cli(capsys, "dead-letters", "discard", str(oldest))
    assert code == 0 and f"dead letter {oldest}: discarded" in out
    assert [d["id"] for d in cli_json(capsys, "dead-letters", "ls")[1]] == [newest]
    code, _, err = cli(capsys, "dead-letters", "discard", str(oldest))
    assert code == 2 and f"no dead letter {oldest}" in err and "dead-letters ls" in err
    code, _, err = cli(capsys, "dead-letters", "discard", "999999")
    assert code == 2 and "no dead letter 999999" in err
    with pytest.raises(SystemExit) as usage:
        main(["dead-letters", "ls", "--limit", "0"])
    assert usage.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def s3_body(key: str, sequencer: str = "0A") -> str:
    """An SQS message body holding an S3 notification for bucket `media`."""
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "s3": {
            "bucket": {"name": "media"},
            "object": {"key": key, "size": 3, "eTag": "abc", "sequencer": sequencer},
        },
    }
    return json.dumps({"Records": [record]})


def test_dead_letters_retry(
    project: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "dead-letters", "retry", "999999")
    assert code == 2 and "no dead letter 999999" in err and "dead-letters ls" in err
    dead_letters(
        catalog_url,
        ("aws:sqs:q", "SQS body is not JSON", "{broken"),
        ("aws:sqs:q", "an old parser refused it", s3_body("scans/new.jpg")),
    )
    catalog: Catalog = open_catalog(catalog_url)
    try:
        good, bad = (d.id for d in catalog.dead_letters(10))
    finally:
        catalog.close()

    # Still not understandable: it stays, exit 1 with the reason.
    code, _, err = cli(capsys, "dead-letters", "retry", str(bad))
    assert code == 1 and f"dead letter {bad}: still not applicable" in err and "JSON" in err
    code, outcome = cli_json(capsys, "dead-letters", "retry", str(bad))
    assert code == 1 and outcome["applied_ok"] is False and outcome["reason"]
    # Understood now: applied, and removed in the same transaction.
    code, out, err = cli(capsys, "dead-letters", "retry", str(good))
    assert code == 0, err
    assert f"dead letter {good}: applied (1 change written) and removed" in out
    assert [d["id"] for d in cli_json(capsys, "dead-letters", "ls")[1]] == [bad]
    code, out, _ = cli(capsys, "items", "ls", "events", "--json")
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["scans/new.jpg"]
    code, _, err = cli(capsys, "dead-letters", "retry", str(good))
    assert code == 2 and f"no dead letter {good}" in err
