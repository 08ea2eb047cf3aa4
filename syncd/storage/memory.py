"""An in-memory store: a real backend for reconciler tests and benchmarks."""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Iterator
from urllib.parse import quote

from syncd.errors import NotFound
from syncd.storage.types import ObjectInfo


class MemoryStore:
    """Objects held in a dict with a sorted key index."""

    sorted_listing = True
    skipped_by_store: tuple[str, ...] = ()

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._objects: dict[str, tuple[ObjectInfo, bytes]] = {}
        self._keys: list[str] = []

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        start = prefix if start_after is None or start_after < prefix else start_after
        index = bisect.bisect_left(self._keys, start)
        keys = self._keys
        while index < len(keys):
            key = keys[index]
            index += 1
            if start_after is not None and key <= start_after:
                continue
            if not key.startswith(prefix):
                return
            yield self._objects[key][0]

    def stat(self, key: str) -> ObjectInfo:
        try:
            return self._objects[key][0]
        except KeyError:
            raise NotFound(f"{self.name}: {key} does not exist") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            data = self._objects[key][1]
        except KeyError:
            raise NotFound(f"{self.name}: {key} does not exist") from None
        return data[start : start + length]

    def url(self, key: str) -> str:
        return f"memory://{self.name}/{quote(key)}"

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        info = ObjectInfo(
            key=key,
            size=len(data),
            mtime=time.time(),
            etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            content_type=content_type,
        )
        if key not in self._objects:
            bisect.insort(self._keys, key)
        self._objects[key] = (info, data)
        return info

    def delete(self, key: str) -> None:
        if self._objects.pop(key, None) is None:
            raise NotFound(f"{self.name}: {key} does not exist")
        self._keys.pop(bisect.bisect_left(self._keys, key))
