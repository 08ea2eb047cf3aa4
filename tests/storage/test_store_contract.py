"""One behavioural suite over every store: memory, local folders, S3 (moto), GCS
(fake-gcs-server) and Azure Blob (Azurite), each a real server on loopback."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import Catalog, RunStatus, open_catalog
from syncd.config import MaxDelete
from syncd.errors import NotFound
from syncd.reconcile import SyncResult, reconcile
from syncd.storage.fanout import fan_out_listing
from syncd.storage.types import Listed, ObjectInfo, PrefixLister, Presigner, Store, Writer
from tests.conftest import NASTY_KEYS, objects
from tests.storage.conftest import Bucket

NewBucket = Callable[[], Bucket]

NASTY = NASTY_KEYS


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")


def writer(store: Store) -> Writer:
    assert isinstance(store, Writer)
    return store


def sync(catalog: Catalog, bucket: Bucket, store: Store | None = None, **fields: Any) -> SyncResult:
    limit = fields.pop("max_delete", None)
    driver = bucket.driver(**fields)
    return reconcile(
        catalog,
        store or bucket.open(**fields),
        dataset="ds",
        driver=driver,
        provider=bucket.integration.provider,
        max_delete=MaxDelete.model_validate(limit) if limit is not None else None,
    )


def live(catalog: Catalog) -> dict[str, int]:
    return {i.key: i.size for i in catalog.items("ds")}


def test_objects_round_trip_with_nasty_keys_in_byte_order(new_bucket: NewBucket) -> None:
    bucket = new_bucket()
    store = bucket.open()
    for n, key in enumerate(NASTY):
        writer(store).put(key, key.encode() + bytes(n))
    listed = [o.key for o in store.list()]
    expected = sorted(NASTY, key=lambda k: k.encode())
    if store.sorted_listing:
        assert listed == expected
    else:
        assert sorted(listed) == expected
    key = "with space.jpg"
    info = store.stat(key)
    assert info.key == key and info.size == len(key.encode()) + NASTY.index(key)
    assert store.read_range(key, 5, 5) == b"space"
    assert store.read_range(key, 10_000, 5) == b""
    with pytest.raises(NotFound):
        store.stat("absent.jpg")


def test_urls_percent_encode_keys(new_bucket: NewBucket) -> None:
    bucket = new_bucket()
    store = bucket.open()
    url = store.url("dir/a b+c#d?é.jpg")
    assert url.endswith("dir/a%20b%2Bc%23d%3F%C3%A9.jpg")
    if bucket.kind == "s3":
        assert (
            url
            == f"{bucket.integration.endpoint_url}/{bucket.bucket}/dir/a%20b%2Bc%23d%3F%C3%A9.jpg"
        )
    if bucket.kind == "gcs":
        assert url.startswith(f"https://storage.cloud.google.com/{bucket.bucket}/")


def test_signed_urls_fetch_the_object(new_bucket: NewBucket) -> None:
    bucket = new_bucket()
    store = bucket.open()
    if not isinstance(store, Presigner):
        assert bucket.kind in ("memory", "local", "gcs")
        return
    writer(store).put("signed dir/ö+1.bin", b"signed bytes")
    url = store.signed_url("signed dir/ö+1.bin", 300)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"signed bytes"


def test_sync_lifecycle_add_overwrite_delete_and_noop(
    new_bucket: NewBucket, catalog: Catalog
) -> None:
    bucket = new_bucket()
    store = bucket.open()
    for n in range(12):
        writer(store).put(f"img/{n:02d}.jpg", b"v1" * (n + 1))
    first = sync(catalog, bucket)
    assert first.status is RunStatus.SUCCEEDED and first.counts.added == 12
    feed = catalog.last_change_id()
    again = sync(catalog, bucket)
    assert again.counts.unchanged == 12 and catalog.last_change_id() == feed

    writer(store).put("img/00.jpg", b"version two!")
    writer(store).delete("img/01.jpg")
    writer(store).put("img/new.jpg", b"n")
    result = sync(catalog, bucket)
    assert (result.counts.added, result.counts.updated, result.counts.deleted) == (1, 1, 1)
    sizes = live(catalog)
    assert sizes["img/00.jpg"] == 12 and "img/01.jpg" not in sizes and "img/new.jpg" in sizes
    assert sync(catalog, bucket).counts.unchanged == 12


def test_prefix_include_exclude(new_bucket: NewBucket, catalog: Catalog) -> None:
    bucket = new_bucket()
    store = bucket.open()
    for key in ("train/a.jpg", "train/b.png", "train/c.txt", "train/sub/d.jpg", "val/e.jpg"):
        writer(store).put(key, b"x")
    sync(catalog, bucket, prefix="train/", include=["*.jpg", "*.png"], exclude=["sub/**"])
    assert sorted(live(catalog)) == ["train/a.jpg", "train/b.png"]


def test_nasty_keys_sync_and_resync(new_bucket: NewBucket, catalog: Catalog) -> None:
    bucket = new_bucket()
    store = bucket.open()
    for key in NASTY:
        writer(store).put(key, b"k")
    assert sync(catalog, bucket).counts.added == len(NASTY)
    assert list(live(catalog)) == sorted(NASTY, key=lambda k: k.encode())
    assert sync(catalog, bucket).counts.unchanged == len(NASTY)


def test_empty_bucket_syncs_to_nothing(new_bucket: NewBucket, catalog: Catalog) -> None:
    result = sync(catalog, new_bucket())
    assert result.status is RunStatus.SUCCEEDED and result.counts.listed == 0


def test_missing_bucket_is_a_clear_stop(new_bucket: NewBucket, catalog: Catalog) -> None:
    bucket = new_bucket()
    bucket.bucket = bucket.bucket + "-missing" if bucket.kind != "local" else bucket.bucket + "/no"
    if bucket.kind == "memory":
        return  # a memory store has no bucket to miss
    result = sync(catalog, bucket)
    assert result.status is RunStatus.ABORTED
    assert "does not exist" in (result.reason or "") and bucket.bucket in (result.reason or "")


def test_fan_out_listing_equals_single_stream(new_bucket: NewBucket) -> None:
    bucket = new_bucket()
    store = bucket.open()
    if not isinstance(store, PrefixLister):
        assert bucket.kind in ("memory", "local")
        return
    # `a` and `a/b` together, and a `b/` folder marker: possible in buckets only.
    for key in [*NASTY, "top.jpg", "a", "b/", "b/c", "z/1", "z/2/3"]:
        writer(store).put(key, b"1")

    def ordered(listing: Iterable[Listed]) -> list[ObjectInfo]:
        # A store that does not list in byte order is sorted by the reconciler either way.
        found = objects(listing)
        return found if store.sorted_listing else sorted(found, key=lambda i: i.key)

    single = ordered(store.list())
    for concurrency in (1, 3, 16):
        assert ordered(fan_out_listing(store, "", concurrency=concurrency)) == single
    assert ordered(fan_out_listing(store, "b/", concurrency=4)) == ordered(store.list("b/"))


def test_fanned_out_sync_matches_single_stream(new_bucket: NewBucket, catalog: Catalog) -> None:
    bucket = new_bucket()
    store = bucket.open()
    keys = [*NASTY, "top.jpg", "z/1.jpg", "z/2/3.jpg"]
    for key in keys:
        writer(store).put(key, b"12")
    first = sync(catalog, bucket, fan_out=4)
    assert first.status is RunStatus.SUCCEEDED, first.reason
    assert live(catalog) == dict.fromkeys(keys, 2)
    writer(store).delete("z/1.jpg")
    again = sync(catalog, bucket, fan_out=4)
    assert (again.counts.added, again.counts.deleted, again.counts.unchanged) == (
        0,
        1,
        len(keys) - 1,
    )


def test_max_delete_guards_every_store(new_bucket: NewBucket, catalog: Catalog) -> None:
    bucket = new_bucket()
    store = bucket.open()
    for n in range(4):
        writer(store).put(f"{n}.jpg", b"1")
    sync(catalog, bucket)
    for n in range(3):
        writer(store).delete(f"{n}.jpg")
    stopped = sync(catalog, bucket)
    assert stopped.status is RunStatus.ABORTED and len(live(catalog)) == 4
    assert sync(catalog, bucket, max_delete="100%").counts.deleted == 3
