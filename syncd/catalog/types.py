"""What the catalog stores and the protocol every catalog implements.

The reconciler and the event applier are the only writers of items; both write through a
`WriteTx`, which holds the catalog's single writer lock for its duration, so change ids are
gap-free and commit in id order (a consumer reading "since N" never misses a change).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple, Protocol

from syncd.shards import Shard


class Op(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    DELETED = "deleted"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    ABORTED = "aborted"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


RawRow = tuple[Any, ...]


class CatalogRow(NamedTuple):
    """One item as the reconciler and applier read it (a tuple: this is the hot path)."""

    key: str
    size: int
    mtime: float
    etag: str | None
    version: str | None
    deleted: bool
    change_id: int
    order_token: str | None
    observed_at: float
    content_type: str | None
    media_kind: str | None
    #: The item's state could not be told from its events (a versioned bucket's current
    #: version was removed): a stat or the next listing settles it.
    verify: bool = False
    #: Versioned-bucket ordering memory (syncd.events.order), None when there is none.
    history: str | None = None


class ItemState(NamedTuple):
    """The state an item is written with. A tombstone keeps the last known fields.

    NamedTuples on the write path for speed, as `CatalogRow` on the read path.
    """

    key: str
    size: int
    mtime: float
    etag: str | None
    version: str | None
    content_type: str | None
    media_kind: str | None
    order_token: str | None
    observed_at: float
    deleted: bool = False
    verify: bool = False
    history: str | None = None


class ItemWrite(NamedTuple):
    op: Op
    state: ItemState


class Item(NamedTuple):
    """One item as users and manifest builders read it (a tuple: manifests read millions)."""

    dataset: str
    driver: str
    key: str
    size: int
    mtime: float
    etag: str | None
    version: str | None
    content_type: str | None
    media_kind: str | None
    order_token: str | None
    observed_at: float
    deleted: bool
    change_id: int
    verify: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    dataset: str
    driver: str
    key: str
    op: Op
    size: int
    etag: str | None
    version: str | None
    at: float
    run_id: int | None


@dataclass(slots=True)
class RunCounts:
    listed: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "listed": self.listed,
            "added": self.added,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
        }


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    dataset: str
    driver: str
    status: RunStatus
    started_at: float
    heartbeat_at: float
    finished_at: float | None
    counts: RunCounts
    errors: tuple[str, ...]
    reason: str | None
    host: str
    pid: int
    #: The key range the run reconciled; None: the whole driver.
    shard: Shard | None = None


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    name: str
    drivers: tuple[str, ...]
    items: int
    bytes: int
    deleted: int
    last_run: SyncRun | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: float
    source: str
    reason: str
    payload: str
    message_id: str = ""
    #: Deliveries of the same message (by source and id) since the first.
    attempts: int = 1


@dataclass(slots=True)
class WriteResult:
    applied: list[ItemWrite] = field(default_factory=list)
    first_change_id: int = 0


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a run writes under: every write checks that `epoch` is still the lease's."""

    name: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: str
    epoch: int
    expires_at: float
    renewed_at: float


