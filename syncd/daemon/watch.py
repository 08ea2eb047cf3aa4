"""The event source of a local folder driver: watchdog's events, settled and coalesced.

A file is ingested once it has *settled*. After a close-after-write (inotify's
IN_CLOSE_WRITE) or a rename into place it must keep its size and mtime for a short grace;
otherwise (a writer that keeps the file open, or the polling observer, which sees no
closes) for `settle` seconds. Stability is judged from two stats taken at least half the wait
apart with no event in between, so a write that watchdog did not report still restarts the
wait, and a file that is still growing is never emitted.

Whatever happens to one key before it settles becomes one event, decided by what the file
*is* when it settles: present, CREATED with its size and mtime; absent, DELETED. So a late
or reordered watchdog event can never be emitted as a state the folder is not in. A key that
vanishes before it settles is DELETED only if it may have existed before: a window that
began with a create (an IN_CREATE, or a name the last poll did not see) means the name was
new, and then nothing is emitted. That needs no memory of emitted keys, and it is exact as
long as no event was lost; losing events is an overflow, which asks for a rescan.

What watchdog 7.1 reports, and how it reaches the daemon (`on_rescan(folder, reason)`, the
folder as a listing prefix: `""` for the root, else `"a/b/"`):

- IN_Q_OVERFLOW: `InotifyFD.handle_event` hands it to each watch group, which rebuilds its
  watches; nothing reaches an event handler. `_InotifyFD` hooks `handle_event` and asks for
  a rescan of the root (the queue is the whole watch's).
- ENOSPC from inotify_add_watch: `InotifyFD.add_callback` raises it, and the watch group
  swallows it for every folder but the root. `_InotifyFD` hooks `add_callback`, so each
  folder left unwatched (at start, when created later, or when an overflow rebuilds the
  watches) is a rescan request. For the root, `start()` raises it: use `polling=True`.
- Folders: the full-events inotify emitter reports a folder moved inside the tree as one
  move per file (it walks the destination), a folder moved in from outside as creations of
  its files, and a folder moved out as a move without destination; its files are not known
  here, so that folder is a rescan request. The polling observer diffs snapshots and reports
  every file itself.

Not covered: symlinks are not followed (as LocalStore by default, a link is not a file);
names that are not valid UTF-8 are skipped, as LocalStore skips them.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISREG

import structlog
from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MOVED,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from syncd.errors import Unsupported
from syncd.events.types import EventKind, ObjectEvent
from syncd.storage.filters import KeyFilter
from syncd.storage.local import _content_type

if sys.platform == "linux":
    from watchdog.observers.inotify import InotifyFullEmitter
    from watchdog.observers.inotify_c import (
        CallbackId,
        InotifyEvent,
        InotifyFD,
        Mask,
        WatchCallback,
        WatchDescriptor,
    )

    class _InotifyFD(InotifyFD):
        """watchdog's inotify reader, telling the watcher what watchdog only logs (a queue
        overflow) or swallows (a folder that could not be watched)."""

        def __init__(
            self, on_overflow: Callable[[], None], on_unwatched: Callable[[bytes], None]
        ) -> None:
            super().__init__()
            self._on_overflow = on_overflow
            self._on_unwatched = on_unwatched

        def handle_event(self, event: InotifyEvent) -> None:
            super().handle_event(event)
            if event.is_queue_overflow:
                self._on_overflow()

        def add_callback(
            self, path: bytes, mask: Mask, callback: WatchCallback, id_: CallbackId
        ) -> WatchDescriptor:
            try:
                return super().add_callback(path, mask, callback, id_)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self._on_unwatched(path)
                raise


log = structlog.get_logger("syncd.daemon.watch")

#: How long a closed (or renamed into place) file must keep its size and mtime. A writer
#: that closes and reopens within it is still writing.
CLOSE_GRACE = 0.25

#: The events the watcher needs. Leaving out opens and closes without writes keeps the
#: kernel queue for changes: every read of a file (a sync hashing it) would queue two.
_WATCHED: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
#: Events after which the name is done with: written and closed, or gone.
_QUICK = frozenset({EVENT_TYPE_CLOSED, EVENT_TYPE_DELETED})

#: What a stat finds at a key, as two stats compare it: a file's size and mtime, a folder,
#: or None (nothing, or what LocalStore does not list either: a symlink, a fifo).
_Signature = tuple[int, int] | None
_FOLDER = (-1, -1)


@dataclass(slots=True)
class _Pending:
    """What happened to one key since it last settled."""

    #: False when the window began with a create: the name was new, so if it vanishes
    #: before settling there is nothing to delete.
    existed: bool
    #: watchdog event types, in the order first seen.
    causes: list[str] = field(default_factory=list)
    #: Monotonic time of the last event, or of a change the watcher saw by itself.
    changed: float = 0.0
    #: The last event said the writer is done, so the short grace suffices.
    quick: bool = False
    #: An event said the file at the key went away (deleted, or moved elsewhere).
    removed: bool = False
    #: The last stat and when it was taken; a stat taken before `changed` is stale.
    seen: _Signature = None
    seen_at: float = float("-inf")


class _Handler(FileSystemEventHandler):
    def __init__(self, observe: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._observe = observe

    def dispatch(self, event: FileSystemEvent) -> None:
        self._observe(event)


class FolderWatcher:
    """Watches `root` (recursively) and reports settled changes of the keys `keys` accepts.

    `on_events` gets the events of one settle pass, `on_rescan(folder, reason)` a folder whose
    events were lost; both run in the watcher's settle thread, never after `stop()` returns
    (unless a callback is still running when its timeout ends, which is logged). A callback
    that raises is logged and its batch dropped: the driver's scheduled reconcile repairs it.

    `keys.accepts` is called from the observer thread only; since a KeyFilter caches its last
    folder, give the watcher a filter of its own (`key_filter(driver)`).
    """

    def __init__(
        self,
        root: Path,
        keys: KeyFilter,
        *,
        bucket: str,
        settle: float = 2.0,
        polling: bool = False,
        poll_interval: float = 1.0,
        on_events: Callable[[list[ObjectEvent]], None],
        on_rescan: Callable[[str, str], None],
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.bucket = bucket
        self.polling = polling
        self._keys = keys
        self._settle = settle
        self._grace = min(CLOSE_GRACE, settle)
        # A quarter of the shortest wait: its first stat lands near half of it.
        self._tick = self._grace / 4
        self._poll_interval = poll_interval
        self._on_events = on_events
        self._on_rescan = on_rescan
        self._base = os.path.join(str(self.root), "")
        self._lock = threading.Lock()
        #: Oldest change first, so a settle pass stops at the first key still busy.
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._rescans: dict[str, str] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # One settle pass at a time (the thread's or flush()'s), so a key is emitted once.
        self._passing = threading.Lock()
        self._observer: BaseObserver | None = None
        self._inotify: _InotifyFD | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching: the observer (its initial walk adds the watches) and the settle
        thread. Raises OSError when the root cannot be watched."""
        observer: BaseObserver
        if self.polling:
            observer = PollingObserverVFS(
                os.stat, self._listdir, polling_interval=self._poll_interval
            )
        else:
            if sys.platform != "linux":
                raise Unsupported("the folder watcher needs inotify (Linux); use polling: true")
            self._inotify = _InotifyFD(self._overflowed, self._unwatched)
            self._inotify.start()
            observer = BaseObserver(InotifyFullEmitter, inotify_fd=self._inotify)
        observer.schedule(
            _Handler(self._observe), str(self.root), recursive=True, event_filter=_WATCHED
        )
        try:
            observer.start()
        except BaseException:
            if self._inotify is not None:
                self._inotify.stop()
                self._inotify = None
            raise
        self._observer = observer
        self._thread = threading.Thread(
            target=self._run, name=f"syncd-watch {self.bucket}", daemon=True
        )
        self._thread.start()
        log.info("watching", folder=str(self.root), polling=self.polling)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; what has not settled yet is dropped (the daemon's reconcile on
        restart covers it). No callback starts after this is called."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(_left(deadline))
        if self._inotify is not None:
            self._inotify.stop()
            self._inotify.join(_left(deadline))
        if self._thread is not None:
            self._thread.join(_left(deadline))
        if self._passing.acquire(timeout=_left(deadline)):
            self._passing.release()
        else:
            log.warning("a watcher callback is still running after stop", folder=str(self.root))

    def flush(self) -> None:
        """Run one settle pass now, in the caller's thread: what has settled is emitted
        without waiting for the settle thread's next tick."""
        self._settle_pass()

    # The observer thread.

    def _observe(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if event.is_directory:
            # Files inside moved folders arrive as their own events; these two do not.
            if kind == EVENT_TYPE_MOVED and not event.dest_path:
                folder = self._folder(event.src_path)
                if folder is not None:
                    self._request(folder, "folder moved out of the watched folder")
            elif kind == EVENT_TYPE_DELETED and os.fsdecode(event.src_path) == str(self.root):
                log.error("the watched folder was removed; watching stopped", folder=str(self.root))
                self._request("", "the watched folder was removed")
            return
        if kind == EVENT_TYPE_MOVED:
            # A rename is the writer's way of saying done: both names are quick.
            if event.src_path:
                self._note(event.src_path, kind, quick=True, removed=True)
            if event.dest_path:
                self._note(event.dest_path, kind, quick=True)
            return
        self._note(
            event.src_path,
            kind,
            quick=kind in _QUICK,
            fresh=kind == EVENT_TYPE_CREATED,
            removed=kind == EVENT_TYPE_DELETED,
        )

    def _note(
        self,
        path: bytes | str,
        cause: str,
        *,
        quick: bool,
        fresh: bool = False,
        removed: bool = False,
    ) -> None:
        key = self._relative(path)
        if key is None or not _is_utf8(key) or not self._keys.accepts(key):
            return
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(key)
            was_idle = not self._pending
            if entry is None:
                entry = self._pending[key] = _Pending(existed=not fresh)
            else:
                self._pending.move_to_end(key)
            if cause not in entry.causes:
                entry.causes.append(cause)
            entry.changed = now
            entry.quick = quick
            entry.removed |= removed
        if was_idle:
            self._wake.set()

    def _relative(self, path: bytes | str) -> str | None:
        """A path below the root, relative to it with `/`; None for the root or outside."""
        text = os.fsdecode(path)
        if not text.startswith(self._base):
            return None
        relative = text[len(self._base) :]
        return relative.replace(os.sep, "/") if os.sep != "/" else relative

    def _folder(self, path: bytes | str) -> str | None:
        """The listing prefix of a folder: "" for the root, else "a/b/"."""
        if os.fsdecode(path) == str(self.root):
            return ""
        key = self._relative(path)
        return None if key is None else key + "/"

    # The polling emitter's thread.

    def _listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        """The poller's view of a folder, without what LocalStore's walk skips: on a network
        filesystem, an excluded or hidden tree (`.snapshot`) walked every poll is costly."""
        skips = self._keys.skips_segment
        with os.scandir(path) as entries:
            for entry in entries:
                if skips(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False  # the snapshot's own stat decides
                if is_dir:
                    relative = self._relative(entry.path)
                    if relative is not None and not self._concerns(relative + "/"):
                        continue
                yield entry

    # The inotify reader thread (and start()).

    def _overflowed(self) -> None:
        log.warning("inotify event queue overflowed; events were lost", folder=str(self.root))
        self._request("", "inotify event queue overflowed")

    def _unwatched(self, path: bytes) -> None:
        folder = self._folder(path)
        if folder is None:
            return
        log.warning(
            "inotify watch limit reached (fs.inotify.max_user_watches); folder not watched",
            folder=os.fsdecode(path),
        )
        self._request(folder, "inotify watch limit reached: folder not watched")

    def _request(self, folder: str, reason: str) -> None:
        if not self._concerns(folder):
            return
        with self._lock:
            self._rescans.setdefault(folder, reason)
        self._wake.set()

    def _concerns(self, folder: str) -> bool:
        """Whether a key under `folder` can belong to the driver. Uses only the filter's
        stateless checks: this runs outside the observer thread too."""
        keys = self._keys
        prefix = keys.prefix
        if not (folder.startswith(prefix) or prefix.startswith(folder)):
            return False
        names = folder.split("/")[:-1]
        if any(keys.skips_segment(name) for name in names):
            return False
        # Every folder on the way down, as LocalStore's walk meets (and prunes) them.
        ancestor = ""
        for name in names:
            ancestor += name + "/"
            if ancestor.startswith(prefix) and keys.prunes_folder(ancestor[len(prefix) : -1]):
                return False
        return True

    # The settle thread.

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                busy = bool(self._pending or self._rescans)
            self._wake.wait(self._tick if busy else None)
            self._wake.clear()
            self._settle_pass()

    def _settle_pass(self) -> None:
        with self._passing:
            if self._stopping.is_set():
                return
            now = time.monotonic()
            with self._lock:
                due = self._due(now)
            # The stats, the slow part, run outside the lock; a key that had an event
            # meanwhile is left for the next pass.
            samples = [(key, entry, changed, self._sample(key)) for key, entry, changed in due]
            events: list[ObjectEvent] = []
            with self._lock:
                for key, entry, changed, sample in samples:
                    if self._pending.get(key) is not entry or entry.changed != changed:
                        continue
                    event = self._decide(key, entry, sample, now)
                    if event is not None:
                        events.append(event)
                rescans, self._rescans = self._rescans, {}
            self._deliver(events, rescans)

    def _due(self, now: float) -> list[tuple[str, _Pending, float]]:
        """Keys worth a stat now: their first since the last change (at half the wait), or
        their confirming one (once the wait is over)."""
        due = []
        for key, entry in self._pending.items():
            quiet = now - entry.changed
            if quiet < self._grace / 2:
                break
            wait = self._grace if entry.quick else self._settle
            if quiet >= wait or (quiet >= wait / 2 and entry.seen_at < entry.changed):
                due.append((key, entry, entry.changed))
        return due

    def _sample(self, key: str) -> _Signature | OSError:
        try:
            st = os.lstat(self._base + key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return exc
        if S_ISREG(st.st_mode):
            return (st.st_size, st.st_mtime_ns)
        return _FOLDER if S_ISDIR(st.st_mode) else None

    def _decide(
        self, key: str, entry: _Pending, sample: _Signature | OSError, now: float
    ) -> ObjectEvent | None:
        """Emit the key if it has settled, else record the stat. Runs under the lock."""
        if isinstance(sample, OSError):
            # Unreadable is not absent: never a delete on doubt; the reconcile decides.
            del self._pending[key]
            folder = key.rpartition("/")[0]
            self._rescans.setdefault(
                folder + "/" if folder else "", f"cannot stat {key}: {sample.strerror}"
            )
            return None
        wait = self._grace if entry.quick else self._settle
        if sample == entry.seen and entry.seen_at >= entry.changed:
            if now - entry.changed >= wait and now - entry.seen_at >= wait / 2:
                del self._pending[key]
                return self._event(key, entry, sample)
            return None
        if entry.seen_at >= entry.changed:
            # It changed with no event to say so (a write watchdog did not report): wait again.
            entry.changed = now
            self._pending.move_to_end(key)
        entry.seen, entry.seen_at = sample, now
        return None

    def _event(self, key: str, entry: _Pending, sample: _Signature) -> ObjectEvent | None:
        cause = ",".join(entry.causes)
        if sample is None or sample == _FOLDER:
            # A folder cannot be renamed over a file, so a file replaced by one was removed
            # first. Without a removal it is the polling observer's snapshot diff pairing a
            # deleted file with a new folder that reused its inode: a "move" onto a folder.
            if not entry.existed or (sample == _FOLDER and not entry.removed):
                return None
            return ObjectEvent(
                EventKind.DELETED, "local", self.bucket, key, time.time(), cause=cause
            )
        size, mtime_ns = sample
        return ObjectEvent(
            EventKind.CREATED,
            "local",
            self.bucket,
            key,
            time.time(),
            size=size,
            content_type=_content_type(key),
            cause=cause,
            mtime=mtime_ns / 1e9,
        )

    def _deliver(self, events: list[ObjectEvent], rescans: dict[str, str]) -> None:
        if events and not self._stopping.is_set():
            try:
                self._on_events(events)
            except Exception:
                log.exception("on_events failed; events dropped", count=len(events))
        for folder, reason in _outermost(rescans):
            if self._stopping.is_set():
                return
            try:
                self._on_rescan(folder, reason)
            except Exception:
                log.exception("on_rescan failed", folder=folder, reason=reason)


def _is_utf8(key: str) -> bool:
    if key.isascii():
        return True
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        # Keys are UTF-8 text; LocalStore leaves such names out of its listing too.
        log.warning("name is not valid UTF-8, skipped", name=key.encode("utf-8", "surrogateescape"))
        return False
    return True


def _outermost(rescans: dict[str, str]) -> list[tuple[str, str]]:
    """The requested folders not inside another requested one (in byte order, a folder's
    descendants follow it directly)."""
    kept: list[tuple[str, str]] = []
    for folder in sorted(rescans):
        if kept and folder.startswith(kept[-1][0]):
            continue
        kept.append((folder, rescans[folder]))
    return kept


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
