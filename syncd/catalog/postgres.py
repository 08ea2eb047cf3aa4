"""The catalog in PostgreSQL (psycopg 3), for scale and for many processes on many machines.

Keys use `COLLATE "C"` so that index order is UTF-8 byte order, as listings are. A btree
entry holds at most about 2.7 KB, less than a key may be (1,024 CJK characters are 3 KB of
UTF-8), so items are unique on the key's SHA-256 and ordered through an index on its first
512 characters: ordering by (prefix, key) is ordering by key, and keys sharing a prefix are
few. Bulk writes go through COPY into a temporary staging table, then one set-based upsert.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql

from syncd.catalog.sql import ITEM_COLUMNS, ROW_COLUMNS, UPSERT_SET, SqlCatalog
from syncd.errors import CatalogError, CatalogUnavailable, ConfigError
from syncd.logs import scrub

#: Characters of a key the order index holds: 2,048 bytes of UTF-8 at most.
KEY_PREFIX = 512

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
        "CREATE INDEX items_verify ON items (dataset_id, driver_id) WHERE verify",
    ],
    [
        "ALTER TABLE dead_letters ADD COLUMN message_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE dead_letters ADD COLUMN last_received_at DOUBLE PRECISION",
        "CREATE UNIQUE INDEX dead_letters_message ON dead_letters (source, message_id) "
        "WHERE message_id <> ''",
    ],
    [
        "ALTER TABLE items ADD COLUMN key_hash BYTEA",
        "UPDATE items SET key_hash = sha256(convert_to(key, 'UTF8'))",
        "ALTER TABLE items ALTER COLUMN key_hash SET NOT NULL",
        "ALTER TABLE items DROP CONSTRAINT items_pkey",
        "ALTER TABLE items ADD PRIMARY KEY (dataset_id, driver_id, key_hash)",
        f"CREATE INDEX items_key_order ON items (dataset_id, driver_id, left(key, {KEY_PREFIX}))",
    ],
    [
        "CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch BIGINT NOT NULL, "
        "expires_at DOUBLE PRECISION NOT NULL, renewed_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE schedule_slots (name TEXT NOT NULL, slot BIGINT NOT NULL, "
        "owner TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, slot))",
    ],
    # Outbox rows are inserted under the writer lock only, so their ids commit in order (a
    # cursor never passes an id that commits later).
    [
        "CREATE TABLE outbox (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "kind TEXT NOT NULL, dataset TEXT NOT NULL, payload TEXT NOT NULL, "
        "created_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE webhook_state (name TEXT PRIMARY KEY, last_id BIGINT NOT NULL, "
        "pending_through BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
        "next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0, last_error TEXT, "
        "updated_at DOUBLE PRECISION NOT NULL)",
    ],
    [
        "CREATE TABLE push_state (target TEXT PRIMARY KEY, pushed_through BIGINT NOT NULL, "
        "verified_at DOUBLE PRECISION NOT NULL DEFAULT 0, "
        "updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE push_tasks (target TEXT NOT NULL, driver TEXT NOT NULL, "
        "key_hash TEXT NOT NULL, key TEXT NOT NULL, task_id BIGINT, etag TEXT, version TEXT, "
        "change_id BIGINT NOT NULL, marked TEXT, PRIMARY KEY (target, driver, key_hash))",
        "CREATE TABLE push_runs (id BIGSERIAL PRIMARY KEY, target TEXT NOT NULL, "
        "dataset TEXT NOT NULL, status TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL, "
        "finished_at DOUBLE PRECISION, pushed_through BIGINT NOT NULL DEFAULT 0, "
        "counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', reason TEXT, "
        "host TEXT NOT NULL, pid INTEGER NOT NULL)",
    ],
    [
        "CREATE TABLE inventory_state (driver_id BIGINT PRIMARY KEY, "
        "taken_at DOUBLE PRECISION NOT NULL, manifest TEXT NOT NULL, key_filter TEXT NOT NULL, "
        "applied_at DOUBLE PRECISION NOT NULL)",
    ],
    [
        "ALTER TABLE sync_runs ADD COLUMN shard TEXT",
        "ALTER TABLE sync_runs ADD COLUMN key_from TEXT",
        "ALTER TABLE sync_runs ADD COLUMN key_to TEXT",
        "ALTER TABLE inventory_state ADD COLUMN shard TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE inventory_state DROP CONSTRAINT inventory_state_pkey",
        "ALTER TABLE inventory_state ADD PRIMARY KEY (driver_id, shard)",
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


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def display_url(url: str) -> str:
    """The URL without its user info: what an error may show."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, parts.query, ""))


