"""Listings with a clock, so that a server that accepts the connection and then trickles
bytes, or says nothing, stops a sync with an error that says which instead of holding it
forever.

- `Deadline` bounds a whole listing: the reader looks at it between batches, in its own
  thread, at no cost a listing would notice.
- `bounded` bounds the time between entries of a listing made by an SDK that cannot be
  interrupted mid-request: the listing runs in a worker thread and the reader waits with a
  timeout. (A thread costs a CPU-bound listing such as a local walk a third of its speed, so
  only network stores use it.)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from syncd.errors import Stopped, TransientError
from syncd.storage.types import Listed

_CHUNK = 500
_FLUSH_EVERY = 0.1
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Deadline:
    """The end of a whole listing, looked at between batches by whoever reads it; and a
    stop signal (a daemon shutting down) looked at in the same places."""

    def __init__(
        self, seconds: float | None, what: str, stop: threading.Event | None = None
    ) -> None:
        self.seconds = seconds
        self.what = what
        self.stop = stop
        self.ends = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped(f"{self.what}: stopped (shutting down); nothing more written")
        if self.ends is not None and time.monotonic() > self.ends:
            raise TransientError(
                f"{self.what}: the listing exceeded its deadline of {self.seconds:.0f}s "
                "(listing_deadline)"
            )


def stalled(what: str, seconds: float) -> TransientError:
    return TransientError(
        f"{what}: no complete answer for {seconds:.0f}s: the server accepts the connection but "
        "does not answer (raise read_timeout if it is only slow)"
    )


def bounded(
    listing: Callable[[], Iterator[Listed]],
    *,
    stall: float,
    what: str,
) -> Iterator[Listed]:
    """Yield what `listing()` yields; raise `TransientError` when no entry arrives for
    `stall` seconds."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=8)
    stop = threading.Event()
    progress = [time.monotonic()]

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            chunk: list[Listed] = []
            flushed = 0.0  # the first entry goes at once
            for entry in listing():
                chunk.append(entry)
                now = time.monotonic()
                progress[0] = now
                if len(chunk) >= _CHUNK or now - flushed >= _FLUSH_EVERY:
                    if not put(chunk):
                        return
                    chunk, flushed = [], now
            if chunk and not put(chunk):
                return
            put(_END)
        except BaseException as exc:
            put(_Failed(exc))

    worker = threading.Thread(target=run, name=f"syncd-listing:{what}", daemon=True)
    worker.start()
    try:
        while True:
            try:
                got = handoff.get(timeout=min(0.5, stall))
            except queue.Empty:
                if time.monotonic() - progress[0] > stall:
                    raise stalled(what, stall) from None
                continue
            if got is _END:
                return
            if isinstance(got, _Failed):
                raise got.error
            assert isinstance(got, list)
            yield from got
    finally:
        stop.set()
