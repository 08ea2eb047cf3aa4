"""`syncd run` as a real process: schedules, replicas sharing PostgreSQL, fencing, watching,
shutdown."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from syncd.catalog import RunStatus, open_catalog
from syncd.catalog.types import SyncRun
from tests.daemon.conftest import Daemons, live_keys, wait_until

BOUND = 20.0


def local_config(catalog: str, folders: dict[str, Path], **driver: Any) -> dict[str, Any]:
    return {
        "catalog": catalog,
        "daemon": {"shutdown_grace": "10s"},
        "integrations": [{"name": "disk", "provider": "local"}],
        "drivers": [
            {"name": name, "integration": "disk", "bucket": str(path), **driver}
            for name, path in folders.items()
        ],
        "datasets": [{"name": "images", "drivers": list(folders)}],
    }


def test_a_scheduled_folder_stays_current_and_sigterm_exits_0(
    daemons: Daemons, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "first.jpg").write_bytes(b"1")
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    config = daemons.write_config(local_config(url, {"photos": folder}, schedule={"every": "1s"}))
    daemon = daemons.start(config)
    wait_until(lambda: set(live_keys(url, "images")) == {"first.jpg"}, BOUND, "the first sync")
    (folder / "second.png").write_bytes(b"2")
    (folder / "first.jpg").unlink()
    wait_until(lambda: set(live_keys(url, "images")) == {"second.png"}, BOUND, "the next slot")

    stopping = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopping < 10 + 5  # the grace, and the interpreter's exit
    lines = daemon.lines()
    assert lines, "the daemon logged nothing"
    for line in lines:
        if line["event"] in ("sync started", "sync finished"):
            assert line["driver"] == "photos" and isinstance(line["run_id"], int)
    assert lines[-1]["event"] == "daemon stopped"


def test_a_watched_folder_is_ingested_as_files_settle(daemons: Daemons, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    config = daemons.write_config(
        local_config(url, {"inbox": folder}, source={"kind": "watch", "settle": "1s"})
    )
    daemon = daemons.start(config)
    wait_until(lambda: bool(daemon.events("sync finished")), BOUND, "the first backfill")
    names = {f"batch/{n:03d}.jpg" for n in range(300)}
    (folder / "batch").mkdir()
    for name in names:
        (folder / name).write_bytes(b"pixels")
    # A download in progress is never an item; renamed into place, it is.
    partial = folder / "scan.dcm.part"
    with partial.open("wb") as out:
        for _ in range(10):
            out.write(os.urandom(100_000))
            out.flush()
            time.sleep(0.1)
            assert not {k for k in live_keys(url, "images") if k.startswith("scan")}
    partial.rename(folder / "scan.dcm")
    wait_until(lambda: set(live_keys(url, "images")) == names | {"scan.dcm"}, BOUND, "every file")
    (folder / "batch/000.jpg").unlink()
    wait_until(lambda: "batch/000.jpg" not in live_keys(url, "images"), BOUND, "the delete")
    catalog = open_catalog(url)
    try:
        (scan,) = [i for i in catalog.items("images") if i.key == "scan.dcm"]
        runs = catalog.runs("images")
    finally:
        catalog.close()
    assert scan.size == 1_000_000
    assert len(runs) == 1, "the watcher's changes came from a listing"
    assert daemon.stop() == 0


def slots(url: str) -> list[tuple[str, int, str]]:
    base, schema = url.split("?schema=")
    with psycopg.connect(base) as conn:
        rows = conn.execute(f'SELECT name, slot, owner FROM "{schema}".schedule_slots').fetchall()
    return [(str(n), int(s), str(o)) for n, s, o in rows]


def run_replicas(
    daemons: Daemons, config: dict[str, Any], url: str, *, replicas: int, slots_claimed: int
) -> list[tuple[str, int, str]]:
    """Run `replicas` daemons on one config until they claimed `slots_claimed` schedule
    slots and each claimed some (a replica slow to start would find none left); stop them;
    the slots claimed."""
    path = daemons.write_config(config)
    open_catalog(url).close()  # migrated once, before the replicas race
    started = [
        daemons.start(path, env={"SYNCD_REPLICA": f"replica-{n}"}, name=f"replica-{n}")
        for n in range(replicas)
    ]

    def claimed() -> bool:
        now = slots(url)
        return len(now) >= slots_claimed and len({owner for _, _, owner in now}) == replicas

    wait_until(claimed, 60, f"{slots_claimed} slots claimed by every replica", every=0.5)
    for replica in started:
        assert replica.stop() == 0
    return slots(url)


def assert_succeeded_or_cut_by_shutdown(runs: list[SyncRun]) -> None:
    """Every run succeeded, but for one a replica's SIGTERM stopped between batches."""
    for run in runs:
        if run.status is RunStatus.INTERRUPTED:
            assert "shutting down" in (run.reason or ""), run
        else:
            assert run.status is RunStatus.SUCCEEDED, run
    assert any(r.status is RunStatus.SUCCEEDED for r in runs)