class PostgresCatalog(SqlCatalog):
    """PostgreSQL. Writers serialize on the `counters` row (SELECT ... FOR UPDATE)."""

    placeholder = "%s"
    _key_order = f"left(key, {KEY_PREFIX}), key"
    _after = f"left(key, {KEY_PREFIX}) >= left(?, {KEY_PREFIX}) AND key > ?"
    _conflict = "(dataset_id, driver_id, key_hash)"
    _item_columns = f"{ITEM_COLUMNS}, key_hash"
    # The server's clock: replicas on several hosts compare lease times by one clock.
    _now_sql = "extract(epoch from clock_timestamp())::double precision"
    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _share = " FOR SHARE"

    @contextmanager
    def _lease_tx(self) -> Iterator[psycopg.Cursor[Any]]:
        # Not the counters row: a heartbeat must never wait behind a batch of writes.
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = f"catalog {display_url(url)}"
        self._conninfo, self.schema = split_schema(url)
        with self._guard():
            self._conn = self._connect()
            self._migrate()

    def current_schema(self) -> str:
        """The schema syncd's tables are in (the first of `search_path` that exists)."""
        row = self._run("SELECT current_schema()").fetchone()
        return str(row[0])

    def conninfo_for_scanner(self) -> str:
        """The connection string without syncd's `schema=` (DuckDB's scanner takes libpq's)."""
        return self._conninfo

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"{self.where}: not a PostgreSQL URL: {scrub(_first_line(exc))}"
            ) from None
        except psycopg.OperationalError as exc:
            text = scrub(_first_line(exc))
            # libpq refuses a bad option value before it tries the network.
            if text.startswith("connection is bad: invalid"):
                raise ConfigError(
                    f"{self.where}: {text.removeprefix('connection is bad: ')}"
                ) from None
            if "does not exist" in text:
                raise CatalogError(f"{self.where}: {text}; create it first") from None
            raise
        if self.schema:
            name = pgsql.Identifier(self.schema)
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if exists is None:
                # Two connections creating it at once collide even with IF NOT EXISTS.
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
            conn.execute(pgsql.SQL("SET search_path TO {}").format(name))
        return conn

    def reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        with self._guard():
            self._conn = self._connect()

    def _translate(self, exc: Exception) -> Exception | None:
        if not isinstance(exc, psycopg.Error):
            return None
        text = scrub(_first_line(exc))
        if isinstance(exc, psycopg.errors.DiskFull):
            return CatalogUnavailable(f"{self.where}: the server's disk is full: {text}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or self._conn_lost():
            return CatalogUnavailable(
                f"{self.where}: cannot reach the database ({text}); check that it is running "
                "and reachable, then run again"
            )
        return CatalogError(f"{self.where}: {text}")

    def _conn_lost(self) -> bool:
        conn = getattr(self, "_conn", None)
        return conn is None or conn.closed or conn.broken

    def _after_params(self, key: str) -> tuple[Any, ...]:
        return (key, key)

    def _item_params(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*row, key_hash(row[2]))

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
        # One array parameter on the primary key (an IN list of untyped parameters can fall
        # back to a scan).
        return (
            f"SELECT {ROW_COLUMNS} FROM items WHERE dataset_id = %s AND driver_id = %s "
            "AND key_hash = ANY(%s::bytea[])",
            (dataset_id, driver_id, [key_hash(k) for k in keys]),
        )

    def _bulk_upsert(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_items "
            "(LIKE items INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        columns = self._item_columns
        with cursor.copy(f"COPY stage_items ({columns}) FROM STDIN".encode()) as copy:
            for row in rows:
                copy.write_row((*row, key_hash(row[2])))
        cursor.execute(
            f"INSERT INTO items ({columns}) SELECT {columns} FROM stage_items "
            f"ON CONFLICT {self._conflict} DO UPDATE SET {UPSERT_SET}".encode()
        )

    def _bulk_changes(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        with cursor.copy(
            b"COPY changes (id, dataset_id, driver_id, key, op, size, etag, version, at, run_id) "
            b"FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
