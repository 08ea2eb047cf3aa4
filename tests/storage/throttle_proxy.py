"""An HTTP proxy in front of an emulator that answers some requests with 503 SlowDown, or
drops the connection, the way S3 does under load; it also records every request it saw."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.proxy import ProxyHandler, proxy

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Faults:
    """Every `every`-th request fails (0: none): alternately a 503 SlowDown and a dropped
    connection. `requests` holds (method, path) of every request, in arrival order."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.seen = 0
        self.injected = 0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def next_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            self.seen += 1
            self.requests.append((method, path))
            if not self.every or self.seen % self.every:
                return None
            self.injected += 1
            return "503" if self.injected % 2 else "reset"


@contextmanager
def throttling_proxy(upstream: str, every: int = 3) -> Iterator[tuple[str, Faults]]:
    faults = Faults(every)

    def before(handler: ProxyHandler, body: bytes | None) -> bool:
        fault = faults.next_fault(handler.command, handler.path)
        if fault == "503":
            handler.answer(503, SLOW_DOWN, "application/xml")
        elif fault == "reset":
            handler.drop()
        return fault is not None

    with proxy(upstream, before) as url:
        yield url, faults
