"""The catalog on SQLite and PostgreSQL: shared by processes, guarded writes, migrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syncd.catalog import Catalog, CatalogRow, ItemState, ItemWrite, Op, open_catalog

ROOT = Path(__file__).resolve().parents[2]


def state(key: str, etag: str, deleted: bool = False) -> ItemState:
    return ItemState(key, 1, 1.0, etag, None, None, "image", None, 1.0, deleted=deleted)


def test_two_processes_writing_at_once_leave_a_consistent_catalog(catalog_url: str) -> None:
    open_catalog(catalog_url).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", catalog_url, "1", "30000", name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for name in ("left", "right")
    ]
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0 and out.startswith("succeeded")
    catalog = open_catalog(catalog_url)
    try:
        drivers = [i.driver for i in catalog.items("crash")]
        assert drivers.count("left") == 30_000 and drivers.count("right") == 30_000
        ids = [c.id for c in catalog.changes("crash")]
        assert ids == list(range(1, 60_001))
    finally:
        catalog.close()


def test_guarded_write_keeps_a_newer_change(catalog: Catalog) -> None:
    ds, dr = catalog.dataset_id("d"), catalog.driver_id("r", "s3", "b", "")
    with catalog.transaction() as tx:
        tx.write(
            ds, dr, [ItemWrite(Op.ADDED, state("a", "1")), ItemWrite(Op.ADDED, state("b", "1"))]
        )
    watermark = catalog.last_change_id()
    with catalog.transaction() as tx:
        tx.write(ds, dr, [ItemWrite(Op.DELETED, state("a", "1", deleted=True))])
    with catalog.transaction() as tx:
        result = tx.write(
            ds,
            dr,
            [ItemWrite(Op.UPDATED, state("a", "2")), ItemWrite(Op.UPDATED, state("b", "2"))],
            guard=watermark,
            expect_last=watermark,
        )
    assert [w.state.key for w in result.applied] == ["b"]
    rows = {r.key: r for r in map(CatalogRow._make, catalog.scan(ds, dr))}
    assert rows["a"].deleted and rows["b"].etag == "2"
    assert [c.id for c in catalog.changes("d")] == [1, 2, 3, 4]


def test_a_rolled_back_transaction_leaves_no_gap(catalog: Catalog) -> None:
    ds, dr = catalog.dataset_id("d"), catalog.driver_id("r", "s3", "b", "")
    try:
        with catalog.transaction() as tx:
            tx.write(ds, dr, [ItemWrite(Op.ADDED, state("a", "1"))])
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    with catalog.transaction() as tx:
        tx.write(ds, dr, [ItemWrite(Op.ADDED, state("b", "1"))])
    assert [(c.id, c.key) for c in catalog.changes("d")] == [(1, "b")]


def test_reopening_migrates_once_and_keeps_data(catalog_url: str) -> None:
    first = open_catalog(catalog_url)
    ds, dr = first.dataset_id("d"), first.driver_id("r", "local", "/x", "")
    with first.transaction() as tx:
        tx.write(ds, dr, [ItemWrite(Op.ADDED, state("k", "1"))])
    first.close()
    second = open_catalog(catalog_url)
    try:
        assert [i.key for i in second.items("d")] == ["k"]
        assert second.last_change_id() == 1
    finally:
        second.close()


def test_dead_letters_keep_the_raw_payload(catalog: Catalog) -> None:
    with catalog.transaction() as tx:
        tx.dead_letter("sqs:queue", "no Records field", '{"oops": true}')
    (letter,) = catalog.dead_letters()
    assert (letter.source, letter.reason, letter.payload) == (
        "sqs:queue",
        "no Records field",
        '{"oops": true}',
    )
