"""Catalog faults a user meets: each is one clear line naming the catalog and what to do,
the run is recorded with the real reason, and nothing already stored is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd.catalog import Catalog, ItemState, ItemWrite, Op, RunStatus, open_catalog
from syncd.catalog.postgres import PostgresCatalog
from syncd.catalog.sqlite import SqliteCatalog
from syncd.errors import CatalogError, ConfigError
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from syncd.storage.types import Listed
from tests.conftest import PG_URL, make_driver

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
catalog: {catalog}
integrations: [{{name: disk, provider: local}}]
drivers: [{{name: photos, integration: disk, bucket: ./photos}}]
datasets: [{{name: pets, drivers: [photos]}}]
"""


def state(key: str, size: int = 1) -> ItemState:
    return ItemState(key, size, 1.0, "e", None, None, "image", None, 1.0)


def sync_cli(tmp_path: Path, catalog: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "syncd.yaml").write_text(CONFIG.format(catalog=catalog))
    (tmp_path / "photos").mkdir(exist_ok=True)
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    return subprocess.run(
        [sys.executable, "-m", "syncd", "sync"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": "", "PYTHONPATH": str(ROOT)},
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    return lines[0]


def test_keys_longer_than_a_btree_entry_work_in_byte_order(catalog: Catalog) -> None:
    cjk = "画" * 1024  # a valid Azure blob name: 1,024 characters, 3 KB of UTF-8
    shared = "p/" + "x" * 600
    keys = sorted([cjk, cjk + "/b", shared + "b", shared + "a", shared, "a", "é" * 2000, "z"])
    ds, dr = catalog.dataset_id("d"), catalog.driver_id("r", "azure", "c", "")
    with catalog.transaction() as tx:
        tx.write(ds, dr, [ItemWrite(Op.ADDED, state(k)) for k in reversed(keys)])
    assert [row[0] for row in catalog.scan(ds, dr)] == keys
    assert [i.key for i in catalog.items("d")] == keys
    assert [i.key for i in catalog.items("d", prefix=shared)] == [
        k for k in keys if k.startswith(shared)
    ]
    watermark = catalog.last_change_id()
    with catalog.transaction() as tx:
        assert set(tx.rows(ds, dr, [cjk, shared + "a"])) == {cjk, shared + "a"}
        # The guarded path (one statement per row) takes the long key too.
        done = tx.write(
            ds, dr, [ItemWrite(Op.UPDATED, state(cjk, 2))], guard=watermark, expect_last=-1
        )
        assert len(done.applied) == 1
    # A reconcile of the same keys is a no-op after its first pass.
    store = MemoryStore()
    for key in keys:
        store.put(key, b"1")
    driver = make_driver("c", name="long")
    first = reconcile(catalog, store, dataset="d2", driver=driver, provider="azure")
    again = reconcile(catalog, store, dataset="d2", driver=driver, provider="azure")
    assert (first.counts.added, again.counts.unchanged) == (len(keys), len(keys))


def test_an_empty_file_is_refused_not_taken_for_a_new_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"")
    done = sync_cli(tmp_path, f"sqlite:///{path}")
    assert done.returncode == 1
    assert "the file is empty (0 bytes)" in one_line_error(done)
    assert path.stat().st_size == 0


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"these are not the bytes of a database\n" * 100)
    done = sync_cli(tmp_path, f"sqlite:///{path}")
    assert done.returncode == 1
    assert f"catalog {path}: not a SQLite database" in one_line_error(done)
    assert path.read_bytes().startswith(b"these are not")


def test_a_folder_where_the_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").mkdir()
    done = sync_cli(tmp_path, f"sqlite:///{tmp_path / 'catalog.db'}")
    assert done.returncode == 1 and "is a folder" in one_line_error(done)


