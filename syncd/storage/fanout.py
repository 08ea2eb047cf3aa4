"""Prefix fan-out: list a bucket's top-level prefixes concurrently, yield one ordered stream.

Prefixes found by a delimiter listing are disjoint and sorted, so every key under one sorts
before every key under the next: their streams are concatenated in order, and the objects
that sit directly at the top level are merged in. Workers run ahead on the next prefixes, each
into a bounded queue, so memory stays bounded by `concurrency * queue_size` records.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Iterator

from syncd.storage.types import Listed, PrefixLister

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Worker:
    def __init__(self, store: PrefixLister, prefix: str, stop: threading.Event, size: int) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=size)
        self._store = store
        self._prefix = prefix
        self._stop = stop
        self.thread = threading.Thread(target=self._run, name=f"syncd-list:{prefix}", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            chunk: list[Listed] = []
            for info in self._store.list(self._prefix):
                chunk.append(info)
                if len(chunk) >= 500:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(_END)
        except BaseException as exc:
            self._put(_Failed(exc))

    def drain(self) -> Iterator[Listed]:
        while True:
            got = self.queue.get()
            if got is _END:
                return
            if isinstance(got, _Failed):
                raise got.error
            assert isinstance(got, list)
            yield from got


def fan_out_listing(
    store: PrefixLister, prefix: str = "", *, concurrency: int = 8, queue_size: int = 8
) -> Iterator[Listed]:
    """Yield every object under `prefix`, listing up to `concurrency` sub-prefixes at once."""
    prefixes, direct = store.list_prefixes(prefix)
    if not prefixes:
        yield from direct
        return
    stop = threading.Event()
    try:
        yield from heapq.merge(
            direct, _in_order(store, prefixes, stop, concurrency, queue_size), key=_key
        )
    finally:
        stop.set()


def _in_order(
    store: PrefixLister, prefixes: list[str], stop: threading.Event, concurrency: int, size: int
) -> Iterator[Listed]:
    running: list[_Worker] = []
    upcoming = iter(prefixes)
    for name in upcoming:
        running.append(_Worker(store, name, stop, size))
        if len(running) >= concurrency:
            break
    while running:
        worker = running.pop(0)
        yield from worker.drain()
        following = next(upcoming, None)
        if following is not None:
            running.append(_Worker(store, following, stop, size))


def _key(info: Listed) -> str:
    return info.key
