"""Which state a set of events leaves one object in (DESIGN invariant 3). Pure: no I/O.

The state is a function of the set of events seen, never of their arrival order:

- The *top* is the latest creation or removal (by ordering token, else by event time; at an
  equal token a removal is the later state). It gives the item its fields, and whether it
  is deleted.
- An S3 version removed for good (`VERSION_DELETED`) changes nothing when that version is
  known to be older than the top. When it is the top's own version, or a version of which
  nothing is known and whose removal came after the top, an older version may show again
  and the events do not say which: the item is marked for verification, never guessed.
  A later creation or delete marker settles it; so does a stat (`observed`), or a listing.
- To tell old versions from the top, the versions seen with their positions are kept (a few
  dozen per key, newest first; forgetting one can only cause a needless verification).

A row keeps this memory in its `history` column (JSON), which is empty for unversioned
buckets, GCS and Azure: there the top alone is the state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from syncd.catalog.types import CatalogRow, ItemState
from syncd.events.types import EventKind, ObjectEvent
from syncd.media import media_kind
from syncd.storage.types import ObjectInfo

#: Versions remembered per key.
KNOWN_VERSIONS = 32

Mark = tuple[str | None, float]


def later(a: Mark, b: Mark) -> bool:
    """True when position `a` comes after `b`: by token when both have one, else by time."""
    if a[0] is not None and b[0] is not None:
        return a[0] > b[0]
    return a[1] > b[1]


def _wins(event: ObjectEvent, top: Mark, top_deleted: bool) -> bool:
    mine = event.kind is EventKind.DELETED
    if event.token is not None and top[0] is not None:
        return (event.token, mine) > (top[0], top_deleted)
    return (event.event_time, mine) > (top[1], top_deleted)


@dataclass(slots=True)
class KeyState:
    """One object's state: its top observation, and what is known of its versions."""

    key: str
    size: int
    mtime: float
    etag: str | None
    version: str | None
    content_type: str | None
    token: str | None
    time: float
    deleted: bool
    #: False while nothing but removals of versions has been seen.
    seen: bool = True
    #: version -> position of its creation (S3 versioned buckets).
    known: dict[str, Mark] = field(default_factory=dict)
    #: version -> position of its removal, while the removal may have touched the top.
    removed: dict[str, Mark] = field(default_factory=dict)

    @property
    def top(self) -> Mark:
        return (self.token, self.time)

    @property
    def verify(self) -> bool:
        return bool(self.removed)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def of_row(cls, row: CatalogRow) -> KeyState:
        memory = json.loads(row.history) if row.history else {}
        state = cls(
            row.key,
            row.size,
            row.mtime,
            row.etag,
            row.version,
            row.content_type,
            row.order_token,
            row.observed_at,
            bool(memory.get("d", row.deleted)) if row.verify else bool(row.deleted),
            seen=bool(memory.get("s", True)),
            known={v: (m[0], m[1]) for v, m in memory.get("k", {}).items()},
            removed={v: (m[0], m[1]) for v, m in memory.get("r", {}).items()},
        )
        if state.version is not None and state.seen:
            state.known.setdefault(state.version, state.top)
        return state

    @classmethod
    def unseen(cls, key: str) -> KeyState:
        return cls(key, 0, 0.0, None, None, None, None, 0.0, True, seen=False)

    # -- events --------------------------------------------------------------------------

    def absorb(self, event: ObjectEvent) -> None:
        mark: Mark = (event.token, event.event_time)
        if event.kind is EventKind.VERSION_DELETED:
            if event.version is not None:
                before = self.removed.get(event.version)
                if before is None or later(mark, before):
                    self.removed[event.version] = mark
            return
        tracked = event.version is not None and event.provider == "s3"
        if tracked:
            assert event.version is not None
            before = self.known.get(event.version)
            if before is None or later(mark, before):
                self.known[event.version] = mark
        if self.seen and not _wins(event, self.top, self.deleted):
            return
        deleted = event.kind is EventKind.DELETED
        if event.size is not None:
            self.size = event.size
        elif not self.seen:
            self.size = 0
        mtime = event.mtime if event.mtime is not None else event.event_time
        if deleted:
            # A tombstone keeps the last known content fields.
            if not self.seen:
                self.mtime = mtime
                self.etag = event.etag
        else:
            self.mtime = mtime
            self.etag = event.etag
        self.version = event.version
        self.content_type = event.content_type or self.content_type
        self.token = event.token
        self.time = event.event_time
        self.deleted = deleted
        self.seen = True

    def observed(self, info: ObjectInfo | None) -> None:
        """A stat taken after every event so far (None: the object does not exist). It is
        the state, at the latest position those events reached."""
        marks = [self.top, *self.removed.values()]
        tokens = [m[0] for m in marks if m[0] is not None]
        self.token = max(tokens) if tokens else None
        self.time = max(m[1] for m in marks)
        if info is not None:
            self.size, self.mtime, self.etag, self.version = (
                info.size,
                info.mtime,
                info.etag,
                info.version,
            )
            self.content_type = info.content_type or self.content_type
        self.deleted = info is None
        self.seen = True
        self.known = {info.version: self.top} if info is not None and info.version else {}
        self.removed = {}

    def settle(self) -> None:
        """Forget removals that cannot have touched the top, and old versions past the bound."""
        for version, mark in list(self.removed.items()):
            if not self.seen:
                continue
            if version == self.version:
                continue  # the top's own version is gone
            if version in self.known or not later(mark, self.top):
                del self.removed[version]
        if len(self.known) > KNOWN_VERSIONS:
            newest = sorted(self.known.items(), key=lambda kv: (kv[1][0] or "", kv[1][1]))
            self.known = dict(newest[-KNOWN_VERSIONS:])

    # -- writing -------------------------------------------------------------------------

    def item_state(self) -> ItemState:
        memory: dict[str, object] = {}
        known = {v: list(m) for v, m in self.known.items() if v != self.version}
        if known:
            memory["k"] = known
        if self.removed:
            memory["r"] = {v: list(m) for v, m in self.removed.items()}
            memory["d"] = self.deleted
            if not self.seen:
                memory["s"] = False
        return ItemState(
            key=self.key,
            size=self.size,
            mtime=self.mtime,
            etag=self.etag,
            version=self.version,
            content_type=self.content_type,
            media_kind=media_kind(self.key, self.content_type),
            order_token=self.token,
            observed_at=self.time,
            # An item to verify may exist (an older version shows again): it is listed as
            # live, with the fields it last had, until a stat or a listing says otherwise.
            deleted=self.deleted and not self.verify,
            verify=self.verify,
            history=json.dumps(memory, separators=(",", ":")) if memory else None,
        )


def fold(row: CatalogRow | None, key: str, events: Iterable[ObjectEvent]) -> ItemState | None:
    """The state `events` leave the item in, or None when they change nothing.

    Versions learnt without a visible change are not written (forgetting them costs at most
    a needless verification later); removals that may have touched the top always are.
    """
    state = KeyState.of_row(row) if row is not None else KeyState.unseen(key)
    for event in events:
        state.absorb(event)
    state.settle()
    new = state.item_state()
    if row is not None and _visible(new) == _visible_row(row) and _removed(new) == _removed(row):
        return None
    return new


def _removed(state: ItemState | CatalogRow) -> object:
    return json.loads(state.history).get("r") if state.history else None


def _visible(state: ItemState) -> tuple[object, ...]:
    return (
        state.size,
        state.mtime,
        state.etag,
        state.version,
        state.content_type,
        state.order_token,
        state.observed_at,
        bool(state.deleted),
        bool(state.verify),
    )


def _visible_row(row: CatalogRow) -> tuple[object, ...]:
    return (
        row.size,
        row.mtime,
        row.etag,
        row.version,
        row.content_type,
        row.order_token,
        row.observed_at,
        bool(row.deleted),
        bool(row.verify),
    )
