"""A queue source's loop: receive, apply, acknowledge only what was committed.

Every queue syncd reads (SQS, Azure Storage queues, Pub/Sub pull subscriptions) offers the
same four things, which is all this loop needs: receive a batch (it stays hidden while
held), acknowledge (delete) messages, release them (visible again now), and extend the time
they stay hidden. A batch is applied in one call of the event core; while it runs, a timer
keeps extending it, so a slow catalog never lets a message reappear mid-batch. What the
core could not commit is released, never acknowledged; what could not be understood was
dead-lettered in the catalog and is acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from syncd.events.apply import BatchResult, EventApplier, Stat, apply_all
from syncd.events.types import Message

log = structlog.get_logger("syncd.daemon")


@dataclass(slots=True)
class Received:
    """One message as its queue gave it: the parsed message and the queue's handle on it."""

    message: Message
    handle: Any
    #: When the message reached this replica (for the freshness measure).
    received_at: float


class Queue(Protocol):
    name: str

    def receive(self, wait: float) -> list[Received]: ...

    def ack(self, handles: Sequence[Any]) -> None: ...

    def release(self, handles: Sequence[Any]) -> None: ...

    def extend(self, handles: Sequence[Any], seconds: float) -> list[Any]:
        """Keep messages hidden `seconds` longer; the handles to use from now on (an Azure
        queue gives a new receipt each time)."""
        ...


class _Extender:
    """Extends a batch's visibility every half period until stopped."""

    def __init__(self, queue: Queue, handles: list[Any], seconds: float) -> None:
        self.queue = queue
        self.handles = handles
        self.seconds = seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncd-extend", daemon=True)

    def __enter__(self) -> _Extender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.seconds / 2):
            try:
                self.handles = self.queue.extend(self.handles, self.seconds)
            except Exception as exc:  # the batch goes on; at worst a message shows twice
                log.warning("could not extend visibility", queue=self.queue.name, error=str(exc))


@dataclass(slots=True)
class ConsumerStats:
    batches: int = 0
    applied: int = 0
    dead_lettered: int = 0
    failed: int = 0
    errors: int = 0
    last_error: str | None = None
    #: The last attempt to reach the queue failed (for /readyz).
    failing: bool = False
    #: receive -> commit, seconds, of recent messages (for freshness figures).
    latencies: list[float] | None = None


def consume(
    queue: Queue,
    applier: EventApplier,
    *,
    stop: threading.Event,
    once: bool,
    wait: float,
    visibility: float,
    stat: Stat | None = None,
    stats: ConsumerStats | None = None,
    on_batch: Callable[[BatchResult, list[float]], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Until `stop` (or, with `once`, until the queue is empty): one batch at a time."""
    stats = stats if stats is not None else ConsumerStats()
    while not stop.is_set():
        try:
            batch = queue.receive(min(wait, 1.0) if once else wait)
        except Exception as exc:
            stats.errors += 1
            stats.last_error = str(exc)
            stats.failing = True
            if on_error is not None:
                on_error(exc)
            log.warning("receive failed; retrying", queue=queue.name, error=str(exc))
            stop.wait(min(5.0, wait or 1.0))
            continue
        stats.failing = False
        if not batch:
            if once:
                return
            continue
        handles = [r.handle for r in batch]
        with _Extender(queue, handles, visibility) as extender:
            result = apply_all(applier, [r.message for r in batch])
        handles = extender.handles
        failed = set(result.failed)
        done = [h for r, h in zip(batch, handles, strict=True) if r.message.id not in failed]
        back = [h for r, h in zip(batch, handles, strict=True) if r.message.id in failed]
        # Acknowledged only now, after the commit apply_all returned from.
        if done:
            queue.ack(done)
        if back:
            queue.release(back)
        now = time.time()
        lags = [now - r.received_at for r in batch]
        if stats.latencies is not None:
            stats.latencies.extend(lags)
            del stats.latencies[:-10_000]
        log.debug(
            "batch applied",
            queue=queue.name,
            messages=len(batch),
            applied=result.applied,
            dead_lettered=result.dead_lettered,
            released=len(back),
            seconds=round(now - batch[0].received_at, 4),
        )
        stats.batches += 1
        stats.applied += result.applied
        stats.dead_lettered += result.dead_lettered
        stats.failed += len(result.failed)
        if result.unsettled and stat is not None:
            try:
                applier.settle(result.unsettled, stat)
            except Exception as exc:
                log.warning("items left to verify", count=len(result.unsettled), error=str(exc))
        if on_batch is not None:
            on_batch(result, lags)