def test_three_replicas_on_postgres_run_each_slot_once(
    daemons: Daemons, tmp_path: Path, postgres_url: str
) -> None:
    folders = {}
    for n in range(50):
        folder = folders[f"cam{n:02d}"] = tmp_path / f"cam{n:02d}"
        folder.mkdir()
        (folder / "frame.jpg").write_bytes(b"f")
    config = local_config(postgres_url, folders, schedule={"every": "2s"})
    config["daemon"]["workers"] = 4
    claimed = run_replicas(daemons, config, postgres_url, replicas=3, slots_claimed=250)
    owners = Counter(owner for _, _, owner in claimed)
    assert set(owners) == {"replica-0", "replica-1", "replica-2"}, owners
    catalog = open_catalog(postgres_url)
    try:
        runs = catalog.runs(limit=10_000)
    finally:
        catalog.close()
    # One run per claimed slot, all of them succeeded; no slot skipped between a driver's
    # first and last.
    assert len(runs) == len(claimed)
    assert_succeeded_or_cut_by_shutdown(runs)
    per_driver: dict[str, list[int]] = {}
    for name, slot, _ in claimed:
        per_driver.setdefault(name, []).append(slot)
    for name, taken in per_driver.items():
        taken.sort()
        assert taken == list(range(taken[0], taken[-1] + 2, 2)), name


def test_replicas_share_the_shards_of_one_driver(
    daemons: Daemons, tmp_path: Path, postgres_url: str
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    names = {f"{c}{n:02d}.jpg" for c in "adgk" for n in range(25)}
    for name in names:
        (folder / name).write_bytes(b"f")
    config = local_config(
        postgres_url, {"frames": folder}, schedule={"every": "1s"}, shards=["d", "g", "k"]
    )
    claimed = run_replicas(daemons, config, postgres_url, replicas=2, slots_claimed=16)
    # Each shard is its own schedule and lease: both replicas ran shards.
    assert {n for n, _, _ in claimed} == {f"images/frames#{i}/4" for i in range(1, 5)}
    assert {o for _, _, o in claimed} == {"replica-0", "replica-1"}
    catalog = open_catalog(postgres_url)
    try:
        runs = catalog.runs(limit=10_000)
        keys = {i.key for i in catalog.items("images")}
    finally:
        catalog.close()
    assert len(runs) == len(claimed)
    assert_succeeded_or_cut_by_shutdown(runs)
    assert sum(r.counts.added for r in runs) == len(names)
    assert {r.shard.label for r in runs if r.shard is not None} == {"1/4", "2/4", "3/4", "4/4"}
    assert keys == names


def test_a_paused_owner_loses_its_lease_and_its_writes_are_refused(
    daemons: Daemons, tmp_path: Path, postgres_url: str
) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    count = 60_000
    for n in range(count // 1000):
        sub = folder / f"{n:02d}"
        sub.mkdir()
        for m in range(1000):
            (sub / f"{m:03d}.jpg").write_bytes(b"x")
    config = local_config(postgres_url, {"big": folder}, schedule={"every": "1s"})
    config["daemon"]["lease_ttl"] = "2s"
    path = daemons.write_config(config)
    owner = daemons.start(path, env={"SYNCD_REPLICA": "owner"}, name="owner")
    catalog = open_catalog(postgres_url)
    try:
        wait_until(lambda: len(live_keys(postgres_url, "images")) > 0, 60, "a first batch", 0.01)
        owner.send(signal.SIGSTOP)
        (paused_run,) = catalog.runs("images")
        assert paused_run.status is RunStatus.RUNNING
        written = sum(1 for c in catalog.changes("images") if c.run_id == paused_run.id)
        assert written < count

        other = daemons.start(path, env={"SYNCD_REPLICA": "other"}, name="other")
        wait_until(
            lambda: len(live_keys(postgres_url, "images")) == count, 60, "the other replica's run"
        )
        owner.send(signal.SIGCONT)

        def paused() -> Any:
            return next(r for r in catalog.runs("images", limit=1000) if r.id == paused_run.id)

        wait_until(lambda: paused().reason is not None, BOUND, "the paused run to end")
        old = paused()
        assert old.status is RunStatus.INTERRUPTED
        # Not one write after the pause: the epoch refused them.
        assert sum(1 for c in catalog.changes("images") if c.run_id == paused_run.id) == written
        assert len(live_keys(postgres_url, "images")) == count
        assert owner.stop() == 0 and other.stop() == 0
    finally:
        catalog.close()