def test_a_catalog_in_a_folder_this_user_cannot_write(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    (tmp_path / "syncd.yaml").write_text(CONFIG.format(catalog=f"sqlite:///{locked}/c.db"))
    (tmp_path / "photos").mkdir()
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--",
                sys.executable,
                "-m",
                "syncd",
                "sync",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "SYNCD_CONFIG": "",
                "SYNCD_CATALOG_URL": "",
                "PYTHONPATH": str(ROOT),
            },
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1
    message = one_line_error(done)
    assert str(locked) in message and ("writable" in message or "read-only" in message)


def test_a_full_disk_fails_the_run_with_its_reason_and_keeps_what_was_committed(
    tmp_path: Path,
) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    store = MemoryStore()
    for n in range(2_000):
        store.put(f"keep/{n:05d}", b"1")
    driver = make_driver("b")
    assert reconcile(catalog, store, dataset="d", driver=driver, provider="local").counts.added
    for n in range(200_000):
        store.put(f"more/{n:06d}", b"1")
    # SQLite's own limit on the database's size: the same SQLITE_FULL a full disk gives.
    pages = catalog._conn.execute("PRAGMA page_count").fetchone()[0]
    catalog._conn.execute(f"PRAGMA max_page_count = {pages + 200}")
    result = reconcile(catalog, store, dataset="d", driver=driver, provider="local")
    assert result.status is RunStatus.FAILED and result.error_kind == "transient"
    assert "the disk is full" in (result.reason or "")
    (run, *_) = catalog.runs("d")
    assert (run.status, run.reason) == (RunStatus.FAILED, result.reason)
    keys = [i.key for i in catalog.items("d")]
    assert keys[:2_000] == [f"keep/{n:05d}" for n in range(2_000)]
    # Whole batches only: what a failed transaction held is not half there.
    assert (len(keys) - 2_000) % 5_000 == 0
    catalog.close()


def test_postgresql_unreachable_or_misnamed(tmp_path: Path) -> None:
    done = sync_cli(tmp_path, "postgresql://syncd:PASSWORD@127.0.0.1:9/test")
    assert done.returncode == 1
    message = one_line_error(done)
    assert "cannot reach the database" in message and "127.0.0.1:9" in message
    assert "PASSWORD" not in done.stderr
    bad = sync_cli(tmp_path, "postgresql://syncd:PASSWORD@127.0.0.1:5432/test?sslmode=bogus")
    assert bad.returncode == 2 and "PASSWORD" not in bad.stderr
    with pytest.raises(ConfigError):
        open_catalog("postgresql://127.0.0.1:5432/test?sslmode=bogus")


def test_postgresql_dropped_mid_run_is_recorded_and_the_next_sync_converges(
    postgres_url: str,
) -> None:
    catalog = PostgresCatalog(postgres_url)
    store = MemoryStore()
    for n in range(12_000):
        store.put(f"k{n:05d}", b"1")
    driver = make_driver("b")

    class DropsTheConnection:
        name = "drops"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
            for n, info in enumerate(store.list(prefix, start_after)):
                if n == 7_000:
                    with psycopg.connect(PG_URL, autocommit=True) as admin:
                        pid = catalog._conn.info.backend_pid
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                yield info

    result = reconcile(catalog, DropsTheConnection(), dataset="d", driver=driver, provider="s3")
    assert result.status is RunStatus.FAILED
    assert "cannot reach the database" in (result.reason or "")
    (run,) = catalog.runs("d")
    assert run.status is RunStatus.FAILED  # recorded after reconnecting
    again = reconcile(catalog, store, dataset="d", driver=driver, provider="s3")
    assert again.status is RunStatus.SUCCEEDED
    assert sum(1 for _ in catalog.items("d")) == 12_000
    catalog.close()


def test_catalog_errors_are_catalog_errors(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"nope" * 1000)
    with pytest.raises(CatalogError, match="not a SQLite database"):
        open_catalog(f"sqlite:///{tmp_path / 'x.db'}")
