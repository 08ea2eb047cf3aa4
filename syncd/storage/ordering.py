"""Key order for stores that do not promise it.

`sort_listing` sorts with bounded memory: runs of `run_size` records are sorted in memory,
spilled to temporary files, and merged back, as rclone's sorter does. (A store that does
promise order is checked by `syncd.diff.diff` as it merges.)
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from syncd.storage.types import Listed


def _read_run(handle: IO[bytes]) -> Iterator[Listed]:
    handle.seek(0)
    unpickler = pickle.Unpickler(handle)
    while True:
        try:
            chunk: list[Listed] = unpickler.load()
        except EOFError:
            return
        yield from chunk


def _spill(batch: list[Listed]) -> IO[bytes]:
    handle = tempfile.TemporaryFile(prefix="syncd-sort-")
    for start in range(0, len(batch), 4096):
        pickle.dump(batch[start : start + 4096], handle, protocol=pickle.HIGHEST_PROTOCOL)
    return handle


def sort_listing(listing: Iterable[Listed], run_size: int = 200_000) -> Iterator[Listed]:
    """Yield the listing in key order, holding at most `run_size` records in memory.

    Duplicate keys (a store that lists an object twice) keep their last occurrence.
    """
    runs: list[IO[bytes]] = []
    batch: list[Listed] = []
    try:
        for info in listing:
            batch.append(info)
            if len(batch) >= run_size:
                batch.sort(key=_key)
                runs.append(_spill(batch))
                batch = []
        batch.sort(key=_key)
        if not runs:
            merged: Iterator[Listed] = iter(batch)
        else:
            runs.append(_spill(batch))
            batch = []
            merged = heapq.merge(*(_read_run(run) for run in runs), key=_key)
        pending: Listed | None = None
        for info in merged:
            if pending is not None and pending.key != info.key:
                yield pending
            pending = info
        if pending is not None:
            yield pending
    finally:
        for run in runs:
            run.close()


def _key(info: Listed) -> str:
    return info.key
