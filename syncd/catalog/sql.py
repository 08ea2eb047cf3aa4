"""The catalog logic shared by SQLite and PostgreSQL; dialects supply connections and bulk I/O.

Writers serialize on one lock (SQLite's write lock, or the `counters` row in PostgreSQL), and
change ids come from the `counters` row inside the same transaction: no gaps on rollback, and
ids commit in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from syncd.catalog.types import (
    CatalogRow,
    Change,
    DatasetSummary,
    DeadLetter,
    Fence,
    InventoryApplied,
    Item,
    ItemWrite,
    Lease,
    Op,
    OutboxKind,
    OutboxRow,
    PushCounts,
    PushRun,
    PushState,
    RawRow,
    RunConflict,
    RunCounts,
    RunStatus,
    SyncRun,
    TaskLink,
    WebhookState,
    WriteResult,
)
from syncd.errors import LeaseLost
from syncd.shards import Shard

ROW_COLUMNS = (
    "key, size, mtime, etag, version, deleted, change_id, order_token, observed_at, "
    "content_type, media_kind, verify, history"
)
ITEM_COLUMNS = (
    "dataset_id, driver_id, key, size, mtime, etag, version, content_type, media_kind, "
    "order_token, observed_at, deleted, verify, history, change_id"
)
CHANGE_COLUMNS = "id, dataset_id, driver_id, key, op, size, etag, version, at, run_id"
RUN_COLUMNS = (
    "r.id, ds.name, dr.name, r.status, r.started_at, r.heartbeat_at, r.finished_at, r.listed, "
    "r.added, r.updated, r.deleted, r.unchanged, r.skipped, r.errors, r.reason, r.host, r.pid, "
    "r.shard, r.key_from, r.key_to"
)
UPSERT_SET = (
    "size = excluded.size, mtime = excluded.mtime, etag = excluded.etag, "
    "version = excluded.version, content_type = excluded.content_type, "
    "media_kind = excluded.media_kind, order_token = excluded.order_token, "
    "observed_at = excluded.observed_at, deleted = excluded.deleted, "
    "verify = excluded.verify, history = excluded.history, change_id = excluded.change_id"
)
SCAN_CHUNK = 10_000
#: A run that wrote this many items refreshes planner statistics: a first ingest leaves a
#: table the planner still believes empty, and batch lookups would scan it.
ANALYZE_AFTER = 10_000

ItemTuple = tuple[Any, ...]
#: Plain strings for the drivers: reading an enum's `.value` costs a property call per row.
OP_TEXT = {op: op.value for op in Op}
ChangeTuple = tuple[Any, ...]


class SqlCatalog(ABC):
    """A catalog in a SQL database reached through a DB-API connection."""

    url: str
    placeholder = "?"
    #: How rows are ordered by key, and the condition a keyset page starts after a key with
    #: (its `?` take `_after_params(key)`). PostgreSQL cannot index whole long keys.
    _key_order = "key"
    _after = "key > ?"
    #: The unique key items are upserted on, and their columns in write order.
    _conflict = "(dataset_id, driver_id, key)"
    _item_columns = ITEM_COLUMNS

    def _after_params(self, key: str) -> tuple[Any, ...]:
        return (key,)

    def _item_params(self, row: ItemTuple) -> ItemTuple:
        """One item row (`ITEM_COLUMNS` order) as the dialect writes it."""
        return row

    # -- dialect hooks -------------------------------------------------------------------

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement outside an explicit write transaction; return the cursor."""

    @abstractmethod
    def _write_lock(self) -> AbstractContextManager[Any]:
        """Begin a transaction holding the single writer lock; yield a cursor."""

    @abstractmethod
    def _translate(self, exc: Exception) -> Exception | None:
        """The syncd error a database driver's exception means, or None if not the driver's."""

    @abstractmethod
    def reconnect(self) -> None:
        """Drop the connection and open a new one (after `CatalogUnavailable`)."""

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def _run(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        with self._guard():
            return _Result(self._execute(sql, params).fetchall())

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        """The writer lock, with driver errors told as syncd's."""
        with self._guard(), self._write_lock() as cursor:
            yield cursor

    #: The database's clock, in epoch seconds: every replica compares lease times by it.
    _now_sql = "?"
    #: How a lease row is locked for a claim so that two claimers never wait on each other,
    #: and how a writer holds it so that no claim passes until its transaction ends.
    _skip_locked = ""
    _share = ""

    def _lease_tx(self) -> AbstractContextManager[Any]:
        """A transaction for lease and slot rows (no need for the items' writer lock)."""
        return self._write_lock()

    def _now_params(self) -> tuple[Any, ...]:
        return (time.time(),) if self._now_sql == "?" else ()

    @abstractmethod
    def _bulk_upsert(self, cursor: Any, rows: list[ItemTuple]) -> None: ...

    @abstractmethod
    def _bulk_changes(self, cursor: Any, rows: list[ChangeTuple]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def _keys_query(
        self, dataset_id: int, driver_id: int, keys: list[str]
    ) -> tuple[str, Sequence[Any]]:
        """The rows of `keys` in one statement (dialects may bind the keys differently)."""
        marks = ", ".join(["?"] * len(keys))
        sql = (
            f"SELECT {ROW_COLUMNS} FROM items WHERE dataset_id = ? AND driver_id = ? "
            f"AND key IN ({marks})"
        )
        return self._sql(sql), (dataset_id, driver_id, *keys)

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _upsert_sql(self, guarded: bool) -> str:
        marks = ", ".join(["?"] * len(self._item_columns.split(",")))
        sql = (
            f"INSERT INTO items ({self._item_columns}) VALUES ({marks}) "
            f"ON CONFLICT {self._conflict} DO UPDATE SET {UPSERT_SET}"
        )
        if guarded:
            sql += " WHERE items.change_id <= ?"
        return self._sql(sql)

    # -- names ---------------------------------------------------------------------------

    def find_id(self, kind: Literal["dataset", "driver"], name: str) -> int | None:
        table = "datasets" if kind == "dataset" else "drivers"
        row = self._run(self._sql(f"SELECT id FROM {table} WHERE name = ?"), (name,)).fetchone()
        return int(row[0]) if row else None

    def dataset_id(self, name: str) -> int:
        row = self._run(self._sql("SELECT id FROM datasets WHERE name = ?"), (name,)).fetchone()
        if row:
            return int(row[0])
        with self._locked() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO datasets (name, created_at) VALUES (?, ?) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                (name, time.time()),
            )
            cur.execute(self._sql("SELECT id FROM datasets WHERE name = ?"), (name,))
            return int(cur.fetchone()[0])

    def driver_id(self, name: str, provider: str, bucket: str, prefix: str) -> int:
        row = self._run(
            self._sql("SELECT id, provider, bucket, prefix FROM drivers WHERE name = ?"), (name,)
        ).fetchone()
        if row and tuple(row[1:]) == (provider, bucket, prefix):
            return int(row[0])
        with self._locked() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO drivers (name, provider, bucket, prefix) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET provider = excluded.provider, "
                    "bucket = excluded.bucket, prefix = excluded.prefix"
                ),
                (name, provider, bucket, prefix),
            )
            cur.execute(self._sql("SELECT id FROM drivers WHERE name = ?"), (name,))
            return int(cur.fetchone()[0])

    def last_change_id(self) -> int:
        row = self._run("SELECT value FROM counters WHERE name = 'change'").fetchone()
        return int(row[0])

    # -- the reconciler's read side ------------------------------------------------------

    def scan(
        self, dataset_id: int, driver_id: int, start_after: str | None = None
    ) -> Iterator[RawRow]:
        # Keyset pages, each its own short read: no long transaction pins the WAL or blocks
        # writers, and the reconciler only writes keys at or behind the page it has read.
        first = self._sql(
            f"SELECT {ROW_COLUMNS} FROM items WHERE dataset_id = ? AND driver_id = ? "
            f"ORDER BY {self._key_order} LIMIT ?"
        )
        after = self._sql(
            f"SELECT {ROW_COLUMNS} FROM items WHERE dataset_id = ? AND driver_id = ? "
            f"AND {self._after} ORDER BY {self._key_order} LIMIT ?"
        )
        last = start_after
        while True:
            if last is None:
                rows = self._run(first, (dataset_id, driver_id, SCAN_CHUNK)).fetchall()
            else:
                params = (dataset_id, driver_id, *self._after_params(last), SCAN_CHUNK)
                rows = self._run(after, params).fetchall()
            if not rows:
                return
            yield from rows
            if len(rows) < SCAN_CHUNK:
                return
            last = rows[-1][0]

    # -- writes --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[_SqlWriteTx]:
        with self._locked() as cur:
            cur.execute("SELECT value FROM counters WHERE name = 'change'")
            tx = _SqlWriteTx(self, cur, int(cur.fetchone()[0]))
            yield tx
            if tx.counter != tx.start_counter:
                cur.execute(
                    self._sql("UPDATE counters SET value = ? WHERE name = 'change'"), (tx.counter,)
                )

    # -- sync runs -----------------------------------------------------------------------

    def begin_run(
        self,
        dataset_id: int,
        driver_id: int,
        *,
        watermark: int,
        stale_after: float = 300.0,
        takeover: bool = False,
        shard: Shard | None = None,
    ) -> int:
        now = time.time()
        host = socket.gethostname()
        start, end = (shard.start, shard.end) if shard is not None else ("", None)
        with self._locked() as cur:
            cur.execute(
                self._sql(
                    "SELECT id, host, pid, heartbeat_at, key_from, key_to FROM sync_runs "
                    "WHERE dataset_id = ? AND driver_id = ? AND status = 'running'"
                ),
                (dataset_id, driver_id),
            )
            for run_id, run_host, pid, heartbeat, key_from, key_to in cur.fetchall():
                theirs = Shard(0, 1, key_from or "", key_to)
                if not theirs.overlaps(start, end):
                    continue
                same = (key_from or "", key_to) == (start, end)
                dead = run_host == host and not _pid_alive(int(pid))
                if (takeover and same) or dead or now - heartbeat > stale_after:
                    if takeover:
                        why = "its replica lost the lease"
                    else:
                        why = "process gone" if dead else f"no heartbeat for {now - heartbeat:.0f}s"
                    cur.execute(
                        self._sql(
                            "UPDATE sync_runs SET status = 'interrupted', finished_at = ?, "
                            "reason = ? WHERE id = ?"
                        ),
                        (now, f"interrupted: {why}", run_id),
                    )
                    self._announce_run(cur, run_id)
                else:
                    raise RunConflict(f"sync run {run_id} (pid {pid} on {run_host}) is running")
            cur.execute(
                self._sql(
                    "INSERT INTO sync_runs (dataset_id, driver_id, status, started_at, "
                    "heartbeat_at, watermark, host, pid, errors, shard, key_from, key_to) "
                    "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, '[]', ?, ?, ?) RETURNING id"
                ),
                (
                    dataset_id,
                    driver_id,
                    now,
                    now,
                    watermark,
                    host,
                    os.getpid(),
                    shard.label if shard is not None else None,
                    start if shard is not None else None,
                    end,
                ),
            )
            return int(cur.fetchone()[0])

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        counts: RunCounts | None,
        errors: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        now = time.time()
        with self._locked() as cur:
            cur.execute(self._sql("SELECT status FROM sync_runs WHERE id = ?"), (run_id,))
            before = cur.fetchone()
            # The webhooks' outbox rows commit with the run's end, or neither does; a run's
            # end recorded again with the same status is not announced again.
            announce = before is not None and before[0] != str(status)
            if counts is None:
                # The counts the run's last committed batch stored are the true ones.
                cur.execute(
                    self._sql(
                        "UPDATE sync_runs SET status = ?, finished_at = ?, heartbeat_at = ?, "
                        "errors = ?, reason = ? WHERE id = ?"
                    ),
                    (str(status), now, now, json.dumps(list(errors)[:100]), reason, run_id),
                )
                if announce:
                    self._announce_run(cur, run_id)
                return
            cur.execute(
                self._sql(
                    "UPDATE sync_runs SET status = ?, finished_at = ?, heartbeat_at = ?, "
                    "listed = ?, added = ?, updated = ?, deleted = ?, unchanged = ?, "
                    "skipped = ?, errors = ?, reason = ? WHERE id = ?"
                ),
                (
                    str(status),
                    now,
                    now,
                    counts.listed,
                    counts.added,
                    counts.updated,
                    counts.deleted,
                    counts.unchanged,
                    counts.skipped,
                    json.dumps(list(errors)[:100]),
                    reason,
                    run_id,
                ),
            )
            if announce:
                self._announce_run(cur, run_id)
        if counts.added + counts.updated >= ANALYZE_AFTER:
            self._analyze()

    @abstractmethod
    def _analyze(self) -> None:
        """Refresh the planner's statistics after a large change."""

    def _announce_run(self, cur: Any, run_id: int) -> None:
        """Queue a run's end for webhooks in the transaction that records it: `sync.completed`
        or `sync.aborted`, after `items.changed` when the run changed anything. (A dry run
        records no run, so it announces nothing.)"""
        cur.execute(
            self._sql(
                "SELECT ds.name, dr.name, r.status, r.started_at, r.finished_at, r.listed, "
                "r.added, r.updated, r.deleted, r.unchanged, r.skipped, r.reason, r.watermark "
                "FROM sync_runs r JOIN datasets ds ON ds.id = r.dataset_id "
                "JOIN drivers dr ON dr.id = r.driver_id WHERE r.id = ?"
            ),
            (run_id,),
        )
        row = cur.fetchone()
        if row is None or row[2] == RunStatus.RUNNING:
            return
        dataset, driver, status = row[0], row[1], RunStatus(row[2])
        counts = RunCounts(*(int(v or 0) for v in row[5:11]))
        at = float(row[4] if row[4] is not None else time.time())
        changed = counts.added + counts.updated + counts.deleted
        if changed:
            first, last = self._run_changes(cur, run_id, int(row[12]))
            data: dict[str, Any] = {
                "dataset": dataset,
                "drivers": [driver],
                "run_ids": [run_id],
                "count": changed,
                "added": counts.added,
                "updated": counts.updated,
                "deleted": counts.deleted,
                "first_change_id": first,
                "last_change_id": last,
            }
            _insert_outbox(self, cur, "items.changed", dataset, data, at)
        completed = status in (RunStatus.SUCCEEDED, RunStatus.COMPLETED_WITH_ERRORS)
        data = {
            "run_id": run_id,
            "dataset": dataset,
            "driver": driver,
            "status": str(status),
            "counts": counts.as_dict(),
            "reason": row[11],
            "started_at": _iso(float(row[3])),
            "finished_at": _iso(at),
        }
        _insert_outbox(
            self, cur, "sync.completed" if completed else "sync.aborted", dataset, data, at
        )

    def _run_changes(self, cur: Any, run_id: int, watermark: int) -> tuple[int | None, int | None]:
        """The first and last change id a run wrote. Its changes all come after its watermark;
        each end is a primary-key scan that stops at the first change of the run."""
        ends: list[int | None] = []
        for order in ("ASC", "DESC"):
            cur.execute(
                self._sql(
                    f"SELECT id FROM changes WHERE id > ? AND run_id = ? ORDER BY id {order} LIMIT 1"
                ),
                (watermark, run_id),
            )
            found = cur.fetchone()
            ends.append(int(found[0]) if found else None)
        return ends[0], ends[1]

    # -- reads for people and downstream consumers --------------------------------------

    def datasets(self) -> list[DatasetSummary]:
        rows = self._run(
            "SELECT ds.id, ds.name, "
            "(SELECT count(*) FROM items i WHERE i.dataset_id = ds.id AND i.deleted = ?), "
            "(SELECT coalesce(sum(size), 0) FROM items i WHERE i.dataset_id = ds.id "
            "AND i.deleted = ?), "
            "(SELECT count(*) FROM items i WHERE i.dataset_id = ds.id AND i.deleted = ?) "
            "FROM datasets ds ORDER BY ds.name".replace("?", self.placeholder),
            (False, False, True),
        ).fetchall()
        out = []
        for dataset_id, name, count, size, deleted in rows:
            drivers = self._run(
                self._sql(
                    "SELECT DISTINCT dr.name FROM sync_runs r JOIN drivers dr ON dr.id = r.driver_id "
                    "WHERE r.dataset_id = ? ORDER BY dr.name"
                ),
                (dataset_id,),
            ).fetchall()
            last = self._runs_where("r.dataset_id = ?", (dataset_id,), 1)
            out.append(
                DatasetSummary(
                    name=name,
                    drivers=tuple(d[0] for d in drivers),
                    items=int(count),
                    bytes=int(size),
                    deleted=int(deleted),
                    last_run=last[0] if last else None,
                )
            )
        return out

    def items(
        self,
        dataset: str,
        *,
        prefix: str = "",
        after: tuple[str, str] | None = None,
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> Iterator[Item]:
        # Keyset pages per driver on the (dataset, driver, key) primary key: every page is an
        # index seek, so reading a million items costs the same per item as reading a page.
        dataset_id = self.find_id("dataset", dataset)
        if dataset_id is None:
            return
        drivers = self._run("SELECT id, name FROM drivers ORDER BY name").fetchall()
        where = f"dataset_id = ? AND driver_id = ? AND {self._after}"
        extra: list[Any] = []
        if prefix:
            # A key range keeps the index usable; LIKE would need escaping.
            where += " AND key >= ? AND key < ?"
            extra += [prefix, prefix + "\U0010ffff"]
        if not include_deleted:
            where += " AND deleted = ?"
            extra.append(False)
        sql = self._sql(
            "SELECT key, size, mtime, etag, version, content_type, media_kind, order_token, "
            f"observed_at, deleted, change_id, verify FROM items WHERE {where} "
            f"ORDER BY {self._key_order} LIMIT ?"
        )
        remaining = limit
        make = Item._make
        for driver_id, driver in drivers:
            if after is not None and driver < after[0]:
                continue
            last = after[1] if after is not None and driver == after[0] else ""
            while remaining is None or remaining > 0:
                page = SCAN_CHUNK if remaining is None else min(SCAN_CHUNK, remaining)
                params = (dataset_id, driver_id, *self._after_params(last), *extra, page)
                rows = self._run(sql, params).fetchall()
                for row in rows:
                    yield make((dataset, driver, *row[:9], bool(row[9]), row[10], bool(row[11])))
                if remaining is not None:
                    remaining -= len(rows)
                if len(rows) < page:
                    break
                last = rows[-1][0]
            if remaining is not None and remaining <= 0:
                return

    def count_items(self, dataset: str, *, prefix: str = "", include_deleted: bool = False) -> int:
        where = "i.dataset_id = ds.id AND ds.name = ?"
        params: list[Any] = [dataset]
        if prefix:
            where += " AND i.key >= ? AND i.key < ?"
            params += [prefix, prefix + "\U0010ffff"]
        if not include_deleted:
            where += " AND i.deleted = ?"
            params.append(False)
        row = self._run(
            self._sql(f"SELECT count(*) FROM items i, datasets ds WHERE {where}"), params
        ).fetchone()
        return int(row[0])

    def count_changes(self, dataset: str, since: int = 0) -> int:
        row = self._run(
            self._sql(
                "SELECT count(*) FROM changes c JOIN datasets ds ON ds.id = c.dataset_id "
                "WHERE ds.name = ? AND c.id > ?"
            ),
            (dataset, since),
        ).fetchone()
        return int(row[0])

    def changes(self, dataset: str, since: int = 0, limit: int | None = None) -> Iterator[Change]:
        sql = self._sql(
            "SELECT c.id, ds.name, dr.name, c.key, c.op, c.size, c.etag, c.version, c.at, "
            "c.run_id FROM changes c JOIN datasets ds ON ds.id = c.dataset_id "
            "JOIN drivers dr ON dr.id = c.driver_id "
            "WHERE ds.name = ? AND c.id > ? ORDER BY c.id LIMIT ?"
        )
        remaining = limit
        last = since
        while remaining is None or remaining > 0:
            page = SCAN_CHUNK if remaining is None else min(SCAN_CHUNK, remaining)
            rows = self._run(sql, (dataset, last, page)).fetchall()
            for row in rows:
                yield Change(int(row[0]), row[1], row[2], row[3], Op(row[4]), *row[5:])
            if len(rows) < page:
                return
            last = int(rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def runs(self, dataset: str | None = None, limit: int = 20) -> list[SyncRun]:
        if dataset is None:
            return self._runs_where("1 = 1", (), limit)
        return self._runs_where("ds.name = ?", (dataset,), limit)

    def run_by_id(self, run_id: int) -> SyncRun | None:
        found = self._runs_where("r.id = ?", (run_id,), 1)
        return found[0] if found else None

    def _runs_where(self, where: str, params: Sequence[Any], limit: int) -> list[SyncRun]:
        rows = self._run(
            self._sql(
                f"SELECT {RUN_COLUMNS} FROM sync_runs r "
                "JOIN datasets ds ON ds.id = r.dataset_id JOIN drivers dr ON dr.id = r.driver_id "
                f"WHERE {where} ORDER BY r.id DESC LIMIT ?"
            ),
            (*params, limit),
        ).fetchall()
        return [
            SyncRun(
                id=int(r[0]),
                dataset=r[1],
                driver=r[2],
                status=RunStatus(r[3]),
                started_at=r[4],
                heartbeat_at=r[5],
                finished_at=r[6],
                counts=RunCounts(*(int(v or 0) for v in r[7:13])),
                errors=tuple(json.loads(r[13] or "[]")),
                reason=r[14],
                host=r[15],
                pid=int(r[16]),
                shard=_shard_of(r[17], r[18], r[19]),
            )
            for r in rows
        ]

    # -- leases and schedule slots -------------------------------------------------------

    def claim_lease(self, name: str, owner: str, ttl: float) -> int | None:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO leases (name, owner, epoch, expires_at, renewed_at) "
                    "VALUES (?, '', 0, 0, 0) ON CONFLICT (name) DO NOTHING"
                ),
                (name,),
            )
            cur.execute(
                self._sql(
                    f"SELECT owner, epoch, expires_at, {self._now_sql} FROM leases "
                    f"WHERE name = ? {self._skip_locked}"
                ),
                (*self._now_params(), name),
            )
            row = cur.fetchone()
            if row is None:
                return None  # another replica holds the row for its own claim or write
            holder, epoch, expires_at, now = row
            if holder and holder != owner and expires_at > now:
                return None
            cur.execute(
                self._sql(
                    "UPDATE leases SET owner = ?, epoch = ?, expires_at = ?, renewed_at = ? "
                    "WHERE name = ?"
                ),
                (owner, int(epoch) + 1, now + ttl, now, name),
            )
            return int(epoch) + 1

    def renew_lease(self, name: str, owner: str, epoch: int, ttl: float) -> bool:
        with self._guard(), self._lease_tx() as cur:
            now = self._now_sql
            cur.execute(
                self._sql(
                    f"UPDATE leases SET expires_at = {now} + ?, renewed_at = {now} "
                    "WHERE name = ? AND owner = ? AND epoch = ?"
                ),
                (*self._now_params(), ttl, *self._now_params(), name, owner, epoch),
            )
            return bool(cur.rowcount == 1)

    def release_lease(self, name: str, owner: str, epoch: int) -> None:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ? AND epoch = ?"
                ),
                (name, owner, epoch),
            )

    def leases(self) -> list[Lease]:
        rows = self._run(
            "SELECT name, owner, epoch, expires_at, renewed_at FROM leases ORDER BY name"
        ).fetchall()
        return [Lease(r[0], r[1], int(r[2]), float(r[3]), float(r[4])) for r in rows]

    def claim_slot(self, name: str, slot: int, owner: str) -> bool:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO schedule_slots (name, slot, owner, claimed_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name, slot) DO NOTHING"
                ),
                (name, slot, owner, time.time()),
            )
            return bool(cur.rowcount == 1)

    # -- the webhook outbox --------------------------------------------------------------

    def outbox_after(self, after_id: int, limit: int = 100) -> list[OutboxRow]:
        rows = self._run(
            self._sql(
                "SELECT id, kind, dataset, payload, created_at FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?"
            ),
            (after_id, limit),
        ).fetchall()
        return [OutboxRow(int(r[0]), r[1], r[2], r[3], float(r[4])) for r in rows]

    def outbox_last_id(self, before: float | None = None) -> int:
        if before is None:
            row = self._run("SELECT max(id) FROM outbox").fetchone()
        else:
            row = self._run(
                self._sql("SELECT max(id) FROM outbox WHERE created_at < ?"), (before,)
            ).fetchone()
        return int(row[0] or 0)

    def prune_outbox(self, older_than: float, through_id: int) -> int:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql("DELETE FROM outbox WHERE id <= ? AND created_at < ?"),
                (through_id, older_than),
            )
            return int(cur.rowcount)

    def webhook_state(self, name: str) -> WebhookState | None:
        row = self._run(
            self._sql(
                "SELECT name, last_id, pending_through, attempts, next_attempt_at, last_error "
                "FROM webhook_state WHERE name = ?"
            ),
            (name,),
        ).fetchone()
        if row is None:
            return None
        return WebhookState(row[0], int(row[1]), int(row[2]), int(row[3]), float(row[4]), row[5])

    def save_webhook_state(self, state: WebhookState, fence: Fence | None = None) -> bool:
        with self._guard(), self._lease_tx() as cur:
            if fence is not None:
                cur.execute(
                    self._sql(f"SELECT epoch FROM leases WHERE name = ?{self._share}"),
                    (fence.name,),
                )
                held = cur.fetchone()
                if held is None or int(held[0]) != fence.epoch:
                    return False
            cur.execute(
                self._sql(
                    "INSERT INTO webhook_state (name, last_id, pending_through, attempts, "
                    "next_attempt_at, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id, "
                    "pending_through = excluded.pending_through, attempts = excluded.attempts, "
                    "next_attempt_at = excluded.next_attempt_at, "
                    "last_error = excluded.last_error, updated_at = excluded.updated_at"
                ),
                (
                    state.name,
                    state.last_id,
                    state.pending_through,
                    state.attempts,
                    state.next_attempt_at,
                    None if state.last_error is None else _storable(state.last_error),
                    time.time(),
                ),
            )
            return True

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._run(
            self._sql(
                "SELECT id, received_at, source, reason, payload, message_id, attempts "
                "FROM dead_letters ORDER BY id DESC LIMIT ?"
            ),
            (limit,),
        ).fetchall()
        return [DeadLetter(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]

    def dead_letter_by_id(self, letter_id: int) -> DeadLetter | None:
        row = self._run(
            self._sql(
                "SELECT id, received_at, source, reason, payload, message_id, attempts "
                "FROM dead_letters WHERE id = ?"
            ),
            (letter_id,),
        ).fetchone()
        if row is None:
            return None
        return DeadLetter(int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]))

    def discard_dead_letter(self, letter_id: int) -> bool:
        """Remove one dead letter; False when there was none with that id."""
        with self._locked() as cur:
            cur.execute(self._sql("DELETE FROM dead_letters WHERE id = ?"), (letter_id,))
            return bool(cur.rowcount)

    # -- inventory reports ---------------------------------------------------------------

    def change_mark(self, change_id: int) -> tuple[str, float] | None:
        """The key and time of change `change_id`: what a cache taken at that change checks
        to know it is still of this catalog's history (not of a restored or recreated one)."""
        row = self._run(
            self._sql("SELECT key, at FROM changes WHERE id = ?"), (change_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def rows_changed_since(
        self, dataset_id: int, driver_id: int, since: int, limit: int
    ) -> list[RawRow] | None:
        """The current rows of every key of one dataset and driver changed after change
        `since`; None when more than `limit` keys changed."""
        keys = [
            str(r[0])
            for r in self._run(
                self._sql(
                    "SELECT DISTINCT key FROM changes WHERE id > ? AND dataset_id = ? "
                    "AND driver_id = ? LIMIT ?"
                ),
                (since, dataset_id, driver_id, limit + 1),
            ).fetchall()
        ]
        if len(keys) > limit:
            return None
        rows: list[RawRow] = []
        for start in range(0, len(keys), 500):
            sql, params = self._keys_query(dataset_id, driver_id, keys[start : start + 500])
            rows.extend(tuple(r) for r in self._run(sql, params).fetchall())
        return rows

    def change_id_at(self, ts: float) -> int:
        """The newest change id written before `ts` (0: none). Ids are gap-free and were
        given in time order, so a binary search over the primary key finds it."""
        lo, hi = 0, self.last_change_id()
        sql = self._sql("SELECT at FROM changes WHERE id = ?")
        while lo < hi:
            mid = (lo + hi + 1) // 2
            row = self._run(sql, (mid,)).fetchone()
            if row is not None and float(row[0]) < ts:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def inventory_applied(
        self, driver_id: int, shard: Shard | None = None
    ) -> InventoryApplied | None:
        """The newest inventory report applied to this driver (or key range), and under which
        key filter."""
        row = self._run(
            self._sql(
                "SELECT taken_at, manifest, key_filter FROM inventory_state "
                "WHERE driver_id = ? AND shard = ?"
            ),
            (driver_id, shard.state_key if shard is not None else ""),
        ).fetchone()
        return None if row is None else InventoryApplied(float(row[0]), str(row[1]), str(row[2]))

    def save_inventory_applied(
        self, driver_id: int, applied: InventoryApplied, shard: Shard | None = None
    ) -> None:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO inventory_state (driver_id, shard, taken_at, manifest, "
                    "key_filter, applied_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (driver_id, shard) DO UPDATE SET "
                    "taken_at = excluded.taken_at, manifest = excluded.manifest, "
                    "key_filter = excluded.key_filter, applied_at = excluded.applied_at"
                ),
                (
                    driver_id,
                    shard.state_key if shard is not None else "",
                    applied.taken_at,
                    applied.manifest,
                    applied.key_filter,
                    time.time(),
                ),
            )

    # -- labeling targets ----------------------------------------------------------------
    # Push bookkeeping takes the lease lock, not the item writer lock: a push talking to a
    # slow labeling server never holds up syncs.

    def rows_of(self, dataset: str, driver: str, keys: Collection[str]) -> dict[str, Item]:
        """The items (tombstones included) of `keys` under one dataset and driver."""
        dataset_id = self.find_id("dataset", dataset)
        driver_id = self.find_id("driver", driver)
        out: dict[str, Item] = {}
        if dataset_id is None or driver_id is None:
            return out
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            sql, params = self._keys_query(dataset_id, driver_id, unique[start : start + 500])
            for raw in self._run(sql, params).fetchall():
                row = CatalogRow._make(raw)
                out[row.key] = Item(
                    dataset,
                    driver,
                    row.key,
                    row.size,
                    row.mtime,
                    row.etag,
                    row.version,
                    row.content_type,
                    row.media_kind,
                    row.order_token,
                    row.observed_at,
                    bool(row.deleted),
                    row.change_id,
                    bool(row.verify),
                )
        return out

    def push_state(self, target: str) -> PushState | None:
        row = self._run(
            self._sql(
                "SELECT target, pushed_through, verified_at FROM push_state WHERE target = ?"
            ),
            (target,),
        ).fetchone()
        return None if row is None else PushState(row[0], int(row[1]), float(row[2]))

    def save_push_state(self, state: PushState) -> None:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO push_state (target, pushed_through, verified_at, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
                    "pushed_through = excluded.pushed_through, "
                    "verified_at = excluded.verified_at, updated_at = excluded.updated_at"
                ),
                (state.target, state.pushed_through, state.verified_at, time.time()),
            )

    def task_links(self, target: str, driver: str, keys: Collection[str]) -> dict[str, TaskLink]:
        out: dict[str, TaskLink] = {}
        hashes = list(dict.fromkeys(link_hash(k) for k in keys))
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ", ".join([self.placeholder] * len(chunk))
            rows = self._run(
                self._sql(
                    f"SELECT {LINK_COLUMNS} FROM push_tasks WHERE target = ? AND driver = ? "
                    f"AND key_hash IN ({marks})"
                ),
                (target, driver, *chunk),
            ).fetchall()
            for row in rows:
                out[row[1]] = _link(row)
        return out

    def all_task_links(self, target: str) -> Iterator[TaskLink]:
        """Every link of `target`, in (driver, key hash) order, read in pages."""
        after = ("", "")
        sql = self._sql(
            f"SELECT {LINK_COLUMNS}, key_hash FROM push_tasks WHERE target = ? "
            "AND (driver > ? OR (driver = ? AND key_hash > ?)) ORDER BY driver, key_hash LIMIT ?"
        )
        while True:
            rows = self._run(sql, (target, after[0], after[0], after[1], SCAN_CHUNK)).fetchall()
            for row in rows:
                yield _link(row)
            if len(rows) < SCAN_CHUNK:
                return
            after = (rows[-1][0], rows[-1][-1])

    def count_pending_links(self, target: str) -> int:
        row = self._run(
            self._sql("SELECT count(*) FROM push_tasks WHERE target = ? AND task_id IS NULL"),
            (target,),
        ).fetchone()
        return int(row[0])

    def save_task_links(self, target: str, links: Sequence[TaskLink]) -> None:
        with self._guard(), self._lease_tx() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO push_tasks (target, driver, key_hash, key, task_id, etag, "
                    "version, change_id, marked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (target, driver, key_hash) DO UPDATE SET "
                    "task_id = excluded.task_id, etag = excluded.etag, "
                    "version = excluded.version, change_id = excluded.change_id, "
                    "marked = excluded.marked"
                ),
                [
                    (
                        target,
                        link.driver,
                        link_hash(link.key),
                        link.key,
                        link.task_id,
                        link.etag,
                        link.version,
                        link.change_id,
                        link.marked,
                    )
                    for link in links
                ],
            )

    def drop_task_links(self, target: str, keys: Sequence[tuple[str, str]]) -> None:
        """Forget the links of (driver, key) pairs."""
        with self._guard(), self._lease_tx() as cur:
            cur.executemany(
                self._sql(
                    "DELETE FROM push_tasks WHERE target = ? AND driver = ? AND key_hash = ?"
                ),
                [(target, driver, link_hash(key)) for driver, key in keys],
            )

    def begin_push_run(self, target: str, dataset: str) -> int:
        """Record a push `running`; earlier pushes of `target` whose process is gone (on this
        host) are marked interrupted."""
        now = time.time()
        host = socket.gethostname()
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "SELECT id, host, pid FROM push_runs WHERE target = ? AND status = 'running'"
                ),
                (target,),
            )
            for run_id, run_host, pid in cur.fetchall():
                if run_host == host and not _pid_alive(int(pid)):
                    cur.execute(
                        self._sql(
                            "UPDATE push_runs SET status = 'interrupted', finished_at = ?, "
                            "reason = 'interrupted: process gone' WHERE id = ?"
                        ),
                        (now, run_id),
                    )
            cur.execute(
                self._sql(
                    "INSERT INTO push_runs (target, dataset, status, started_at, host, pid) "
                    "VALUES (?, ?, 'running', ?, ?, ?) RETURNING id"
                ),
                (target, dataset, now, host, os.getpid()),
            )
            return int(cur.fetchone()[0])

    def finish_push_run(
        self,
        run_id: int,
        status: RunStatus,
        counts: PushCounts,
        pushed_through: int,
        errors: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        with self._guard(), self._lease_tx() as cur:
            cur.execute(
                self._sql(
                    "UPDATE push_runs SET status = ?, finished_at = ?, counts = ?, errors = ?, "
                    "reason = ?, pushed_through = ? WHERE id = ?"
                ),
                (
                    str(status),
                    time.time(),
                    json.dumps(counts.as_dict()),
                    json.dumps([_storable(e) for e in errors]),
                    None if reason is None else _storable(reason),
                    pushed_through,
                    run_id,
                ),
            )

    def push_runs(self, target: str | None = None, limit: int = 20) -> list[PushRun]:
        where, params = ("target = ?", (target,)) if target is not None else ("1 = 1", ())
        rows = self._run(
            self._sql(
                "SELECT id, target, dataset, status, started_at, finished_at, pushed_through, "
                f"counts, errors, reason, host, pid FROM push_runs WHERE {where} "
                "ORDER BY id DESC LIMIT ?"
            ),
            (*params, limit),
        ).fetchall()
        return [
            PushRun(
                id=int(r[0]),
                target=r[1],
                dataset=r[2],
                status=RunStatus(r[3]),
                started_at=float(r[4]),
                finished_at=None if r[5] is None else float(r[5]),
                pushed_through=int(r[6]),
                counts=PushCounts(**json.loads(r[7] or "{}")),
                errors=tuple(json.loads(r[8] or "[]")),
                reason=r[9],
                host=r[10],
                pid=int(r[11]),
            )
            for r in rows
        ]


class _Result(list[tuple[Any, ...]]):
    """Fetched rows, read like a cursor's."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self


class _SqlWriteTx:
    def __init__(self, catalog: SqlCatalog, cursor: Any, counter: int) -> None:
        self._catalog = catalog
        self._cur = cursor
        self.start_counter = counter
        self.counter = counter

    def last_change_id(self) -> int:
        return self.counter

    def rows(self, dataset_id: int, driver_id: int, keys: Collection[str]) -> dict[str, CatalogRow]:
        out: dict[str, CatalogRow] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            sql, params = self._catalog._keys_query(dataset_id, driver_id, chunk)
            self._cur.execute(sql, params)
            for row in self._cur.fetchall():
                out[row[0]] = CatalogRow._make(row)
        return out

    def write(
        self,
        dataset_id: int,
        driver_id: int,
        writes: Sequence[ItemWrite],
        *,
        run_id: int | None = None,
        guard: int | None = None,
        expect_last: int | None = None,
    ) -> WriteResult:
        if len({w.state.key for w in writes}) != len(writes):
            raise ValueError("one write call takes each key at most once")
        first = self.counter + 1
        if guard is None or self.counter == expect_last:
            applied = list(writes)
            # ITEM_COLUMNS is the ItemState fields in order, between the ids and the change id.
            items = [
                (dataset_id, driver_id, *w.state, change_id)
                for change_id, w in enumerate(applied, first)
            ]
            self._catalog._bulk_upsert(self._cur, items)
        else:
            applied = []
            sql = self._catalog._upsert_sql(guarded=True)
            for write in writes:
                change_id = first + len(applied)
                row = self._catalog._item_params((dataset_id, driver_id, *write.state, change_id))
                self._cur.execute(sql, (*row, guard))
                if self._cur.rowcount == 1:
                    applied.append(write)
        now = time.time()
        changes = [
            (change_id, dataset_id, driver_id, s[0], OP_TEXT[op], s[1], s[3], s[4], now, run_id)
            for change_id, (op, s) in enumerate(applied, first)
        ]
        if changes:
            self._catalog._bulk_changes(self._cur, changes)
        self.counter += len(applied)
        return WriteResult(applied=applied, first_change_id=first)

    def dead_letter(self, source: str, reason: str, payload: str, message_id: str = "") -> None:
        # One row per delivered message: a redelivery counts an attempt, it adds no row.
        self._cur.execute(
            self._catalog._sql(
                "INSERT INTO dead_letters (received_at, source, reason, payload, message_id, "
                "attempts, last_received_at) VALUES (?, ?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (source, message_id) WHERE message_id <> '' DO UPDATE SET "
                "attempts = dead_letters.attempts + 1, "
                "last_received_at = excluded.last_received_at, reason = excluded.reason"
            ),
            (
                time.time(),
                _storable(source),
                _storable(reason),
                _storable(payload),
                _storable(message_id),
                time.time(),
            ),
        )

    def discard_dead_letter(self, letter_id: int) -> None:
        self._cur.execute(self._catalog._sql("DELETE FROM dead_letters WHERE id = ?"), (letter_id,))

    def outbox(self, kind: OutboxKind, dataset: str, data: Mapping[str, Any]) -> int:
        return _insert_outbox(self._catalog, self._cur, kind, dataset, data, time.time())

    def check_fence(self, fence: Fence) -> None:
        self._cur.execute(
            self._catalog._sql(f"SELECT epoch FROM leases WHERE name = ?{self._catalog._share}"),
            (fence.name,),
        )
        row = self._cur.fetchone()
        if row is None or int(row[0]) != fence.epoch:
            held = "none" if row is None else row[0]
            raise LeaseLost(
                f"lease {fence.name}: another replica holds it now (epoch {held}, this run's "
                f"{fence.epoch}); this run's writes are refused"
            )

    def heartbeat(self, run_id: int, counts: RunCounts) -> None:
        self._cur.execute(
            self._catalog._sql(
                "UPDATE sync_runs SET heartbeat_at = ?, listed = ?, added = ?, updated = ?, "
                "deleted = ?, unchanged = ?, skipped = ? WHERE id = ?"
            ),
            (
                time.time(),
                counts.listed,
                counts.added,
                counts.updated,
                counts.deleted,
                counts.unchanged,
                counts.skipped,
                run_id,
            ),
        )


def _iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and a `Z`, as Standard Webhooks' examples write it."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _insert_outbox(
    catalog: SqlCatalog,
    cur: Any,
    kind: OutboxKind,
    dataset: str,
    data: Mapping[str, Any],
    at: float,
) -> int:
    """One outbox row, in the caller's write transaction (under the writer lock, so ids
    commit in order). Its payload is the body webhooks are sent, as Standard Webhooks
    recommend: `{"type", "timestamp", "data"}`, compact, ASCII."""
    payload = json.dumps(
        {"type": kind, "timestamp": _iso(at), "data": dict(data)}, separators=(",", ":")
    )
    cur.execute(
        catalog._sql(
            "INSERT INTO outbox (kind, dataset, payload, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id"
        ),
        (kind, dataset, payload, time.time()),
    )
    return int(cur.fetchone()[0])


def _storable(text: str) -> str:
    """Text any catalog can hold. PostgreSQL text cannot hold NUL, and neither database a
    lone surrogate: a poison payload must still be storable, or its whole batch would fail
    and come back forever."""
    text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


LINK_COLUMNS = "driver, key, task_id, etag, version, change_id, marked"


def link_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _link(row: Sequence[Any]) -> TaskLink:
    task_id = None if row[2] is None else int(row[2])
    return TaskLink(row[0], row[1], task_id, row[3], row[4], int(row[5]), row[6])


def _shard_of(label: str | None, start: str | None, end: str | None) -> Shard | None:
    if label is None or start is None:
        return None
    index, _, count = label.partition("/")
    return Shard(int(index) - 1, int(count), start, end)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
