"""The catalog in one SQLite file (WAL), shared safely by several processes on one machine."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.catalog.sql import SqlCatalog

# Keys compare with SQLite's default BINARY collation: UTF-8 byte order, as listings do.
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE datasets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "created_at REAL NOT NULL)",
        "CREATE TABLE drivers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "provider TEXT NOT NULL, bucket TEXT NOT NULL, prefix TEXT NOT NULL)",
        "CREATE TABLE items (dataset_id INTEGER NOT NULL REFERENCES datasets(id), "
        "driver_id INTEGER NOT NULL REFERENCES drivers(id), key TEXT NOT NULL, "
        "size INTEGER NOT NULL, mtime REAL NOT NULL, etag TEXT, version TEXT, "
        "content_type TEXT, media_kind TEXT, order_token TEXT, observed_at REAL NOT NULL, "
        "deleted INTEGER NOT NULL DEFAULT 0, change_id INTEGER NOT NULL, "
        "PRIMARY KEY (dataset_id, driver_id, key)) WITHOUT ROWID",
        "CREATE TABLE changes (id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL, "
        "driver_id INTEGER NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL, size INTEGER, "
        "etag TEXT, version TEXT, at REAL NOT NULL, run_id INTEGER)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('change', 0)",
        "CREATE TABLE sync_runs (id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL, "
        "driver_id INTEGER NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL, "
        "heartbeat_at REAL NOT NULL, finished_at REAL, watermark INTEGER NOT NULL, "
        "listed INTEGER DEFAULT 0, added INTEGER DEFAULT 0, updated INTEGER DEFAULT 0, "
        "deleted INTEGER DEFAULT 0, unchanged INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0, "
        "errors TEXT NOT NULL DEFAULT '[]', reason TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL)",
        "CREATE INDEX sync_runs_dataset ON sync_runs (dataset_id, id)",
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_at REAL NOT NULL, "
        "source TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL)",
    ],
    [
        "ALTER TABLE items ADD COLUMN verify INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE items ADD COLUMN history TEXT",
        "CREATE INDEX items_verify ON items (dataset_id, driver_id, key) WHERE verify = 1",
    ],
]


class SqliteCatalog(SqlCatalog):
    """SQLite in WAL mode. Writers take the database's write lock with BEGIN IMMEDIATE."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = OFF")
        self._conn.execute("PRAGMA cache_size = -65536")
        self._migrate()

    def _migrate(self) -> None:
        with self._write_lock() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def close(self) -> None:
        self._conn.close()

    def _analyze(self) -> None:
        self._conn.execute("PRAGMA optimize")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    @contextmanager
    def _write_lock(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.commit()

    def _bulk_upsert(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(self._upsert_sql(guarded=False), rows)

    def _bulk_changes(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(
            "INSERT INTO changes (id, dataset_id, driver_id, key, op, size, etag, version, at, "
            "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
