"""Apply parsed messages to the catalog: routed, ordered per object, idempotent, in one
transaction per batch.

Ordering (DESIGN invariant 3): when both the event and the item carry a token, the greater
`(token, deleted)` wins (at equal tokens a delete is the later state of that generation);
when either lacks one (S3 listings and moto's notifications carry none), event time against
the item's `observed_at` decides the same way. Equal means a duplicate: nothing is written.
A delete of an object the catalog never saw still writes a tombstone, so that an older
create arriving later is recognised as older. Messages that could not be parsed go to the
dead-letter table in the same transaction; the rest of the batch is applied (invariant 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from syncd.catalog.types import Catalog, CatalogRow, ItemState, ItemWrite, Op
from syncd.config import Config, Driver
from syncd.events.types import EventKind, Message, ObjectEvent
from syncd.media import media_kind
from syncd.storage import key_filter
from syncd.storage.filters import KeyFilter

log = structlog.get_logger("syncd.events")


@dataclass(slots=True)
class BatchResult:
    """What a batch did. `failed` lists message ids the platform must deliver again."""

    applied: int = 0
    ignored: int = 0
    unrouted: int = 0
    dead_lettered: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Route:
    dataset: str
    driver: Driver
    provider: str
    keys: KeyFilter


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


def newer(event: ObjectEvent, token: str | None, at: float, deleted: bool) -> bool:
    """True when `event` is later than a state with this token, time and deleted flag."""
    mine = event.kind is EventKind.DELETED
    if event.token is not None and token is not None:
        return (event.token, mine) > (token, deleted)
    return (event.event_time, mine) > (at, deleted)


def _later(a: ObjectEvent, b: ObjectEvent) -> ObjectEvent:
    return b if newer(b, a.token, a.event_time, a.kind is EventKind.DELETED) else a


def _state(event: ObjectEvent, row: CatalogRow | None) -> ItemState:
    deleted = event.kind is EventKind.DELETED
    size = event.size if event.size is not None else (row.size if row is not None else 0)
    etag = event.etag if event.etag is not None or deleted else None
    if deleted and row is not None:
        etag = row.etag
    content_type = event.content_type or (row.content_type if row is not None else None)
    return ItemState(
        key=event.key,
        size=size,
        mtime=event.event_time if not deleted or row is None else row.mtime,
        etag=etag,
        version=event.version if event.version is not None else (row.version if row else None),
        content_type=content_type,
        media_kind=media_kind(event.key, content_type),
        order_token=event.token,
        observed_at=event.event_time,
        deleted=deleted,
    )


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

    def apply(self, messages: Sequence[Message]) -> BatchResult:
        result = BatchResult()
        # The winning event per (dataset, driver, key) within this batch.
        latest: dict[tuple[int, int], dict[str, ObjectEvent]] = {}
        for message in messages:
            for event in message.events:
                routes = self.route(event)
                if not routes:
                    result.unrouted += 1
                    log.info(
                        "event matches no driver",
                        provider=event.provider,
                        bucket=event.bucket,
                        key=event.key,
                    )
                    continue
                for route in routes:
                    per_key = latest.setdefault(self._ids_of(route), {})
                    seen = per_key.get(event.key)
                    per_key[event.key] = event if seen is None else _later(seen, event)
        bad = [m for m in messages if m.error is not None]
        with self.catalog.transaction() as tx:
            for message in bad:
                tx.dead_letter(message.source, message.error or "", message.raw)
                log.warning(
                    "message dead-lettered",
                    source=message.source,
                    id=message.id,
                    reason=message.error,
                )
            for (dataset_id, driver_id), per_key in latest.items():
                rows = tx.rows(dataset_id, driver_id, per_key.keys())
                writes = []
                for key, event in per_key.items():
                    row = rows.get(key)
                    if row is not None and not newer(
                        event, row.order_token, row.observed_at, row.deleted
                    ):
                        result.ignored += 1
                        continue
                    if _other_version_removed(event, row):
                        result.ignored += 1
                        continue
                    writes.append(ItemWrite(_op(event, row), _state(event, row)))
                if writes:
                    result.applied += len(tx.write(dataset_id, driver_id, writes).applied)
        result.dead_lettered = len(bad)
        return result


def _other_version_removed(event: ObjectEvent, row: CatalogRow | None) -> bool:
    """A versioned bucket's permanent delete of a version the item does not show."""
    return (
        event.kind is EventKind.DELETED
        and event.version is not None
        and row is not None
        and not row.deleted
        and row.version is not None
        and row.version != event.version
    )


def _op(event: ObjectEvent, row: CatalogRow | None) -> Op:
    if event.kind is EventKind.DELETED:
        return Op.DELETED
    return Op.ADDED if row is None or row.deleted else Op.UPDATED


def apply_all(applier: EventApplier, messages: Iterable[Message], batch: int = 500) -> BatchResult:
    """Apply in batches of `batch` messages; a batch that fails is reported as failed."""
    total = BatchResult()
    chunk: list[Message] = []

    def flush() -> None:
        try:
            done = applier.apply(chunk)
        except Exception as exc:
            log.error("batch failed", error=str(exc), messages=len(chunk))
            total.failed += [m.id for m in chunk]
            return
        total.applied += done.applied
        total.ignored += done.ignored
        total.unrouted += done.unrouted
        total.dead_lettered += done.dead_lettered

    for message in messages:
        chunk.append(message)
        if len(chunk) >= batch:
            flush()
            chunk = []
    if chunk:
        flush()
    return total
