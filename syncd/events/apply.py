"""Apply parsed messages to the catalog: routed, ordered per object, idempotent, in one
transaction per batch.

Ordering (DESIGN invariant 3) is decided per object by `syncd.events.order.fold` from the
object's row and every event of the batch for it, so any permutation of the same events,
with duplicates and in any batching, ends in the same state. An item whose state the events
cannot tell (a versioned bucket's current version removed) is marked for verification and
returned in `BatchResult.unsettled`; `settle` resolves such items with a stat where the
process can reach the store (a listing also does). Messages that could not be parsed go to
the dead-letter table in the same transaction; the rest of the batch is applied
(invariant 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from syncd.catalog.types import Catalog, CatalogRow, ItemState, ItemWrite, Op, WriteResult, WriteTx
from syncd.config import Config, Driver
from syncd.errors import CatalogUnavailable, NotFound, SyncdError
from syncd.events.order import KeyState, fold
from syncd.events.types import EventKind, Message, ObjectEvent
from syncd.storage import key_filter
from syncd.storage.filters import KeyFilter
from syncd.storage.types import ObjectInfo

log = structlog.get_logger("syncd.events")


@dataclass(frozen=True, slots=True)
class Route:
    dataset: str
    driver: Driver
    provider: str
    keys: KeyFilter


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An item marked for verification by change `change_id`."""

    route: Route
    key: str
    change_id: int


@dataclass(slots=True)
class BatchResult:
    """What a batch did. `failed` lists message ids the platform must deliver again."""

    applied: int = 0
    ignored: int = 0
    unrouted: int = 0
    dead_lettered: int = 0
    #: Deletes not applied because the driver has `allow_external_delete: false`.
    kept: int = 0
    failed: list[str] = field(default_factory=list)
    unsettled: list[Unsettled] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.applied += other.applied
        self.ignored += other.ignored
        self.unrouted += other.unrouted
        self.dead_lettered += other.dead_lettered
        self.kept += other.kept
        self.failed += other.failed
        self.unsettled += other.unsettled


def routes_of(config: Config) -> list[Route]:
    return [
        Route(
            dataset.name,
            driver,
            config.integration(driver.integration).provider,
            key_filter(driver),
        )
        for dataset, driver in config.pairs()
    ]


#: A stat of one key through its route's store; raises `NotFound` when the object is absent.
Stat = Callable[[Route, str], ObjectInfo]


@dataclass(slots=True)
class _Changed:
    """What one transaction changed in one dataset: its `items.changed` webhook event."""

    drivers: set[str] = field(default_factory=set)
    ops: dict[Op, int] = field(default_factory=dict)
    first: int = 0
    last: int = 0

    def note(self, driver: str, done: WriteResult) -> None:
        if not done.applied:
            return
        self.drivers.add(driver)
        for write in done.applied:
            self.ops[write.op] = self.ops.get(write.op, 0) + 1
        last = done.first_change_id + len(done.applied) - 1
        self.first = min(self.first or done.first_change_id, done.first_change_id)
        self.last = max(self.last, last)


def _announce(tx: WriteTx, changed: dict[str, _Changed]) -> None:
    """One `items.changed` outbox row per dataset the transaction changed, committed with it
    (the daemon's webhooks coalesce a busy queue's rows)."""
    for dataset, seen in changed.items():
        count = sum(seen.ops.values())
        if not count:
            continue
        tx.outbox(
            "items.changed",
            dataset,
            {
                "dataset": dataset,
                "drivers": sorted(seen.drivers),
                "run_ids": [],
                "count": count,
                "added": seen.ops.get(Op.ADDED, 0),
                "updated": seen.ops.get(Op.UPDATED, 0),
                "deleted": seen.ops.get(Op.DELETED, 0),
                "first_change_id": seen.first,
                "last_change_id": seen.last,
            },
        )


def _op(row: CatalogRow | None, new: ItemState) -> Op:
    if new.deleted:
        return Op.DELETED
    return Op.ADDED if row is None or row.deleted else Op.UPDATED


