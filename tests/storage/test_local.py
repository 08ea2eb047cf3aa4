"""Local folders: byte-order walk, symlinks, skip rule, hashes, odd names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import open_catalog
from syncd.config import DEFAULT_SKIP
from syncd.errors import NotFound
from syncd.storage.filters import KeyFilter
from syncd.storage.local import LocalStore
from syncd.storage.types import Gap, ObjectInfo
from tests.conftest import objects


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
    # Followed inside the folder only; a link leading out is a reported gap...
    assert keys(LocalStore(folder, follow_symlinks=True)) == [
        "linked-dir/",
        "linked.jpg",
        "real.jpg",
    ]
    # ...unless links may leave it.
    assert keys(LocalStore(folder, follow_symlinks=True, symlinks_outside=True)) == [
        "linked-dir/secret.jpg",
        "linked.jpg",
        "real.jpg",
    ]


def test_hidden_and_partial_files_are_skipped_by_the_default_rule(folder: Path) -> None:
    for key in ("ok.jpg", ".DS_Store", ".cache/x.jpg", "up.jpg.part", "dl.crdownload", "edit~"):
        put(folder, key)
    store = LocalStore(folder, keys=KeyFilter(skip=DEFAULT_SKIP))
    assert keys(store) == ["ok.jpg"]


def test_content_hash_and_stat_and_ranges(folder: Path) -> None:
    put(folder, "a/b.bin", b"0123456789")
    store = LocalStore(folder, content_hash="md5")
    (info,) = objects(store.list())
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
    assert list(store.list()) == [store.stat("good.jpg")]


def test_a_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        keys(LocalStore(tmp_path / "absent"))


def test_key_filter_fast_path_agrees_with_accepts() -> None:
    from syncd.config import DEFAULT_SKIP
    from syncd.storage.types import Listed, ObjectInfo

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
        rejected: list[Listed] = []
        listing = [ObjectInfo(k, 1, 1.0) for k in sorted(keys)]
        kept = [o.key for o in keyfilter.filter(listing, rejected.append)]
        assert kept == [k for k in sorted(keys) if keyfilter.accepts(k)]
        assert sorted(kept + [o.key for o in rejected]) == sorted(keys)


# -- faults a real folder has: unreadable parts, links, long paths ---------------------------

WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def sync_without_permission_override(project: Path) -> tuple[int, dict[str, Any]]:
    """`syncd sync --json` as a root without CAP_DAC_OVERRIDE: file modes apply to it as to
    any user, so an unreadable folder is really unreadable."""
    done = subprocess.run(
        [*WITHOUT_DAC, sys.executable, "-m", "syncd", "sync", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""},
    )
    return done.returncode, json.loads(done.stdout)


def test_an_unreadable_folder_holds_its_items_and_the_rest_syncs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for key in ("a.jpg", "lost+found/x.jpg", "locked/old.jpg", "locked/keep.jpg", "z.jpg"):
        put(data, key)
    (tmp_path / "syncd.yaml").write_text(
        "integrations: [{name: disk, provider: local}]\n"
        "drivers: [{name: d, integration: disk, bucket: data, exclude: ['lost+found/**'],"
        " max_delete: 100%}]\n"
        "datasets: [{name: ds, drivers: [d]}]\n"
    )
    code, first = sync_without_permission_override(tmp_path)
    assert code == 0 and first["results"][0]["counts"]["added"] == 4
    (data / "locked" / "old.jpg").unlink()
    (data / "z.jpg").unlink()
    put(data, "b.jpg")
    for folder in ("locked", "lost+found"):
        (data / folder).chmod(0)
    try:
        code, second = sync_without_permission_override(tmp_path)
    finally:
        for folder in ("locked", "lost+found"):
            (data / folder).chmod(0o755)
    (result,) = second["results"]
    assert code == 1 and result["status"] == "completed_with_errors"
    assert any("locked" in e and "Permission denied" in e for e in result["errors"])
    assert not any("lost+found" in e for e in result["errors"])  # excluded: never entered
    counts = result["counts"]
    assert (counts["added"], counts["deleted"], counts["skipped"]) == (1, 1, 2)
    catalog = open_catalog(f"sqlite:///{tmp_path / '.syncd' / 'catalog.db'}")
    live = [i.key for i in catalog.items("ds")]
    catalog.close()
    # z.jpg went; under the unreadable folder nothing changed, old.jpg included.
    assert live == ["a.jpg", "b.jpg", "locked/keep.jpg", "locked/old.jpg"]


def test_an_unreadable_file_with_a_content_hash_is_a_gap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    put(data, "ok.bin", b"1")
    put(data, "secret.bin", b"2")
    (tmp_path / "syncd.yaml").write_text(
        "integrations: [{name: disk, provider: local}]\n"
        "drivers: [{name: d, integration: disk, bucket: data, content_hash: md5}]\n"
        "datasets: [{name: ds, drivers: [d]}]\n"
    )
    (data / "secret.bin").chmod(0)
    try:
        code, report = sync_without_permission_override(tmp_path)
    finally:
        (data / "secret.bin").chmod(0o644)
    (result,) = report["results"]
    assert code == 1 and result["counts"]["added"] == 1
    assert any("secret.bin" in e for e in result["errors"])


def test_a_path_longer_than_the_system_allows_is_a_gap(folder: Path) -> None:
    put(folder, "short.jpg")
    # Built one level at a time through directory handles: no path given to the system is
    # longer than its limit, but the full path of the deepest folder is.
    fd = os.open(folder, os.O_RDONLY)
    depth = 0
    try:
        while depth * 201 < 4200:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
            depth += 1
        os.close(os.open("deep.jpg", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    listed = list(LocalStore(folder).list())
    gaps = [e for e in listed if isinstance(e, Gap)]
    assert [e.key for e in listed if isinstance(e, ObjectInfo)] == ["short.jpg"]
    assert len(gaps) == 1 and gaps[0].error and "too long" in gaps[0].reason.lower()


def test_symlink_cycles_and_links_out_of_the_folder_are_skipped_and_reported(
    folder: Path,
) -> None:
    put(folder, "a/pic.jpg")
    (folder / "a" / "up").symlink_to("..")
    (folder / "a" / "self").symlink_to(".")
    (folder / "etc").symlink_to("/etc")
    (folder / "b").symlink_to("a")  # a second name for a folder inside: followed
    listed = list(LocalStore(folder, follow_symlinks=True).list())
    keys = [e.key for e in listed if isinstance(e, ObjectInfo)]
    gaps = {e.key: e for e in listed if isinstance(e, Gap)}
    assert keys == ["a/pic.jpg", "b/pic.jpg"]
    assert set(gaps) == {"a/self/", "a/up/", "b/self/", "b/up/", "etc/"}
    assert not any(g.error for g in gaps.values())
    assert "cycle" in gaps["a/up/"].reason and "outside" in gaps["etc/"].reason
    outside = LocalStore(folder, follow_symlinks=True, symlinks_outside=True)
    assert any(e.key.startswith("etc/") for e in outside.list() if isinstance(e, ObjectInfo))
