"""A listing with a clock: a server that accepts the connection and then trickles bytes, or
says nothing, stops the listing with an error that says which, instead of holding a sync
forever.

The listing runs in a worker thread that hands entries over in small chunks; the reader
waits for them with a timeout. `stall` bounds the time without a single new entry (it must
exceed a request's read timeout plus its retries' backoff); `deadline` bounds the whole
listing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from syncd.errors import TransientError
from syncd.storage.types import Listed

_CHUNK = 500
_FLUSH_EVERY = 0.1
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def bounded(
    listing: Callable[[], Iterator[Listed]],
    *,
    stall: float,
    deadline: float | None,
    what: str,
) -> Iterator[Listed]:
    """Yield what `listing()` yields; raise `TransientError` when it stalls or overruns."""
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
            flushed = time.monotonic()
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
    started = time.monotonic()
    worker.start()
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now - started > deadline:
                raise TransientError(
                    f"{what}: the listing exceeded its deadline of {deadline:.0f}s "
                    "(listing_deadline)"
                )
            try:
                got = handoff.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() - progress[0] > stall:
                    raise TransientError(
                        f"{what}: the listing stalled: nothing arrived for {stall:.0f}s (the "
                        "server accepts the connection but does not answer; see read_timeout)"
                    ) from None
                continue
            if got is _END:
                return
            if isinstance(got, _Failed):
                raise got.error
            assert isinstance(got, list)
            yield from got
    finally:
        stop.set()
