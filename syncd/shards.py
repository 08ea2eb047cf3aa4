"""Key-range shards: a large driver split into ranges of keys reconciled independently.

A driver's `shards:` lists the keys where each shard after the first begins, in UTF-8 byte
order (Python's `str` order). Shard i holds the keys from its start (inclusive) to the next
one's (exclusive); the first starts at the first key and the last runs to the last. Each
shard is its own run, its own lease in `syncd run`, and its own `max_delete` budget, so
replicas share a billion-object driver and one shard's fault stops only that shard.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Shard:
    """Keys from `start` (inclusive) to `end` (exclusive; None: to the last key)."""

    index: int
    count: int
    start: str
    end: str | None

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"

    @property
    def state_key(self) -> str:
        """Names the range itself, so state kept for it never applies to another range
        after the boundaries change."""
        return json.dumps([self.start, self.end], ensure_ascii=False)

    def covers(self, key: str) -> bool:
        return key >= self.start and (self.end is None or key < self.end)

    def overlaps(self, start: str, end: str | None) -> bool:
        return (end is None or self.start < end) and (self.end is None or start < self.end)

    @property
    def list_after(self) -> str | None:
        """A key every key of the shard sorts after, close below `start`: a listing begins
        there. `start` with its last character one code point lower sorts before it (and
        so before every key at or past it); the few keys between are filtered out."""
        if not self.start:
            return None
        last = ord(self.start[-1])
        if last == 0:
            return self.start[:-1] or None
        below = last - 1
        if 0xD800 <= below <= 0xDFFF:
            below = 0xD7FF  # surrogates are not characters: no key holds one
        return self.start[:-1] + chr(below)


def log_fields(shard: Shard | None) -> dict[str, str]:
    """What a run's log lines carry to name its shard (nothing for a whole driver)."""
    return {} if shard is None else {"shard": shard.label}


def shards_of(boundaries: Iterable[str]) -> list[Shard]:
    """The shards `boundaries` (each shard's start after the first) cut keys into; none when
    there are none (the driver is one range)."""
    starts = ["", *boundaries]
    if len(starts) == 1:
        return []
    ends: list[str | None] = [*starts[1:], None]
    count = len(starts)
    return [Shard(i, count, starts[i], ends[i]) for i in range(count)]


def within(
    items: Iterable[T], shard: Shard | None, key: Callable[[T], str], *, ordered: bool
) -> Iterator[T]:
    """The items whose key the shard covers. In a stream `ordered` by key, the first key past
    the shard's end ends it (the rest of a listing is never read)."""
    if shard is None:
        yield from items
        return
    for item in items:
        k = key(item)
        if shard.end is not None and k >= shard.end:
            if ordered:
                return
            continue
        if k >= shard.start:
            yield item
