"""The catalog in PostgreSQL (psycopg 3), for scale and for many processes on many machines.

Keys use `COLLATE "C"` so that index order is UTF-8 byte order, as listings are. Bulk writes
go through COPY into a temporary staging table, then one set-based upsert.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql

from syncd.catalog.sql import ITEM_COLUMNS, ROW_COLUMNS, UPSERT_SET, SqlCatalog

MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE datasets (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "created_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE drivers (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "provider TEXT NOT NULL, bucket TEXT NOT NULL, prefix TEXT NOT NULL)",
        "CREATE TABLE items (dataset_id BIGINT NOT NULL, driver_id BIGINT NOT NULL, "
        'key TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, mtime DOUBLE PRECISION NOT NULL, '
        "etag TEXT, version TEXT, content_type TEXT, media_kind TEXT, order_token TEXT, "
        "observed_at DOUBLE PRECISION NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE, "
        "change_id BIGINT NOT NULL, PRIMARY KEY (dataset_id, driver_id, key))",
        "CREATE TABLE changes (id BIGINT PRIMARY KEY, dataset_id BIGINT NOT NULL, "
        'driver_id BIGINT NOT NULL, key TEXT COLLATE "C" NOT NULL, op TEXT NOT NULL, size BIGINT, '
        "etag TEXT, version TEXT, at DOUBLE PRECISION NOT NULL, run_id BIGINT)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('change', 0)",
        "CREATE TABLE sync_runs (id BIGSERIAL PRIMARY KEY, dataset_id BIGINT NOT NULL, "
        "driver_id BIGINT NOT NULL, status TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL, "
        "heartbeat_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, "
        "watermark BIGINT NOT NULL, listed BIGINT DEFAULT 0, added BIGINT DEFAULT 0, "
        "updated BIGINT DEFAULT 0, deleted BIGINT DEFAULT 0, unchanged BIGINT DEFAULT 0, "
        "skipped BIGINT DEFAULT 0, errors TEXT NOT NULL DEFAULT '[]', reason TEXT, "
        "host TEXT NOT NULL, pid INTEGER NOT NULL)",
        "CREATE INDEX sync_runs_dataset ON sync_runs (dataset_id, id)",
        "CREATE TABLE dead_letters (id BIGSERIAL PRIMARY KEY, "
        "received_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL, "
        "payload TEXT NOT NULL)",
    ],
    [
        "ALTER TABLE items ADD COLUMN verify BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE items ADD COLUMN history TEXT",
        "CREATE INDEX items_verify ON items (dataset_id, driver_id, key) WHERE verify",
    ],
]
# Any constant works: it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x5F5C_D000


def split_schema(url: str) -> tuple[str, str | None]:
    """Remove syncd's own `schema=` query parameter from a PostgreSQL URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresCatalog(SqlCatalog):
    """PostgreSQL. Writers serialize on the `counters` row (SELECT ... FOR UPDATE)."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        conninfo, self.schema = split_schema(url)
        self._conn = psycopg.connect(conninfo, autocommit=True)
        if self.schema:
            name = pgsql.Identifier(self.schema)
            self._conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
            self._conn.execute(pgsql.SQL("SET search_path TO {}").format(name))
        self._migrate()

    def _migrate(self) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT max(version) FROM schema_version")
            row = cur.fetchone()
            current = int(row[0] or 0) if row else 0
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    cur.execute(statement.encode())
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(sql.encode(), params)

    @contextmanager
    def _write_lock(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT value FROM counters WHERE name = 'change' FOR UPDATE")
            yield cur

    def _analyze(self) -> None:
        self._conn.execute("ANALYZE items")

    def _keys_query(
        self, dataset_id: int, driver_id: int, keys: list[str]
    ) -> tuple[str, Sequence[Any]]:
        # One array parameter compared in the column's own collation, so the primary key
        # index is used (an IN list of untyped parameters can fall back to a scan).
        return (
            f"SELECT {ROW_COLUMNS} FROM items WHERE dataset_id = %s AND driver_id = %s "
            'AND key = ANY(%s::text[] COLLATE "C")',
            (dataset_id, driver_id, keys),
        )

    def _bulk_upsert(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_items "
            "(LIKE items INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY stage_items ({ITEM_COLUMNS}) FROM STDIN".encode()) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO items ({ITEM_COLUMNS}) SELECT {ITEM_COLUMNS} FROM stage_items "
            f"ON CONFLICT (dataset_id, driver_id, key) DO UPDATE SET {UPSERT_SET}".encode()
        )

    def _bulk_changes(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        with cursor.copy(
            b"COPY changes (id, dataset_id, driver_id, key, op, size, etag, version, at, run_id) "
            b"FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