class EventApplier:
    """Applies batches of messages to one catalog for one configuration."""

    def __init__(self, catalog: Catalog, config: Config) -> None:
        self.catalog = catalog
        self.routes = routes_of(config)
        self._ids: dict[tuple[str, str], tuple[int, int]] = {}

    def _ids_of(self, route: Route) -> tuple[int, int]:
        key = (route.dataset, route.driver.name)
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = (
                self.catalog.dataset_id(route.dataset),
                self.catalog.driver_id(
                    route.driver.name, route.provider, route.driver.bucket, route.driver.prefix
                ),
            )
        return ids

    def route(self, event: ObjectEvent) -> list[Route]:
        return [
            r
            for r in self.routes
            if r.provider == event.provider
            and r.driver.bucket == event.bucket
            and r.keys.accepts(event.key)
        ]

    def apply(
        self, messages: Sequence[Message], *, discard_letter: int | None = None
    ) -> BatchResult:
        """Apply one batch in one transaction. `discard_letter`: the id of a dead letter whose
        message this batch is (a retry), removed in the same transaction."""
        result = BatchResult()
        grouped: dict[tuple[int, int], dict[str, list[ObjectEvent]]] = {}
        routes: dict[tuple[int, int], Route] = {}
        for message in messages:
            for event in message.events:
                matched = self.route(event)
                if not matched:
                    result.unrouted += 1
                    log.info(
                        "event matches no driver",
                        provider=event.provider,
                        bucket=event.bucket,
                        key=event.key,
                    )
                    continue
                for route in matched:
                    routed = event
                    if routed.kind is EventKind.VERSION_DELETED and not route.driver.versioned:
                        # In a bucket without versions, removing "a version" (S3 calls it
                        # "null") removes the object.
                        routed = replace(routed, kind=EventKind.DELETED)
                    if routed.kind is EventKind.DELETED and not route.driver.allow_external_delete:
                        result.kept += 1
                        continue
                    ids = self._ids_of(route)
                    routes[ids] = route
                    grouped.setdefault(ids, {}).setdefault(routed.key, []).append(routed)
        bad = [m for m in messages if m.error is not None]
        changed: dict[str, _Changed] = {}
        with self.catalog.transaction() as tx:
            if discard_letter is not None:
                tx.discard_dead_letter(discard_letter)
            for message in bad:
                tx.dead_letter(message.source, message.error or "", message.raw, message.id)
                log.warning(
                    "message dead-lettered",
                    source=message.source,
                    id=message.id,
                    reason=message.error,
                )
            for (dataset_id, driver_id), per_key in grouped.items():
                rows = tx.rows(dataset_id, driver_id, per_key.keys())
                writes = []
                for key, events in per_key.items():
                    row = rows.get(key)
                    new = fold(row, key, events)
                    if new is None:
                        result.ignored += 1
                        continue
                    writes.append(ItemWrite(_op(row, new), new))
                if not writes:
                    continue
                done = tx.write(dataset_id, driver_id, writes)
                result.applied += len(done.applied)
                route = routes[(dataset_id, driver_id)]
                changed.setdefault(route.dataset, _Changed()).note(route.driver.name, done)
                for change_id, write in enumerate(done.applied, done.first_change_id):
                    if write.state.verify:
                        result.unsettled.append(Unsettled(route, write.state.key, change_id))
            _announce(tx, changed)
        result.dead_lettered = len(bad)
        return result

    def settle(self, pending: Iterable[Unsettled], stat: Stat) -> int:
        """Resolve items marked for verification with a stat of each; return how many.

        The stat runs outside any transaction; its result is written only where nothing
        changed the item since it was marked (a newer event decides then). An item the
        store cannot be asked about stays marked until a stat succeeds or a listing runs.
        """
        seen: list[tuple[Unsettled, ObjectInfo | None]] = []
        for item in pending:
            try:
                info: ObjectInfo | None = stat(item.route, item.key)
            except NotFound:
                info = None
            except SyncdError as exc:
                log.warning(
                    "cannot verify item; the next sync will",
                    driver=item.route.driver.name,
                    key=item.key,
                    error=str(exc),
                )
                continue
            seen.append((item, info))
        if not seen:
            return 0
        settled = 0
        changed: dict[str, _Changed] = {}
        with self.catalog.transaction() as tx:
            by_ids: dict[tuple[int, int], list[tuple[Unsettled, ObjectInfo | None]]] = {}
            for item, info in seen:
                by_ids.setdefault(self._ids_of(item.route), []).append((item, info))
            for (dataset_id, driver_id), group in by_ids.items():
                rows = tx.rows(dataset_id, driver_id, [item.key for item, _ in group])
                writes = []
                for item, info in group:
                    row = rows.get(item.key)
                    if row is None or not row.verify or row.change_id != item.change_id:
                        continue
                    state = KeyState.of_row(row)
                    if info is None and not item.route.driver.allow_external_delete:
                        state.removed = {}
                        state.deleted = False
                    else:
                        state.observed(info)
                    new = state.item_state()
                    writes.append(ItemWrite(_op(row, new), new))
                if writes:
                    done = tx.write(dataset_id, driver_id, writes)
                    settled += len(done.applied)
                    route = group[0][0].route
                    changed.setdefault(route.dataset, _Changed()).note(route.driver.name, done)
            _announce(tx, changed)
        return settled


