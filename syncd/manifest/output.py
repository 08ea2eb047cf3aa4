"""Where manifest text goes: stdout, one file, or numbered parts split by count or size."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO


class Parts:
    """Opens `out` (or `out-0001.ext`, `out-0002.ext`... once a limit is reached).

    Line-oriented writers call `write` (which starts a new part, beginning with `header`, when
    the current one is full) and `finish`; Encord JSON assembles its parts itself with
    `open`, `close` and `full`.
    """

    def __init__(self, out: str, max_items: int = 0, max_bytes: int = 0, header: str = "") -> None:
        self.out = out
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.header = header
        self.paths: list[str] = []
        self._handle: IO[str] | None = None
        self.items = 0
        self.bytes = 0
        self.split = out != "-" and (max_items > 0 or max_bytes > 0)
        self._unfinished: dict[str, IO[str]] = {}

    def full(self) -> bool:
        return bool(
            self.split
            and self.items
            and (
                (self.max_items and self.items >= self.max_items)
                or (self.max_bytes and self.bytes >= self.max_bytes)
            )
        )

    def open(self) -> IO[str]:
        if self.out == "-":
            self.paths.append("-")
            return sys.stdout
        path = Path(self.out)
        if self.split:
            path = path.with_name(f"{path.stem}-{len(self.paths) + 1:04d}{path.suffix}")
        self.paths.append(str(path))
        self.items = self.bytes = 0
        # Written under a temporary name and renamed when complete: a run that fails leaves
        # no half-written manifest where a finished one is expected.
        handle = open(f"{path}.partial", "w", encoding="utf-8", newline="")
        self._unfinished[handle.name] = handle
        return handle

    def close(self, handle: IO[str]) -> None:
        if handle is sys.stdout:
            handle.flush()
            return
        handle.close()
        del self._unfinished[handle.name]
        os.replace(handle.name, handle.name.removesuffix(".partial"))

    def wrote(self, text_length: int, items: int = 1) -> None:
        self.bytes += text_length
        self.items += items

    def prepare(self) -> bool:
        """Make sure a part with room is open; True when this call started a new one."""
        if self._handle is not None and not self.full():
            return False
        if self._handle is not None:
            self.close(self._handle)
        self._handle = self.open()
        if self.header:
            self._handle.write(self.header)
        return True

    def write(self, text: str, items: int = 1) -> None:
        self.prepare()
        assert self._handle is not None
        self._handle.write(text)
        self.wrote(len(text), items)

    def abort(self) -> None:
        """A failed run: close and remove what is half written (finished parts stay)."""
        self._handle = None
        for name, handle in self._unfinished.items():
            handle.close()
            Path(name).unlink(missing_ok=True)
        self._unfinished.clear()

    def finish(self) -> None:
        """Close the last part (an empty dataset still gets one, with its header)."""
        if self._handle is None:
            self.prepare()
        assert self._handle is not None
        self.close(self._handle)
        self._handle = None
