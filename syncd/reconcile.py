"""Reconcile one driver's listing into one dataset: merge, classify, apply in batches.

Adds and updates are written as the merge finds them; deletes are held back (spilled to a
temporary file, so memory stays flat) until the whole listing has arrived cleanly and the
safety limits allow them. Every write is guarded by the change id seen when the run began
(the watermark): an item that an event touched after that is left alone, so a reconcile never
undoes a newer event (invariant 4).
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import IO

import structlog

from syncd.catalog.types import (
    Catalog,
    CatalogRow,
    Fence,
    Item,
    ItemState,
    ItemWrite,
    Op,
    RawRow,
    RunCounts,
    RunStatus,
    WriteTx,
)
from syncd.config import Driver, MaxDelete
from syncd.diff import SAME, Added, Changed, Held, Removed, diff
from syncd.errors import (
    CatalogError,
    CatalogUnavailable,
    LeaseLost,
    ListingOrderError,
    Stopped,
    SyncdError,
)
from syncd.logs import scrub
from syncd.media import media_kind
from syncd.shards import Shard, log_fields, within
from syncd.storage import key_filter
from syncd.storage.deadline import Deadline
from syncd.storage.fanout import fan_out_listing
from syncd.storage.filters import KeyFilter
from syncd.storage.ordering import sort_listing
from syncd.storage.types import Gap, Listed, Lister, ObjectInfo, PrefixLister

log = structlog.get_logger("syncd.reconcile")

BATCH_SIZE = 5_000
HEARTBEAT_EVERY = 10.0
PLAN_LIMIT = 1_000

Progress = Callable[[RunCounts], None]
RUN_COUNT_FIELDS = tuple(f.name for f in fields(RunCounts))


@dataclass(frozen=True, slots=True)
class PlannedChange:
    op: Op
    key: str
    size: int


@dataclass(slots=True)
class SyncResult:
    """What one reconcile of one (dataset, driver) did, or with `dry_run` would do."""

    dataset: str
    driver: str
    status: RunStatus
    counts: RunCounts
    dry_run: bool = False
    run_id: int | None = None
    reason: str | None = None
    errors: list[str] = field(default_factory=list)
    #: With `dry_run`, the first `PLAN_LIMIT` planned changes.
    plan: list[PlannedChange] = field(default_factory=list)
    elapsed: float = 0.0
    #: What a scheduler should do about a run that did not succeed: `transient` (retry
    #: later), `permanent` (a person must act), `safety` (a safety stop: nothing deleted).
    error_kind: str | None = None
    #: Things skipped that are not errors (a symlink cycle, a link leaving the folder).
    warnings: list[str] = field(default_factory=list)
    #: The key range reconciled; None: the whole driver.
    shard: Shard | None = None


def item_state(info: ObjectInfo) -> ItemState:
    key, size, mtime, etag, version, content_type, order_token = info
    # Positional: this runs for every added or changed object.
    return ItemState(
        key,
        size,
        mtime,
        etag,
        version,
        content_type,
        media_kind(key, content_type),
        order_token,
        mtime,
    )


def tombstone(row: CatalogRow | Item, at: float) -> ItemState:
    """The deleted state of a row, as read by a scan or as an item."""
    return ItemState(
        key=row.key,
        size=row.size,
        mtime=row.mtime,
        etag=row.etag,
        version=row.version,
        content_type=row.content_type,
        media_kind=row.media_kind,
        order_token=row.order_token,
        observed_at=at,
        deleted=True,
    )


class _HeldDeletes:
    """Rows the listing lacks, kept on disk until the listing is known to be complete."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._pending: list[CatalogRow] = []
        self.count = 0

    def add(self, row: CatalogRow) -> None:
        self._pending.append(row)
        self.count += 1
        if len(self._pending) >= BATCH_SIZE:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="syncd-deletes-")
        pickle.dump(self._pending, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending = []

    def batches(self) -> Iterator[list[CatalogRow]]:
        if self._file is not None:
            self._file.seek(0)
            while True:
                try:
                    yield pickle.load(self._file)
                except EOFError:
                    break
        if self._pending:
            yield self._pending

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class RunWriter:
    """Applies batches of writes for one run, guarded by the run's watermark."""

    def __init__(
        self,
        catalog: Catalog,
        dataset_id: int,
        driver_id: int,
        run_id: int,
        watermark: int,
        fence: Fence | None = None,
    ):
        self.catalog = catalog
        self.fence = fence
        self.dataset_id = dataset_id
        self.driver_id = driver_id
        self.run_id = run_id
        self.watermark = watermark
        # While the change counter equals what this run alone has made it, nobody else wrote,
        # and the per-row guard can be skipped.
        self._expect: int | None = watermark
        self._last_beat = time.monotonic()

    def apply(self, writes: list[ItemWrite], counts: RunCounts) -> None:
        """Write a batch and the run's counts in one transaction: the counts a run's history
        shows are always those of what was committed, even after a crash."""
        after = replace(counts)
        with self.catalog.transaction() as tx:
            if self.fence is not None:
                tx.check_fence(self.fence)
            _tally(self._write(tx, writes, after), after)
            tx.heartbeat(self.run_id, after)
        for name in RUN_COUNT_FIELDS:
            setattr(counts, name, getattr(after, name))
        self._last_beat = time.monotonic()

    def _write(self, tx: WriteTx, writes: list[ItemWrite], counts: RunCounts) -> list[ItemWrite]:
        if not writes:
            return []
        before = tx.last_change_id()
        result = tx.write(
            self.dataset_id,
            self.driver_id,
            writes,
            run_id=self.run_id,
            guard=self.watermark,
            expect_last=self._expect if self._expect is not None else -1,
        )
        self._expect = tx.last_change_id() if before == self._expect else None
        refused = len(writes) - len(result.applied)
        if refused:
            counts.skipped += refused
            log.info("newer change kept", refused=refused, run_id=self.run_id)
        return result.applied

    def heartbeat(self, counts: RunCounts) -> None:
        if time.monotonic() - self._last_beat >= HEARTBEAT_EVERY:
            self.apply([], counts)


def _tally(applied: list[ItemWrite], counts: RunCounts) -> None:
    for write in applied:
        if write.op is Op.ADDED:
            counts.added += 1
        elif write.op is Op.UPDATED:
            counts.updated += 1
        else:
            counts.deleted += 1


class _Pass:
    """One merge of a listing with the catalog (repeated once, sorted, if order breaks)."""

    def __init__(
        self,
        writer: RunWriter | None,
        counts: RunCounts,
        plan: list[PlannedChange],
        progress: Progress | None,
        plan_limit: int | None = PLAN_LIMIT,
        clock: Deadline | None = None,
    ) -> None:
        self.clock = clock
        self.writer = writer
        self.counts = counts
        self.plan = plan
        self.progress = progress
        self.plan_limit = plan_limit
        self.deletes = _HeldDeletes()
        self.live = 0
        #: Live rows under parts of the listing that could not be read, kept as they are.
        self.held = 0
        self.unreadable: list[str] = []
        self.warnings: list[str] = []

    def run(self, listing: Iterator[Listed], rows: Iterator[RawRow]) -> None:
        # The hot loop of a sync: unchanged objects take the first branch and nothing else,
        # and tallies live in locals until a batch boundary.
        counts = self.counts
        pending: list[ItemWrite] = []
        append = pending.append
        listed = unchanged = live = 0
        for change in diff(listing, rows):
            if change is SAME:
                unchanged += 1
                if unchanged % BATCH_SIZE == 0:
                    counts.listed, counts.unchanged = listed + unchanged, unchanged
                    self._tick()
                continue
            if type(change) is Removed:
                live += 1
                self.deletes.add(change.row)
                continue
            if type(change) is Held:
                live += 1
                self.held += 1
                continue
            if type(change) is Gap:
                (self.unreadable if change.error else self.warnings).append(change.reason)
                continue
            listed += 1
            if type(change) is Added:
                append(ItemWrite(Op.ADDED, item_state(change.info)))
            elif type(change) is Changed:
                live += 1
                append(ItemWrite(Op.UPDATED, item_state(change.info)))
            if len(pending) >= BATCH_SIZE:
                counts.listed, counts.unchanged = listed + unchanged, unchanged
                self._apply(pending)
                pending.clear()
        counts.listed, counts.unchanged = listed + unchanged, unchanged
        self.live = live + unchanged
        self._apply(pending)

    def _tick(self) -> None:
        if self.clock is not None:
            self.clock.check()
        if self.writer is not None:
            self.writer.heartbeat(self.counts)
        if self.progress is not None:
            self.progress(self.counts)

    def _apply(self, pending: list[ItemWrite]) -> None:
        if not pending:
            return
        if self.clock is not None:
            self.clock.check()
        if self.writer is None:
            _tally(pending, self.counts)
            room = len(pending) if self.plan_limit is None else self.plan_limit - len(self.plan)
            self.plan.extend(PlannedChange(w.op, w.state.key, w.state.size) for w in pending[:room])
        else:
            self.writer.apply(pending, self.counts)
        if self.progress is not None:
            self.progress(self.counts)


def _listing(
    store: Lister,
    driver: Driver,
    keys: KeyFilter,
    counts: RunCounts,
    *,
    sort: bool,
    shard: Shard | None = None,
) -> Iterator[Listed]:
    def rejected(_: Listed) -> None:
        counts.skipped += 1

    def listing() -> Iterator[Listed]:
        if driver.fan_out > 1 and isinstance(store, PrefixLister):
            return fan_out_listing(store, driver.prefix, concurrency=driver.fan_out)
        return store.list(driver.prefix, shard.list_after if shard is not None else None)

    def position(entry: Listed) -> str:
        # A gap over a folder the shard begins inside holds the shard's rows under it.
        if shard is not None and isinstance(entry, Gap) and entry.covers(shard.start):
            return shard.start
        return entry.key

    listed = within(listing(), shard, position, ordered=not sort)
    if keys.skip and store.skipped_by_store == keys.skip:
        # The store pruned skipped files and folders as it walked; checking again is waste.
        keys = keys.without_skip()
    raw = keys.filter(listed, rejected)
    return sort_listing(raw) if sort else raw


def reconcile(
    catalog: Catalog,
    store: Lister,
    *,
    dataset: str,
    driver: Driver,
    provider: str,
    dry_run: bool = False,
    max_delete: MaxDelete | None = None,
    progress: Progress | None = None,
    plan_limit: int | None = PLAN_LIMIT,
    fence: Fence | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    shard: Shard | None = None,
) -> SyncResult:
    """Bring `dataset`'s items from `driver` in step with `store`'s listing (of the keys
    `shard` covers, when given: rows outside it are neither read nor touched).

    Never raises for a listing or catalog failure: the result says `aborted` (nothing was
    deleted) or `failed`, with the reason, and the run's history says the same. An interrupt
    (Ctrl-C, SIGTERM) records the run `interrupted` with the counts committed, then
    propagates. Raises `RunConflict` when another live run holds the same dataset and driver.

    Under a daemon's lease (`fence`), every batch checks the lease is still this run's, and
    a run left `running` by a replica that lost the lease is taken over. `stop` asks the run
    to end between batches (a daemon shutting down): it is recorded `interrupted`.
    `on_start` is told the run id as soon as the run is recorded.
    """
    started = time.monotonic()
    wall_start = time.time()
    counts = RunCounts()
    result = SyncResult(
        dataset, driver.name, RunStatus.RUNNING, counts, dry_run=dry_run, shard=shard
    )
    keys = key_filter(driver)
    limit = max_delete or driver.max_delete

    writer: RunWriter | None = None
    dataset_id, driver_id, watermark = start_run(catalog, result, driver, provider, fence, on_start)
    if result.run_id is not None:
        assert dataset_id is not None and driver_id is not None
        writer = RunWriter(catalog, dataset_id, driver_id, result.run_id, watermark, fence)
    bound = log.bind(
        dataset=dataset,
        driver=driver.name,
        run_id=result.run_id,
        dry_run=dry_run,
        **log_fields(shard),
    )
    bound.info("sync started", provider=provider, bucket=driver.bucket, prefix=driver.prefix)

    def rows() -> Iterator[RawRow]:
        if dataset_id is None or driver_id is None:
            return iter(())
        scan = catalog.scan(dataset_id, driver_id, shard.list_after if shard else None)
        return within(scan, shard, _row_key, ordered=True)

    sort = not store.sorted_listing
    clock = Deadline(driver.listing_deadline, f"driver {driver.name}", stop)
    merge = _Pass(writer, counts, result.plan, progress, plan_limit, clock)
    try:
        try:
            merge.run(_listing(store, driver, keys, counts, sort=sort, shard=shard), rows())
        except ListingOrderError as exc:
            # Writes so far compared each key with its own row, so they stand; only the held
            # deletes are suspect. Merge again over the listing sorted on disk.
            bound.warning("listing out of order, sorting it", error=str(exc))
            result.errors.append(f"{exc}; listing was re-read and sorted")
            merge.deletes.close()
            written = counts.added + counts.updated
            counts.listed = counts.unchanged = counts.skipped = 0
            merge = _Pass(writer, counts, result.plan, progress, plan_limit, clock)
            merge.run(_listing(store, driver, keys, counts, sort=True, shard=shard), rows())
            counts.unchanged = max(0, counts.unchanged - written)
        clock.check()
        result.errors.extend(merge.unreadable[:MAX_REPORTED])
        result.warnings.extend(merge.warnings[:MAX_REPORTED])
        status, reason = _apply_deletes(merge, driver, limit, result, wall_start)
    except BaseException as exc:
        return ended_by(exc, catalog, result, started, bound, "listing failed")
    finally:
        merge.deletes.close()
    return finish_result(catalog, result, status, reason, started, bound)


def start_run(
    catalog: Catalog,
    result: SyncResult,
    driver: Driver,
    provider: str,
    fence: Fence | None,
    on_start: Callable[[int], None] | None,
) -> tuple[int | None, int | None, int]:
    """The dataset and driver ids (None in a dry run of a pair never synced) and the change
    watermark; outside a dry run the run is recorded `running` and `result.run_id` set."""
    if result.dry_run:
        ids = catalog.find_id("dataset", result.dataset), catalog.find_id("driver", driver.name)
        return ids[0], ids[1], catalog.last_change_id()
    dataset_id = catalog.dataset_id(result.dataset)
    driver_id = catalog.driver_id(driver.name, provider, driver.bucket, driver.prefix)
    watermark = catalog.last_change_id()
    result.run_id = catalog.begin_run(
        dataset_id, driver_id, watermark=watermark, takeover=fence is not None, shard=result.shard
    )
    if on_start is not None:
        on_start(result.run_id)
    return dataset_id, driver_id, watermark


def _row_key(row: RawRow) -> str:
    return str(row[0])


def ended_by(
    exc: BaseException,
    catalog: Catalog,
    result: SyncResult,
    started: float,
    bound: structlog.typing.FilteringBoundLogger,
    failed: str,
) -> SyncResult:
    """The result of a run `exc` ended, recorded in its history. A lost lease or a stop is
    `interrupted`, a catalog fault `failed`, a source fault `aborted` (`failed: exc`: nothing
    was deleted). Anything else (Ctrl-C, a bug) is recorded and raised again."""
    if isinstance(exc, LeaseLost | Stopped):
        result.error_kind = "transient"
        return finish_result(catalog, result, RunStatus.INTERRUPTED, str(exc), started, bound)
    if isinstance(exc, CatalogError):
        result.error_kind = "transient" if exc.transient else "permanent"
        return finish_result(catalog, result, RunStatus.FAILED, str(exc), started, bound)
    if isinstance(exc, SyncdError | OSError):
        result.error_kind = "transient" if getattr(exc, "transient", False) else "permanent"
        return finish_result(catalog, result, RunStatus.ABORTED, f"{failed}: {exc}", started, bound)
    if result.run_id is not None:
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        why = "interrupted (signal or Ctrl-C)" if interrupted else f"crashed: {exc!r}"
        with contextlib.suppress(Exception):
            catalog.finish_run(result.run_id, status, None, result.errors, scrub(why))
    raise exc


#: Unreadable entries and warnings a run records (the rest are counted).
MAX_REPORTED = 100


def _apply_deletes(
    merge: _Pass, driver: Driver, limit: MaxDelete, result: SyncResult, at: float
) -> tuple[RunStatus, str | None]:
    """Apply the held deletes if it is safe; the run's status and reason.

    Rows under unreadable parts of the listing were never candidates (they are `Held`);
    the deletes elsewhere go ahead under the usual limits, and the run ends
    `completed_with_errors` naming what could not be read.
    """
    counts = result.counts
    counts.skipped += merge.held
    unreadable = len(merge.unreadable)
    if unreadable:
        status = RunStatus.COMPLETED_WITH_ERRORS
        shown = "; ".join(merge.unreadable[:3]) + ("; ..." if unreadable > 3 else "")
        done = (
            f"{unreadable} entries unreadable ({shown}); {merge.held} items under them kept as "
            "they were"
        )
    else:
        status, done = RunStatus.SUCCEEDED, None
    held = merge.deletes.count
    if held == 0:
        return status, done
    if not driver.allow_external_delete:
        # Nothing would be deleted, so there is nothing for a safety limit to stop.
        counts.skipped += held
        return status, done
    if counts.listed == 0 and not unreadable:
        return RunStatus.ABORTED, (
            f"the listing of {driver.bucket}/{driver.prefix} was empty but {held} items were live; "
            "deleting nothing"
        )
    exceeded = limit.exceeded(held, merge.live)
    if exceeded:
        return RunStatus.ABORTED, f"{exceeded}; deleting nothing (raise max_delete to allow)"
    pending: list[ItemWrite] = []
    for batch in merge.deletes.batches():
        for row in batch:
            pending.append(ItemWrite(Op.DELETED, tombstone(row, at)))
            if len(pending) >= BATCH_SIZE:
                merge._apply(pending)
                pending = []
    merge._apply(pending)
    return status, done


def _record(
    catalog: Catalog, result: SyncResult, bound: structlog.typing.FilteringBoundLogger
) -> None:
    """Write the run's end to its history, reconnecting once when the catalog was lost (a
    dropped PostgreSQL connection is often why the run failed)."""
    assert result.run_id is not None
    for attempt in (1, 2):
        try:
            catalog.finish_run(
                result.run_id, result.status, result.counts, result.errors, result.reason
            )
            return
        except CatalogUnavailable as exc:
            if attempt == 2:
                bound.error("run end not recorded", error=str(exc))
                return
            with contextlib.suppress(CatalogError):
                catalog.reconnect()


def finish_result(
    catalog: Catalog,
    result: SyncResult,
    status: RunStatus,
    reason: str | None,
    started: float,
    bound: structlog.typing.FilteringBoundLogger,
) -> SyncResult:
    result.status = status
    if result.error_kind is None and status is not RunStatus.SUCCEEDED:
        result.error_kind = "safety" if status is RunStatus.ABORTED else "permanent"
    # Reasons and errors are stored and printed: a provider's message may quote a signed URL.
    result.reason = scrub(reason) if reason else reason
    result.errors = [scrub(e) for e in result.errors]
    result.elapsed = time.monotonic() - started
    if result.run_id is not None:
        _record(catalog, result, bound)
    event = "sync finished" if status is RunStatus.SUCCEEDED else "sync stopped"
    level = bound.info if status is RunStatus.SUCCEEDED else bound.warning
    level(
        event,
        status=str(status),
        reason=result.reason,
        seconds=round(result.elapsed, 3),
        **result.counts.as_dict(),
    )
    return result
