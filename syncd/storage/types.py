"""The storage protocol: a small required core and optional capabilities.

Every backend yields frozen `ObjectInfo` records; SDK objects never leave the backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol, runtime_checkable


class ObjectInfo(NamedTuple):
    """One object as a listing or a stat sees it.

    An immutable record; a NamedTuple rather than a frozen dataclass because a listing makes
    millions of them and a tuple is built several times faster.

    `mtime` is seconds since the epoch (UTC). `version` is the provider's version id or
    generation; `order_token` is a comparable token of the object's state where the
    provider gives one in listings (GCS generation), else None.
    """

    key: str
    size: int
    mtime: float
    etag: str | None = None
    version: str | None = None
    content_type: str | None = None
    order_token: str | None = None


class Gap(NamedTuple):
    """A part of a listing the store could not, or would not, read, in key order with the
    objects around it.

    `key` is one object's key, or a folder prefix ending in `/` that covers every key under
    it. With `error`, the part could not be read (a folder without permission, a path too
    long, a file whose content hash failed): the reconciler holds every delete and update
    under it and the run ends `completed_with_errors`. Without, it was left out on purpose
    (a symlink cycle, a link out of the folder) and is reported as a warning.
    """

    key: str
    reason: str
    error: bool = True

    def covers(self, key: str) -> bool:
        return key.startswith(self.key) if self.key.endswith("/") else key == self.key


#: What a listing yields: objects, and the gaps between them.
Listed = ObjectInfo | Gap


@runtime_checkable
class Lister(Protocol):
    """What the reconciler needs: a named listing.

    Key order is UTF-8 byte order, which for valid keys equals Python's `str` ordering
    (UTF-8 preserves code-point order), so keys are compared as plain strings. A listing
    that fails outright raises; one that could read only part of the objects yields a
    `Gap` for each part it missed, so that no wrapper can lose that fact.
    """

    name: str
    #: True when `list` is guaranteed to yield keys in UTF-8 byte order.
    sorted_listing: bool

    @property
    def skipped_by_store(self) -> tuple[str, ...]:
        """The skip patterns (hidden and partial names) the listing already leaves out as it
        walks; the reconciler does not test them again. () for stores that list everything."""
        ...

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
        """Yield every object whose key starts with `prefix` (after `start_after`)."""
        ...


@runtime_checkable
class Store(Lister, Protocol):
    """The required core every backend implements."""

    def stat(self, key: str) -> ObjectInfo:
        """Return the object's info; raise `NotFound` if it does not exist."""
        ...

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to `length` bytes from offset `start`."""
        ...

    def url(self, key: str) -> str:
        """Return the object's public (unsigned) URL."""
        ...


@runtime_checkable
class Presigner(Protocol):
    """A store that can issue time-limited signed URLs."""

    def signed_url(self, key: str, ttl_seconds: int) -> str: ...


@runtime_checkable
class Writer(Protocol):
    """A store that tests and tools can write to."""

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...

    def delete(self, key: str) -> None: ...


@runtime_checkable
class MetadataReader(Protocol):
    """A store that keeps user metadata (S3 `x-amz-meta-*`, GCS metadata, Azure metadata)."""

    def metadata(self, key: str) -> dict[str, str]: ...


#: A delimiter listing's two halves, named so that stores (whose `list` method shadows the
#: builtin inside their class body) can annotate them.
Prefixes = list[str]
Objects = list[ObjectInfo]


@runtime_checkable
class PrefixLister(Lister, Protocol):
    """A store that can list one level below a prefix (a delimiter listing), for fan-out."""

    def list_prefixes(self, prefix: str = "") -> tuple[list[str], list[ObjectInfo]]:
        """Sorted sub-prefixes one level below `prefix` (ending in `/`), and sorted objects
        directly at that level."""
        ...
