"""Local folders: byte-order walk, symlinks, skip rule, hashes, odd names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from syncd.config import DEFAULT_SKIP
from syncd.errors import NotFound
from syncd.storage.filters import KeyFilter
from syncd.storage.local import LocalStore


def put(root: Path, key: str, data: bytes = b"x") -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def keys(store: LocalStore, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [o.key for o in store.list(prefix, start_after)]


def test_walk_yields_full_keys_in_byte_order_not_directory_order(folder: Path) -> None:
    for key in ("a0", "a-b", "a/b", "a/c/d", "B", "é", "z/😀", "ab"):
        put(folder, key)
    listed = keys(LocalStore(folder))
    assert listed == ["B", "a-b", "a/b", "a/c/d", "a0", "ab", "z/😀", "é"]
    assert listed == sorted(listed, key=lambda k: k.encode())


def test_prefix_and_start_after(folder: Path) -> None:
    for key in ("img/a.jpg", "img/b.jpg", "img2/c.jpg", "imgx.jpg", "other/d.jpg"):
        put(folder, key)
    store = LocalStore(folder)
    assert keys(store, "img/") == ["img/a.jpg", "img/b.jpg"]
    assert keys(store, "img") == ["img/a.jpg", "img/b.jpg", "img2/c.jpg", "imgx.jpg"]
    assert keys(store, "", start_after="img2/c.jpg") == ["imgx.jpg", "other/d.jpg"]
    assert keys(store, "nothing/") == []


def test_symlinks_are_not_followed_unless_asked(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    put(outside, "secret.jpg")
    put(folder, "real.jpg")
    os.symlink(outside, folder / "linked-dir")
    os.symlink(folder / "real.jpg", folder / "linked.jpg")
    assert keys(LocalStore(folder)) == ["real.jpg"]
    assert keys(LocalStore(folder, follow_symlinks=True)) == [
        "linked-dir/secret.jpg",
        "linked.jpg",
        "real.jpg",
    ]


def test_hidden_and_partial_files_are_skipped_by_the_default_rule(folder: Path) -> None:
    for key in ("ok.jpg", ".DS_Store", ".cache/x.jpg", "up.jpg.part", "dl.crdownload", "edit~"):
        put(folder, key)
    store = LocalStore(folder, skip=KeyFilter(skip=DEFAULT_SKIP))
    assert keys(store) == ["ok.jpg"]


def test_content_hash_and_stat_and_ranges(folder: Path) -> None:
    put(folder, "a/b.bin", b"0123456789")
    store = LocalStore(folder, content_hash="md5")
    (info,) = store.list()
    assert info.etag == hashlib.md5(b"0123456789").hexdigest()
    assert info.size == 10
    assert store.stat("a/b.bin") == info
    assert store.read_range("a/b.bin", 3, 4) == b"3456"
    assert store.url("a/b.bin").startswith("file:///") and store.url("a/b.bin").endswith("/a/b.bin")
    with pytest.raises(NotFound):
        store.stat("a/missing.bin")
    with pytest.raises(NotFound):
        store.stat("../escape")


def test_names_that_are_not_utf8_are_skipped_not_fatal(folder: Path) -> None:
    put(folder, "good.jpg")
    with open(os.path.join(os.fsencode(folder), b"bad-\xff.jpg"), "wb") as handle:
        handle.write(b"x")
    store = LocalStore(folder)
    assert keys(store) == ["good.jpg"]
    assert store.listing_errors == []


def test_a_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        keys(LocalStore(tmp_path / "absent"))


def test_key_filter_fast_path_agrees_with_accepts() -> None:
    from syncd.config import DEFAULT_SKIP
    from syncd.storage.types import ObjectInfo

    keys = [
        "p/a.jpg",
        "p/.h",
        "p/d/.git/x",
        "p/d/e/f.jpg",
        "p/d/e/g.part",
        "p/x~",
        "p/.d/a",
        "p/ok/b.tmp",
        "q/a.jpg",
        "p/",
        "p/a.partx",
        "p/dir.tmp/in.jpg",
    ]
    for prefix in ("", "p/", "p/d"):
        keyfilter = KeyFilter(prefix=prefix, skip=DEFAULT_SKIP)
        rejected: list[ObjectInfo] = []
        listing = [ObjectInfo(k, 1, 1.0) for k in sorted(keys)]
        kept = [o.key for o in keyfilter.filter(listing, rejected.append)]
        assert kept == [k for k in sorted(keys) if keyfilter.accepts(k)]
        assert sorted(kept + [o.key for o in rejected]) == sorted(keys)