#: What the outbox tells webhooks of (`Webhook.events` in the config).
OutboxKind = Literal["sync.completed", "sync.aborted", "items.changed"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event for webhooks, written in the transaction that made it true. `payload` is
    the JSON body as sent (`{"type", "timestamp", "data"}`, Standard Webhooks' shape)."""

    id: int
    kind: str
    dataset: str
    payload: str
    created_at: float


@dataclass(frozen=True, slots=True)
class WebhookState:
    """How far one webhook's delivery got, and when it is tried again."""

    name: str
    #: Every outbox row up to this id is done for this webhook (delivered, or not its own).
    last_id: int = 0
    #: After a failed attempt: the message covers this webhook's rows up to this id, so that
    #: a retry sends the same rows under the same webhook-id (0: nothing pending).
    pending_through: int = 0
    #: Failed attempts of the pending message.
    attempts: int = 0
    #: Epoch seconds; no attempt before.
    next_attempt_at: float = 0.0
    last_error: str | None = None


class RunConflict(Exception):
    """Another live sync run holds the same dataset and driver."""


class WriteTx(Protocol):
    """One write transaction holding the catalog's writer lock."""

    def last_change_id(self) -> int: ...

    def rows(self, dataset_id: int, driver_id: int, keys: Collection[str]) -> dict[str, CatalogRow]:
        """Current rows (tombstones included) for `keys`, read under the writer lock."""
        ...

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
        """Upsert items and append one change per applied write.

        With `guard`, a write applies only where the item is absent or its last change id is
        at most `guard` (nothing newer touched it). When the change counter still equals
        `expect_last`, nobody else wrote since, and the checks are skipped.
        """
        ...

    def dead_letter(self, source: str, reason: str, payload: str, message_id: str = "") -> None: ...

    def discard_dead_letter(self, letter_id: int) -> None:
        """Remove a dead letter whose message this transaction applies (a retry)."""
        ...

    def heartbeat(self, run_id: int, counts: RunCounts) -> None: ...

    def outbox(self, kind: OutboxKind, dataset: str, data: Mapping[str, Any]) -> int:
        """Queue an event for webhooks, committed (or not) with this transaction; its id."""
        ...

    def check_fence(self, fence: Fence) -> None:
        """Raise `LeaseLost` unless `fence.epoch` is still the lease's epoch; until this
        transaction ends, nobody can claim the lease."""
        ...


class Catalog(Protocol):
    url: str

    def close(self) -> None: ...

    def reconnect(self) -> None:
        """Drop the connection and open a new one (after `CatalogUnavailable`)."""
        ...

    def find_id(self, kind: Literal["dataset", "driver"], name: str) -> int | None:
        """The id of an existing dataset or driver, without creating it."""
        ...

    def dataset_id(self, name: str) -> int:
        """The id of dataset `name`, created if new."""
        ...

    def driver_id(self, name: str, provider: str, bucket: str, prefix: str) -> int:
        """The id of driver `name`, created (or its location updated) as needed."""
        ...

    def last_change_id(self) -> int: ...

    def scan(
        self, dataset_id: int, driver_id: int, start_after: str | None = None
    ) -> Iterator[RawRow]:
        """Every row of one dataset and driver, tombstones included, in key byte order.

        Rows are plain tuples in `CatalogRow` field order (`CatalogRow._make(row)` names
        them): the merge reads millions and only wraps the few that differ.
        """
        ...

    def transaction(self) -> AbstractContextManager[WriteTx]: ...

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
        """Record a run `running` (of one key range, with `shard`). A live run of the same
        pair whose range overlaps raises `RunConflict`, unless `takeover` and it is of the
        same range (the caller holds that range's lease, so the run's replica lost it)."""
        ...

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        counts: RunCounts | None,
        errors: Sequence[str] = (),
        reason: str | None = None,
    ) -> None:
        """End a run. `counts` None keeps those its last committed batch stored."""
        ...

    def datasets(self) -> list[DatasetSummary]: ...

    def items(
        self,
        dataset: str,
        *,
        prefix: str = "",
        after: tuple[str, str] | None = None,
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> Iterator[Item]:
        """Items of `dataset`, streamed in (driver, key) order; `after` is (driver, key)."""
        ...

    def changes(
        self, dataset: str, since: int = 0, limit: int | None = None
    ) -> Iterator[Change]: ...

    def count_items(
        self, dataset: str, *, prefix: str = "", include_deleted: bool = False
    ) -> int: ...

    def count_changes(self, dataset: str, since: int = 0) -> int: ...

    def runs(self, dataset: str | None = None, limit: int = 20) -> list[SyncRun]: ...

    def run_by_id(self, run_id: int) -> SyncRun | None: ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def dead_letter_by_id(self, letter_id: int) -> DeadLetter | None: ...

    def discard_dead_letter(self, letter_id: int) -> bool:
        """Remove one dead letter; False when there was none with that id."""
        ...

    # -- leases and schedule slots, for the daemon's replicas -------------------------------

    def claim_lease(self, name: str, owner: str, ttl: float) -> int | None:
        """Take lease `name` when it is free, expired or already `owner`'s; the new epoch,
        or None when another owner holds it (or is claiming it right now)."""
        ...

    def renew_lease(self, name: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend a held lease; False when it was lost (claimed by another since)."""
        ...

    def release_lease(self, name: str, owner: str, epoch: int) -> None:
        """Let another replica claim the lease now."""
        ...

    def leases(self) -> list[Lease]: ...

    def claim_slot(self, name: str, slot: int, owner: str) -> bool:
        """True for the one caller, across every replica, that gets to run this slot."""
        ...

    # -- the webhook outbox -----------------------------------------------------------------

    def outbox_after(self, after_id: int, limit: int = 100) -> list[OutboxRow]:
        """Outbox rows with ids above `after_id`, in id order (the order they committed)."""
        ...

    def outbox_last_id(self, before: float | None = None) -> int:
        """The newest outbox id (of the rows created before `before`, when given); 0: none."""
        ...

    def prune_outbox(self, older_than: float, through_id: int) -> int:
        """Delete rows created before `older_than` with ids up to `through_id` (every webhook
        is past them); how many."""
        ...

    def webhook_state(self, name: str) -> WebhookState | None: ...

    def save_webhook_state(self, state: WebhookState, fence: Fence | None = None) -> bool:
        """Store `state`; with `fence`, only while that lease is still at its epoch (False
        otherwise: another replica delivers now)."""
        ...

    # -- inventory reports ------------------------------------------------------------------

    def change_id_at(self, ts: float) -> int:
        """The newest change id written before `ts` (0: none)."""
        ...

    def change_mark(self, change_id: int) -> tuple[str, float] | None: ...

    def rows_changed_since(
        self, dataset_id: int, driver_id: int, since: int, limit: int
    ) -> list[RawRow] | None: ...

    def inventory_applied(
        self, driver_id: int, shard: Shard | None = None
    ) -> InventoryApplied | None: ...

    def save_inventory_applied(
        self, driver_id: int, applied: InventoryApplied, shard: Shard | None = None
    ) -> None: ...

    # -- labeling targets -------------------------------------------------------------------

    def rows_of(self, dataset: str, driver: str, keys: Collection[str]) -> dict[str, Item]:
        """The items (tombstones included) of `keys` under one dataset and driver."""
        ...

    def push_state(self, target: str) -> PushState | None: ...

    def save_push_state(self, state: PushState) -> None: ...

    def task_links(
        self, target: str, driver: str, keys: Collection[str]
    ) -> dict[str, TaskLink]: ...

    def all_task_links(self, target: str) -> Iterator[TaskLink]: ...

    def count_pending_links(self, target: str) -> int: ...

    def save_task_links(self, target: str, links: Sequence[TaskLink]) -> None: ...

    def drop_task_links(self, target: str, keys: Sequence[tuple[str, str]]) -> None: ...

    def begin_push_run(self, target: str, dataset: str) -> int: ...

    def finish_push_run(
        self,
        run_id: int,
        status: RunStatus,
        counts: PushCounts,
        pushed_through: int,
        errors: Sequence[str] = (),
        reason: str | None = None,
    ) -> None: ...

    def push_runs(self, target: str | None = None, limit: int = 20) -> list[PushRun]: ...


@dataclass(frozen=True, slots=True)
class TaskLink:
    """Which labeling task an item became in a target. `task_id` None: an import was sent
    and its answer not yet stored (a crash there is settled by checking the project)."""

    driver: str
    key: str
    task_id: int | None
    etag: str | None
    version: str | None
    change_id: int
    #: "deleted" when the item is gone but its task was kept (it holds human work).
    marked: str | None = None


@dataclass(frozen=True, slots=True)
class PushState:
    target: str
    #: Every change up to this id is in the target.
    pushed_through: int
    #: When the whole project was last checked against the dataset (epoch seconds; 0: never).
    verified_at: float


@dataclass(slots=True)
class PushCounts:
    imported: int = 0
    updated: int = 0
    deleted: int = 0
    #: Tasks of deleted items kept because they hold annotations or drafts.
    kept: int = 0
    unchanged: int = 0
    #: HTTP requests that changed the project.
    writes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "deleted": self.deleted,
            "kept": self.kept,
            "unchanged": self.unchanged,
            "writes": self.writes,
        }


@dataclass(frozen=True, slots=True)
class PushRun:
    id: int
    target: str
    dataset: str
    status: RunStatus
    started_at: float
    finished_at: float | None
    pushed_through: int
    counts: PushCounts
    errors: tuple[str, ...]
    reason: str | None
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class InventoryApplied:
    """The newest inventory report applied to a driver."""

    taken_at: float
    manifest: str
    #: A fingerprint of the driver's prefix, include, exclude and skip rules then: while it
    #: holds, every catalog row passed the same rules, and only new keys need checking.
    key_filter: str
