"""What a catalog keeps per push target, on SQLite and PostgreSQL: the cursor, the item ↔
task links (long and odd keys included), and the push run history."""

from __future__ import annotations

import os
import subprocess
import sys

from syncd.catalog.types import Catalog, PushCounts, PushState, RunStatus, TaskLink


def test_links_round_trip_and_pending_ones_are_counted(catalog: Catalog) -> None:
    long_key = "深" * 1024 + ".png"
    links = [
        TaskLink("raw", "a.jpg", 10, "e1", None, 5),
        TaskLink("raw", long_key, None, None, "v2", 6),
        TaskLink("other", "a.jpg", 11, None, None, 7, "deleted"),
    ]
    catalog.save_task_links("ls", links)
    assert catalog.task_links("ls", "raw", ["a.jpg", long_key, "missing"]) == {
        "a.jpg": links[0],
        long_key: links[1],
    }
    assert catalog.task_links("other-target", "raw", ["a.jpg"]) == {}
    assert catalog.count_pending_links("ls") == 1
    catalog.save_task_links("ls", [TaskLink("raw", long_key, 12, None, "v2", 6)])
    assert catalog.count_pending_links("ls") == 0
    assert sorted(link.task_id or 0 for link in catalog.all_task_links("ls")) == [10, 11, 12]
    catalog.drop_task_links("ls", [("raw", "a.jpg")])
    assert {(x.driver, x.key) for x in catalog.all_task_links("ls")} == {
        ("raw", long_key),
        ("other", "a.jpg"),
    }


def test_push_state_and_runs(catalog: Catalog) -> None:
    assert catalog.push_state("ls") is None
    catalog.save_push_state(PushState("ls", 42, 1_700_000_000.0))
    catalog.save_push_state(PushState("ls", 43, 1_700_000_001.0))
    assert catalog.push_state("ls") == PushState("ls", 43, 1_700_000_001.0)
    first = catalog.begin_push_run("ls", "pets")
    counts = PushCounts(imported=3, kept=1, writes=2)
    catalog.finish_push_run(first, RunStatus.FAILED, counts, 43, ["a\x00b"], "401")
    second = catalog.begin_push_run("ls", "pets")
    newest, oldest = catalog.push_runs("ls")
    assert (newest.id, newest.status) == (second, RunStatus.RUNNING)
    assert oldest.counts == counts and oldest.errors == ("a\\u0000b",) and oldest.reason == "401"
    assert oldest.pid == os.getpid() and oldest.pushed_through == 43


def test_a_push_run_of_a_dead_process_is_marked_interrupted(
    catalog: Catalog, catalog_url: str
) -> None:
    # A push that began in another process, which then died without finishing it.
    code = (
        "import sys; from syncd.catalog import open_catalog; "
        "open_catalog(sys.argv[1]).begin_push_run('ls', 'pets')"
    )
    subprocess.run([sys.executable, "-c", code, catalog_url], check=True)
    (stale,) = catalog.push_runs()
    assert stale.status is RunStatus.RUNNING
    catalog.begin_push_run("ls", "pets")
    runs = {r.id: r for r in catalog.push_runs()}
    assert runs[stale.id].status is RunStatus.INTERRUPTED
    assert runs[stale.id].reason == "interrupted: process gone"
