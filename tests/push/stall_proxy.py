"""Proxies in front of Label Studio: one forwards the Nth import, lets the server store it,
and never answers (the moment a push has created tasks but not learned their ids); one
refuses every import with a status a proxy in front of the server would answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.proxy import ProxyHandler, Upstream, proxy


def _import(handler: ProxyHandler) -> bool:
    return handler.command == "POST" and "/import" in handler.path


@contextmanager
def stalling_proxy(upstream: str, stall_on: int, stalled: threading.Event) -> Iterator[str]:
    imports = 0
    lock = threading.Lock()
    released = threading.Event()

    def after(handler: ProxyHandler, got: Upstream) -> bool:
        nonlocal imports
        if not _import(handler):
            return False
        with lock:
            imports += 1
            if imports != stall_on:
                return False
        stalled.set()
        released.wait()
        return True

    with proxy(upstream, after=after) as url:
        try:
            yield url
        finally:
            released.set()  # before the server stops: the held answer's thread ends


@contextmanager
def refusing_proxy(upstream: str, status: int, body: bytes) -> Iterator[str]:
    def before(handler: ProxyHandler, sent: bytes | None) -> bool:
        if _import(handler):
            handler.answer(status, body, "text/html")
            return True
        return False

    with proxy(upstream, before) as url:
        yield url
