"""Kill a sync with SIGKILL while it applies batches, re-run, and the catalog converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from syncd.catalog import Op, open_catalog
from tests.crash_child import listing

COUNT = 150_000
ROOT = Path(__file__).resolve().parent.parent


def start_child(url: str, version: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", url, str(version), str(COUNT)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def kill_mid_run(url: str, version: int, after_changes: int) -> int:
    """Start a sync, SIGKILL it once `after_changes` more changes are committed."""
    watcher = open_catalog(url)
    try:
        base = watcher.last_change_id()
        child = start_child(url, version)
        deadline = time.monotonic() + 120
        while watcher.last_change_id() < base + after_changes:
            assert child.poll() is None, "the sync finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        return watcher.last_change_id() - base
    finally:
        watcher.close()


def finish(url: str, version: int) -> str:
    child = start_child(url, version)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    return out


def check_converged(url: str, version: int) -> None:
    catalog = open_catalog(url)
    try:
        expected = {(o.key, o.etag) for o in listing(version, COUNT)}
        items = [(i.key, i.etag) for i in catalog.items("crash")]
        assert len(items) == len(set(items)), "duplicate items"
        assert set(items) == expected
        ids = [c.id for c in catalog.changes("crash")]
        assert ids == list(range(1, len(ids) + 1)), "change feed has gaps or duplicates"
        added = Counter(c.key for c in catalog.changes("crash") if c.op is Op.ADDED)
        assert max(added.values()) == 1, "a key was added twice"
        statuses = [r.status for r in catalog.runs("crash")]
        assert statuses[0] == "succeeded" and "interrupted" in statuses
    finally:
        catalog.close()


@pytest.mark.slow
def test_sigkill_during_ingest_and_during_resync_converges(catalog_url: str) -> None:
    open_catalog(catalog_url).close()
    committed = kill_mid_run(catalog_url, version=1, after_changes=20_000)
    assert 20_000 <= committed < COUNT
    finish(catalog_url, version=1)
    check_converged(catalog_url, version=1)

    kill_mid_run(catalog_url, version=2, after_changes=10_000)
    out = finish(catalog_url, version=2)
    assert "succeeded" in out
    check_converged(catalog_url, version=2)
