"""The reconciler against real catalogs (SQLite and PostgreSQL) and real folders."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import Catalog, ItemState, ItemWrite, Op, RunConflict, RunStatus, open_catalog
from syncd.config import MaxDelete
from syncd.errors import TransientError
from syncd.reconcile import SyncResult, reconcile
from syncd.storage.local import LocalStore
from syncd.storage.memory import MemoryStore
from syncd.storage.types import Gap, Listed, ObjectInfo
from tests.conftest import NASTY_KEYS, make_driver


def sync(catalog: Catalog, store: Any, root: str | Path = "b", **kw: Any) -> SyncResult:
    driver_fields = {k: kw.pop(k) for k in list(kw) if k not in ("dry_run", "max_delete")}
    if isinstance(kw.get("max_delete"), str | int):
        kw["max_delete"] = MaxDelete.model_validate(kw["max_delete"])
    return reconcile(
        catalog,
        store,
        dataset="ds",
        driver=make_driver(root, **driver_fields),
        provider="local",
        **kw,
    )


def live_keys(catalog: Catalog) -> list[str]:
    return [i.key for i in catalog.items("ds")]


def write(root: Path, key: str, data: bytes = b"x") -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_first_sync_adds_every_file_and_a_rerun_writes_nothing(
    catalog: Catalog, folder: Path
) -> None:
    for key in ("img/a.jpg", "img/b.png", "scan.dcm"):
        write(folder, key, key.encode())
    store = LocalStore(folder)

    first = sync(catalog, store, folder)
    assert first.status is RunStatus.SUCCEEDED
    assert (first.counts.listed, first.counts.added) == (3, 3)
    assert live_keys(catalog) == ["img/a.jpg", "img/b.png", "scan.dcm"]
    kinds = {i.key: i.media_kind for i in catalog.items("ds")}
    assert kinds == {"img/a.jpg": "image", "img/b.png": "image", "scan.dcm": "dicom"}
    feed = catalog.last_change_id()

    again = sync(catalog, store, folder)
    assert again.status is RunStatus.SUCCEEDED
    assert again.counts.as_dict() == {
        "listed": 3,
        "added": 0,
        "updated": 0,
        "deleted": 0,
        "unchanged": 3,
        "skipped": 0,
    }
    assert catalog.last_change_id() == feed
    assert [r.status for r in catalog.runs("ds")] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]


def test_update_delete_and_readd_show_in_items_and_change_feed(
    catalog: Catalog, folder: Path
) -> None:
    write(folder, "a.jpg", b"1")
    write(folder, "b.jpg", b"2")
    write(folder, "c.jpg", b"3")
    store = LocalStore(folder)
    sync(catalog, store, folder)

    write(folder, "a.jpg", b"longer")
    (folder / "b.jpg").unlink()
    result = sync(catalog, store, folder, max_delete="100%")
    assert (result.counts.updated, result.counts.deleted, result.counts.unchanged) == (1, 1, 1)
    assert live_keys(catalog) == ["a.jpg", "c.jpg"]
    tomb = [i for i in catalog.items("ds", include_deleted=True) if i.deleted]
    assert [t.key for t in tomb] == ["b.jpg"]
    assert {i.key: i.size for i in catalog.items("ds")}["a.jpg"] == 6

    write(folder, "b.jpg", b"back")
    result = sync(catalog, store, folder)
    assert result.counts.added == 1
    ops = [(c.key, c.op) for c in catalog.changes("ds")]
    assert ops == [
        ("a.jpg", Op.ADDED),
        ("b.jpg", Op.ADDED),
        ("c.jpg", Op.ADDED),
        ("a.jpg", Op.UPDATED),
        ("b.jpg", Op.DELETED),
        ("b.jpg", Op.ADDED),
    ]
    ids = [c.id for c in catalog.changes("ds")]
    assert ids == list(range(1, 7))
    assert [c.key for c in catalog.changes("ds", since=4)] == ["b.jpg", "b.jpg"]


def test_dry_run_writes_nothing_and_reports_the_plan(catalog: Catalog, folder: Path) -> None:
    write(folder, "new.png")
    plan = sync(catalog, LocalStore(folder), folder, dry_run=True)
    assert plan.dry_run and plan.run_id is None
    assert [(p.op, p.key) for p in plan.plan] == [(Op.ADDED, "new.png")]
    assert catalog.last_change_id() == 0
    assert catalog.runs() == [] and catalog.datasets() == []

    sync(catalog, LocalStore(folder), folder)
    (folder / "new.png").unlink()
    write(folder, "other.png")
    before = catalog.last_change_id()
    plan = sync(catalog, LocalStore(folder), folder, dry_run=True, max_delete="100%")
    assert sorted((str(p.op), p.key) for p in plan.plan) == [
        ("added", "other.png"),
        ("deleted", "new.png"),
    ]
    assert catalog.last_change_id() == before
    assert live_keys(catalog) == ["new.png"]


def test_nasty_keys_round_trip_in_byte_order(catalog: Catalog, folder: Path) -> None:
    keys = NASTY_KEYS
    assert max(len(k.encode()) for k in keys) == 1024
    for key in keys:
        write(folder, key, key.encode())
    store = LocalStore(folder)
    listed = [o.key for o in store.list()]
    assert listed == sorted(keys, key=lambda k: k.encode())

    result = sync(catalog, store, folder)
    assert result.counts.added == len(keys)
    assert live_keys(catalog) == sorted(keys, key=lambda k: k.encode())
    assert sync(catalog, store, folder).counts.unchanged == len(keys)
    nfc, nfd = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
    sizes = {i.key: i.size for i in catalog.items("ds")}
    assert sizes[nfc] == len(nfc.encode()) and sizes[nfd] == len(nfd.encode())


def test_file_and_folder_of_the_same_name_order_as_keys(catalog: Catalog) -> None:
    # `a` (an object) and `a/b` cannot both be files on disk, but can in a bucket.
    store = MemoryStore()
    for key in ("a/b", "a", "a-b", "A", "a0", "a/b/c"):
        store.put(key, b"1")
    sync(catalog, store)
    assert live_keys(catalog) == ["A", "a", "a-b", "a/b", "a/b/c", "a0"]


class Shuffled:
    """A store whose listing comes in an arbitrary order."""

    def __init__(self, inner: MemoryStore, *, claims_sorted: bool, seed: int = 7) -> None:
        self.inner = inner
        self.name = "shuffled"
        self.sorted_listing = claims_sorted
        self.skipped_by_store: tuple[str, ...] = ()
        self.seed = seed
        self.lists = 0

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.lists += 1
        items = list(self.inner.list(prefix, start_after))
        random.Random(self.seed).shuffle(items)
        return iter(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("claims_sorted", [True, False])
def test_out_of_order_listing_gives_the_same_catalog(catalog: Catalog, claims_sorted: bool) -> None:
    store = MemoryStore()
    for n in range(300):
        store.put(f"k/{n:04d}.jpg", b"v1")
    sync(catalog, store)
    for n in range(0, 300, 3):
        store.delete(f"k/{n:04d}.jpg")
    for n in range(1, 300, 3):
        store.put(f"k/{n:04d}.jpg", b"version two")
    store.put("k/new.jpg", b"n")

    shuffled = Shuffled(store, claims_sorted=claims_sorted)
    result = sync(catalog, shuffled, max_delete="100%")
    assert result.status is RunStatus.SUCCEEDED
    assert live_keys(catalog) == [o.key for o in store.list()]
    assert (result.counts.added, result.counts.updated, result.counts.deleted) == (1, 100, 100)
    assert result.counts.listed == 201
    if claims_sorted:
        assert shuffled.lists == 2
        assert any("out of order" in e for e in result.errors)
    else:
        assert shuffled.lists == 1
    assert sync(catalog, store).counts.unchanged == 201


class Failing:
    """A store whose listing breaks after `after` objects."""

    def __init__(self, inner: MemoryStore, after: int) -> None:
        self.inner = inner
        self.after = after
        self.name = "failing"
        self.sorted_listing = True
        self.skipped_by_store: tuple[str, ...] = ()

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        for n, info in enumerate(self.inner.list(prefix, start_after)):
            if n == self.after:
                raise TransientError("SlowDown: please reduce your request rate (503)")
            yield info


def test_listing_failure_midway_deletes_nothing(catalog: Catalog) -> None:
    store = MemoryStore()
    for n in range(100):
        store.put(f"{n:03d}", b"1")
    sync(catalog, store)
    store.delete("010")
    store.put("050", b"changed")

    result = sync(catalog, Failing(store, after=60), max_delete="100%")
    assert result.status is RunStatus.ABORTED
    assert "listing failed" in (result.reason or "") and "SlowDown" in (result.reason or "")
    assert result.counts.deleted == 0
    assert len(live_keys(catalog)) == 100
    run = catalog.runs("ds")[0]
    assert run.status is RunStatus.ABORTED and "SlowDown" in (run.reason or "")


def test_empty_listing_where_items_existed_deletes_nothing(catalog: Catalog) -> None:
    store = MemoryStore()
    for n in range(10):
        store.put(f"{n}", b"1")
    sync(catalog, store)
    result = sync(catalog, MemoryStore(), max_delete="100%")
    assert result.status is RunStatus.ABORTED
    assert "empty" in (result.reason or "")
    assert len(live_keys(catalog)) == 10


def test_max_delete_stops_then_override_allows(catalog: Catalog) -> None:
    store = MemoryStore()
    for n in range(10):
        store.put(f"{n}", b"1")
    sync(catalog, store)
    for n in range(6):
        store.delete(f"{n}")

    stopped = sync(catalog, store)
    assert stopped.status is RunStatus.ABORTED
    assert "6 deletes of 10 live items" in (stopped.reason or "")
    assert len(live_keys(catalog)) == 10

    counted = sync(catalog, store, max_delete=MaxDelete.model_validate(5))
    assert counted.status is RunStatus.ABORTED and "count 5" in (counted.reason or "")

    allowed = sync(catalog, store, max_delete=MaxDelete.model_validate("60%"))
    assert allowed.status is RunStatus.SUCCEEDED and allowed.counts.deleted == 6
    assert live_keys(catalog) == ["6", "7", "8", "9"]


def test_external_delete_not_allowed_keeps_items(catalog: Catalog) -> None:
    store = MemoryStore()
    store.put("keep", b"1")
    store.put("gone", b"1")
    sync(catalog, store)
    store.delete("gone")
    result = sync(catalog, store, allow_external_delete=False)
    assert result.status is RunStatus.SUCCEEDED
    assert (result.counts.deleted, result.counts.skipped) == (0, 1)
    assert live_keys(catalog) == ["gone", "keep"]


def test_prefix_include_exclude_and_skip_rule(catalog: Catalog, folder: Path) -> None:
    for key in (
        "train/a.jpg",
        "train/b.png",
        "train/notes.txt",
        "train/sub/c.jpg",
        "train/.hidden.jpg",
        "train/upload.jpg.part",
        "train/tmp~",
        "val/d.jpg",
    ):
        write(folder, key)
    result = sync(
        catalog,
        LocalStore(folder),
        folder,
        prefix="train/",
        include=["*.jpg", "*.png"],
        exclude=["sub/**"],
    )
    assert live_keys(catalog) == ["train/a.jpg", "train/b.png"]
    assert result.counts.skipped == 5


def test_reconcile_never_undoes_a_newer_event(catalog: Catalog, catalog_url: str) -> None:
    """Invariant 4: an event applied while a listing runs wins over that listing."""
    store = MemoryStore()
    for n in range(20):
        store.put(f"k{n:02d}", b"1")
    sync(catalog, store)

    other = open_catalog(catalog_url)

    class EventMidListing:
        name = "racing"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
            listing = list(store.list(prefix))  # the listing as it was when it began
            yield listing[0]
            ds, dr = other.find_id("dataset", "ds"), other.find_id("driver", "files")
            assert ds is not None and dr is not None
            with other.transaction() as tx:
                # An event deletes k05 (the listing still has it) and creates new (it lacks it).
                row = tx.rows(ds, dr, ["k05"])["k05"]
                tomb = ItemState(
                    row.key,
                    row.size,
                    row.mtime,
                    row.etag,
                    None,
                    None,
                    "other",
                    "2",
                    9e9,
                    deleted=True,
                )
                fresh = ItemState("new", 3, 9e9, "e", None, None, "other", "1", 9e9)
                tx.write(ds, dr, [ItemWrite(Op.DELETED, tomb), ItemWrite(Op.ADDED, fresh)])
            yield from listing[1:]

    try:
        result = sync(catalog, EventMidListing(), max_delete="100%")
    finally:
        other.close()
    assert result.status is RunStatus.SUCCEEDED
    keys = live_keys(catalog)
    assert "k05" not in keys
    assert "new" in keys
    assert len(keys) == 20


def test_a_live_run_blocks_a_second_and_a_dead_one_is_marked_interrupted(catalog: Catalog) -> None:
    store = MemoryStore()
    store.put("a", b"1")
    sync(catalog, store)
    ds, dr = catalog.find_id("dataset", "ds"), catalog.find_id("driver", "files")
    assert ds is not None and dr is not None
    catalog.begin_run(ds, dr, watermark=0)
    with pytest.raises(RunConflict):
        sync(catalog, store)

    # Rewrite the running row's pid to one that does not exist: that run died.
    dead = catalog.runs("ds")[0].id
    if catalog.url.startswith("sqlite"):
        catalog._execute("UPDATE sync_runs SET pid = ? WHERE id = ?", (2**22 + 17, dead))  # type: ignore[attr-defined]
    else:
        with catalog._write_lock() as cur:  # type: ignore[attr-defined]
            cur.execute("UPDATE sync_runs SET pid = %s WHERE id = %s", (2**22 + 17, dead))
    assert sync(catalog, store).status is RunStatus.SUCCEEDED
    statuses = {r.id: r.status for r in catalog.runs("ds")}
    assert statuses[dead] is RunStatus.INTERRUPTED


def test_deletes_under_what_the_listing_could_not_read_are_held(catalog: Catalog) -> None:
    store = MemoryStore()
    for key in ("a", "locked/b", "locked/c", "x", "y"):
        store.put(key, b"1")
    sync(catalog, store)
    for key in ("locked/b", "y"):
        store.delete(key)

    class PartlyUnreadable:
        name = "partly"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
            for info in store.list(prefix, start_after):
                if not info.key.startswith("locked/"):
                    yield info
                if info.key == "a":
                    yield Gap("locked/", "bucket/locked: Permission denied")

    result = sync(catalog, PartlyUnreadable(), max_delete="100%")
    assert result.status is RunStatus.COMPLETED_WITH_ERRORS
    assert "1 entries unreadable" in (result.reason or "")
    assert result.errors == ["bucket/locked: Permission denied"]
    # y is deleted; what was under the unreadable folder is kept as it was.
    assert live_keys(catalog) == ["a", "locked/b", "locked/c", "x"]
    assert (result.counts.deleted, result.counts.skipped) == (1, 2)


def test_a_failure_quoting_a_signed_url_is_stored_without_the_signature(catalog: Catalog) -> None:
    class Refusing:
        name = "refusing"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
            raise TransientError(
                "GET https://acct.blob.core.windows.net/c?restype=container&sv=2021&sig=S3CR3T "
                "failed"
            )

    result = sync(catalog, Refusing())
    assert result.status is RunStatus.ABORTED
    assert "S3CR3T" not in (result.reason or "") and "sig=***" in (result.reason or "")
    assert "S3CR3T" not in (catalog.runs("ds")[0].reason or "")


def test_a_sync_settles_items_marked_for_verification(catalog: Catalog) -> None:
    store = MemoryStore()
    for key in ("keep", "gone", "same"):
        store.put(key, key.encode())
    sync(catalog, store)
    ds, dr = catalog.find_id("dataset", "ds"), catalog.find_id("driver", "files")
    assert ds is not None and dr is not None
    with catalog.transaction() as tx:
        rows = tx.rows(ds, dr, ["keep", "gone", "same"])
        tx.write(
            ds,
            dr,
            [
                ItemWrite(
                    Op.UPDATED,
                    ItemState(
                        *row[:5],
                        row.content_type,
                        row.media_kind,
                        row.order_token,
                        row.observed_at,
                        verify=True,
                    ),
                )
                for row in rows.values()
            ],
        )
    store.delete("gone")
    store.put("keep", b"changed")
    result = sync(catalog, store, max_delete="100%")
    assert (result.counts.updated, result.counts.deleted) == (2, 1)
    items = {i.key: (i.deleted, i.verify) for i in catalog.items("ds", include_deleted=True)}
    assert items == {"keep": (False, False), "gone": (True, False), "same": (False, False)}


def test_an_interrupt_records_the_run_interrupted_with_what_was_committed(
    catalog: Catalog,
) -> None:
    store = MemoryStore()
    for n in range(12_000):
        store.put(f"k{n:05d}", b"1")

    class Interrupted:
        name = "interrupted"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
            for n, info in enumerate(store.list(prefix, start_after)):
                if n == 11_000:
                    raise KeyboardInterrupt
                yield info

    with pytest.raises(KeyboardInterrupt):
        sync(catalog, Interrupted())
    (run,) = catalog.runs("ds")
    committed = sum(1 for c in catalog.changes("ds") if c.run_id == run.id)
    assert run.status is RunStatus.INTERRUPTED and run.finished_at is not None
    assert run.counts.added == committed == 10_000
