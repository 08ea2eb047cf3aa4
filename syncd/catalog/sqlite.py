"""The catalog in one SQLite file (WAL), shared safely by several processes on one machine."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.catalog.sql import SqlCatalog
from syncd.errors import CatalogError, CatalogUnavailable

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
    # Items become a STRICT table, so a value of the wrong type is refused when written
    # instead of breaking every later read. Rows written wrongly before are kept, coerced,
    # and marked to verify: the next sync rewrites them from what it lists.
    [
        "CREATE TABLE items_strict (dataset_id INTEGER NOT NULL, driver_id INTEGER NOT NULL, "
        "key TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, etag TEXT, "
        "version TEXT, content_type TEXT, media_kind TEXT, order_token TEXT, "
        "observed_at REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, "
        "change_id INTEGER NOT NULL, verify INTEGER NOT NULL DEFAULT 0, history TEXT, "
        "PRIMARY KEY (dataset_id, driver_id, key)) STRICT, WITHOUT ROWID",
        "INSERT INTO items_strict SELECT dataset_id, driver_id, CAST(key AS TEXT), "
        "CAST(size AS INTEGER), CAST(mtime AS REAL), CAST(etag AS TEXT), "
        "CAST(version AS TEXT), CAST(content_type AS TEXT), CAST(media_kind AS TEXT), "
        "CAST(order_token AS TEXT), CAST(observed_at AS REAL), CAST(deleted AS INTEGER), "
        "change_id, typeof(size) <> 'integer' OR typeof(mtime) NOT IN ('real', 'integer') "
        "OR typeof(observed_at) NOT IN ('real', 'integer') "
        "OR typeof(deleted) <> 'integer', NULL FROM items",
        "DROP TABLE items",
        "ALTER TABLE items_strict RENAME TO items",
        "CREATE INDEX items_verify ON items (dataset_id, driver_id) WHERE verify = 1",
    ],
    [
        "ALTER TABLE dead_letters ADD COLUMN message_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE dead_letters ADD COLUMN last_received_at REAL",
        "CREATE UNIQUE INDEX dead_letters_message ON dead_letters (source, message_id) "
        "WHERE message_id <> ''",
    ],
    [
        "CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch INTEGER NOT NULL, "
        "expires_at REAL NOT NULL, renewed_at REAL NOT NULL)",
        "CREATE TABLE schedule_slots (name TEXT NOT NULL, slot INTEGER NOT NULL, "
        "owner TEXT NOT NULL, claimed_at REAL NOT NULL, PRIMARY KEY (name, slot))",
    ],
    # The webhook outbox, written in the transaction that made each event true, and how far
    # each webhook's delivery got. AUTOINCREMENT: an id is never reused after a prune, or a
    # cursor would skip the new row.
    [
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
        "dataset TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL) STRICT",
        "CREATE TABLE webhook_state (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL, "
        "pending_through INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
        "next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, updated_at REAL NOT NULL) "
        "STRICT",
    ],
    # Labeling targets: how far each got in the change feed, which task each item became,
    # and the history of pushes. Link keys are a SHA-256 of the key (hex), as in PostgreSQL.
    [
        "CREATE TABLE push_state (target TEXT PRIMARY KEY, pushed_through INTEGER NOT NULL, "
        "verified_at REAL NOT NULL DEFAULT 0, updated_at REAL NOT NULL) STRICT",
        "CREATE TABLE push_tasks (target TEXT NOT NULL, driver TEXT NOT NULL, "
        "key_hash TEXT NOT NULL, key TEXT NOT NULL, task_id INTEGER, etag TEXT, version TEXT, "
        "change_id INTEGER NOT NULL, marked TEXT, PRIMARY KEY (target, driver, key_hash)) "
        "STRICT, WITHOUT ROWID",
        "CREATE TABLE push_runs (id INTEGER PRIMARY KEY, target TEXT NOT NULL, "
        "dataset TEXT NOT NULL, status TEXT NOT NULL, started_at REAL NOT NULL, "
        "finished_at REAL, pushed_through INTEGER NOT NULL DEFAULT 0, "
        "counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', reason TEXT, "
        "host TEXT NOT NULL, pid INTEGER NOT NULL) STRICT",
    ],
    # The newest inventory report applied per driver: an older one must not undo it.
    [
        "CREATE TABLE inventory_state (driver_id INTEGER PRIMARY KEY, taken_at REAL NOT NULL, "
        "manifest TEXT NOT NULL, key_filter TEXT NOT NULL, applied_at REAL NOT NULL) STRICT",
    ],
    # Key-range shards: a run names its range; inventory state is kept per range.
    [
        "ALTER TABLE sync_runs ADD COLUMN shard TEXT",
        "ALTER TABLE sync_runs ADD COLUMN key_from TEXT",
        "ALTER TABLE sync_runs ADD COLUMN key_to TEXT",
        "CREATE TABLE inventory_shards (driver_id INTEGER NOT NULL, shard TEXT NOT NULL, "
        "taken_at REAL NOT NULL, manifest TEXT NOT NULL, key_filter TEXT NOT NULL, "
        "applied_at REAL NOT NULL, PRIMARY KEY (driver_id, shard)) STRICT",
        "INSERT INTO inventory_shards SELECT driver_id, '', taken_at, manifest, key_filter, "
        "applied_at FROM inventory_state",
        "DROP TABLE inventory_state",
        "ALTER TABLE inventory_shards RENAME TO inventory_state",
    ],
]


class SqliteCatalog(SqlCatalog):
    """SQLite in WAL mode. Writers take the database's write lock with BEGIN IMMEDIATE."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        if self.path != ":memory:":
            self._check_path(Path(self.path))
        with self._guard():
            self._conn = self._connect()
            self._migrate()

    def _check_path(self, path: Path) -> None:
        if path.is_dir():
            raise CatalogError(f"catalog {path}: is a folder; name a file (sqlite:///PATH.db)")
        if path.is_file() and _stays_empty(path):
            # SQLite would take an empty file for a new database and restart change ids at
            # 1 under every consumer that reads the feed "since N".
            raise CatalogError(
                f"catalog {path}: the file is empty (0 bytes), not a syncd catalog; restore it "
                "from a backup, or delete it to start a new catalog (change ids restart at 1)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(
                f"catalog {path}: cannot create its folder {path.parent}: {exc.strerror}"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA cache_size = -65536")
        return conn

    def reconnect(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        with self._guard():
            self._conn = self._connect()

    def _translate(self, exc: Exception) -> Exception | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc)
        where = f"catalog {self.path}"
        if "database is locked" in text or "database table is locked" in text:
            return CatalogUnavailable(
                f"{where}: locked by another process for over {self._busy_timeout:.0f}s; "
                "try again when it has finished"
            )
        if "database or disk is full" in text:
            return CatalogUnavailable(f"{where}: the disk is full; free space and run again")
        if "disk I/O error" in text:
            return CatalogUnavailable(f"{where}: disk I/O error; check the disk and run again")
        if "file is not a database" in text:
            return CatalogError(
                f"{where}: not a SQLite database (another kind of file, or damaged); restore "
                "it from a backup or point `catalog:` elsewhere"
            )
        if "malformed" in text or "corrupt" in text:
            return CatalogError(f"{where}: the database is damaged ({text}); restore a backup")
        if "readonly" in text or "read-only" in text:
            return CatalogError(
                f"{where}: cannot write: the file or its folder is read-only for this user"
            )
        if "unable to open" in text:
            return CatalogError(
                f"{where}: cannot open: check that its folder exists and is writable"
            )
        if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
            return CatalogUnavailable(f"{where}: {text}")
        return CatalogError(f"{where}: {text}")

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
            # Inside the try: an interrupt between the body and the commit must not leave
            # the transaction open for whatever this connection does next.
            self._conn.commit()
        except BaseException:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise

    def _bulk_upsert(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(self._upsert_sql(guarded=False), rows)

    def _bulk_changes(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(
            "INSERT INTO changes (id, dataset_id, driver_id, key, op, size, etag, version, at, "
            "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _stays_empty(path: Path, wait: float = 1.0) -> bool:
    """True when `path` is empty and is not a catalog another thread or process is creating
    this moment (a new WAL database keeps its main file empty until the first checkpoint)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if path.stat().st_size > 0 or Path(f"{path}-wal").exists():
                return False
        except FileNotFoundError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
