"""Which keys a driver syncs: include/exclude globs and the skip rule for hidden/partial files.

Glob rules (gitignore-like): a pattern without `/` matches the basename; a pattern with `/`
matches the key relative to the driver's prefix; `*` stays within one path segment, `**`
crosses segments, `?` is one character, `[abc]` a set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from syncd.storage.types import ObjectInfo


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class _Glob:
    regex: re.Pattern[str]
    basename_only: bool

    @classmethod
    def of(cls, pattern: str) -> _Glob:
        return cls(glob_to_regex(pattern.lstrip("/")), "/" not in pattern)

    def matches(self, relative: str) -> bool:
        target = relative.rsplit("/", 1)[-1] if self.basename_only else relative
        return self.regex.match(target) is not None


class KeyFilter:
    """Decides whether a key belongs to a driver."""

    def __init__(
        self,
        prefix: str = "",
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        skip: Iterable[str] = (),
    ) -> None:
        self.prefix = prefix
        self._include = [_Glob.of(p) for p in include]
        self._exclude = [_Glob.of(p) for p in exclude]
        self._skip = tuple(skip)
        # One regex for every skip pattern and every path segment: this runs once per listed
        # key, so it must not loop over patterns and segments in Python.
        # Keys arrive sorted, so neighbours share their folder: its verdict is cached, and
        # only the basename is matched per key. (Not thread-safe; one filter per run.)
        segment = "|".join(f"(?:{glob_to_regex(p).pattern[:-2]})" for p in self._skip)
        self._skip_any = (
            re.compile(f"(?:^|/)(?:{segment})(?:/|\\Z)", re.DOTALL) if segment else None
        )
        self._skip_name = re.compile(f"(?:{segment})\\Z", re.DOTALL) if segment else None
        self._folder = ""
        self._folder_skipped = False

    @property
    def passes_everything(self) -> bool:
        return not (self._include or self._exclude or self._skip)

    def skips_segment(self, name: str) -> bool:
        """True when a single path segment (file or folder name) matches the skip rule."""
        return self._skip_name is not None and self._skip_name.match(name) is not None

    def _skips(self, relative: str) -> bool:
        assert self._skip_name is not None and self._skip_any is not None
        slash = relative.rfind("/")
        if self._skip_name.match(relative, slash + 1) is not None:
            return True
        if slash <= 0:
            return False
        folder = relative[:slash]
        if folder != self._folder:
            self._folder = folder
            self._folder_skipped = self._skip_any.search(folder) is not None
        return self._folder_skipped

    def accepts(self, key: str) -> bool:
        prefix = self.prefix
        if not key.startswith(prefix):
            return False
        relative = key[len(prefix) :] if prefix else key
        if self._skip_name is not None and self._skips(relative):
            return False
        if self._include and not any(g.matches(relative) for g in self._include):
            return False
        return not self._exclude or not any(g.matches(relative) for g in self._exclude)

    def filter(
        self, listing: Iterable[ObjectInfo], rejected: Callable[[ObjectInfo], None] | None = None
    ) -> Iterator[ObjectInfo]:
        """The objects of `listing` this filter accepts; `rejected` hears of the others."""
        if self.passes_everything:
            yield from listing
            return
        if self._include or self._exclude or self._skip_name is None:
            accepts = self.accepts
            for info in listing:
                if accepts(info.key):
                    yield info
                elif rejected is not None:
                    rejected(info)
            return
        # Only the skip rule: the per-key work of a sync, inlined.
        prefix = self.prefix
        plen = len(prefix)
        match_name = self._skip_name.match
        search_folder = self._skip_any.search if self._skip_any is not None else None
        folder = ""
        folder_skipped = False
        for info in listing:
            key = info.key
            slash = key.rfind("/")
            if key.startswith(prefix) and match_name(key, max(slash + 1, plen)) is None:
                if slash <= plen:
                    yield info
                    continue
                if key[plen:slash] != folder:
                    folder = key[plen:slash]
                    folder_skipped = search_folder is not None and search_folder(folder) is not None
                if not folder_skipped:
                    yield info
                    continue
            if rejected is not None:
                rejected(info)