def apply_all(applier: EventApplier, messages: Iterable[Message], batch: int = 500) -> BatchResult:
    """Apply in transactions of up to `batch` messages, so that one message never holds back
    the others.

    A batch whose commit fails for a reason in the data is split in halves until the
    message at fault is alone; that message is dead-lettered with the reason and the rest
    committed. When the catalog cannot be reached, the connection is opened anew and the
    batch tried once more; if that fails too, its messages are reported failed (the
    platform delivers them again).
    """
    total = BatchResult()
    chunk: list[Message] = []
    state = {"reconnected": False}
    for message in messages:
        chunk.append(message)
        if len(chunk) >= batch:
            _apply_isolating(applier, chunk, total, state)
            chunk = []
    if chunk:
        _apply_isolating(applier, chunk, total, state)
    return total


def _apply_isolating(
    applier: EventApplier, chunk: list[Message], total: BatchResult, state: dict[str, bool]
) -> None:
    try:
        total.add(applier.apply(chunk))
        return
    except CatalogUnavailable as exc:
        if state["reconnected"]:
            _failed(chunk, total, exc)
            return
        state["reconnected"] = True
        log.warning("catalog unreachable; reconnecting", error=str(exc), messages=len(chunk))
        try:
            applier.catalog.reconnect()
            total.add(applier.apply(chunk))
            return
        except CatalogUnavailable as again:
            _failed(chunk, total, again)
            return
        except Exception as again:
            error: Exception = again
    except Exception as exc:
        error = exc
    if len(chunk) == 1:
        _dead_letter(applier, chunk[0], total, error)
        return
    middle = len(chunk) // 2
    _apply_isolating(applier, chunk[:middle], total, state)
    _apply_isolating(applier, chunk[middle:], total, state)


def _failed(chunk: list[Message], total: BatchResult, exc: Exception) -> None:
    log.error("batch not committed", error=str(exc), messages=len(chunk))
    total.failed += [m.id for m in chunk]


def _dead_letter(
    applier: EventApplier, message: Message, total: BatchResult, exc: Exception
) -> None:
    """A message that cannot be stored, alone in its transaction: a permanent failure."""
    reason = f"cannot be stored: {type(exc).__name__}: {exc}"[:2000]
    try:
        with applier.catalog.transaction() as tx:
            tx.dead_letter(message.source, reason, message.raw, message.id)
    except Exception as again:
        _failed([message], total, again)
        return
    log.warning("message dead-lettered", source=message.source, id=message.id, reason=reason)
    total.dead_lettered += 1
