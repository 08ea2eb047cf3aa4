"""FolderWatcher on real folders with real observers (inotify and polling).

The one fake is the kernel's inotify queue limit: an overflow is injected where watchdog
receives it. The watch limit is real, lowered inside a throwaway user namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.config import DEFAULT_SKIP
from syncd.daemon.watch import FolderWatcher
from syncd.events.types import EventKind, ObjectEvent
from syncd.storage.filters import KeyFilter

CREATED, DELETED = EventKind.CREATED, EventKind.DELETED
MB = 1 << 20


class Recorder:
    """Collects what the watcher's callbacks receive, with the time of each call."""

    def __init__(self) -> None:
        self.events: list[ObjectEvent] = []
        self.rescans: list[tuple[str, str]] = []
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def on_events(self, events: list[ObjectEvent]) -> None:
        with self._lock:
            self.events.extend(events)
            self.calls.append(time.monotonic())

    def on_rescan(self, folder: str, reason: str) -> None:
        with self._lock:
            self.rescans.append((folder, reason))
            self.calls.append(time.monotonic())

    def changes(self) -> Counter[tuple[EventKind, str]]:
        with self._lock:
            return Counter((event.kind, event.key) for event in self.events)

    def wait(self, done: Callable[[Recorder], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self):
                return True
            time.sleep(0.05)
        return done(self)


Start = Callable[..., tuple[FolderWatcher, Recorder]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts a watcher over a folder; every one is stopped at the end of the test."""
    watchers: list[FolderWatcher] = []

    def make(
        root: Path,
        keys: KeyFilter | None = None,
        *,
        settle: float = 2.0,
        polling: bool = False,
        poll_interval: float = 1.0,
    ) -> tuple[FolderWatcher, Recorder]:
        recorder = Recorder()
        watcher = FolderWatcher(
            root,
            keys if keys is not None else KeyFilter(skip=DEFAULT_SKIP),
            bucket="./data",
            settle=settle,
            polling=polling,
            poll_interval=poll_interval,
            on_events=recorder.on_events,
            on_rescan=recorder.on_rescan,
        )
        watcher.start()
        watchers.append(watcher)
        return watcher, recorder

    yield make
    for watcher in watchers:
        watcher.stop()


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_file_written_slowly_is_emitted_once_whole(
    tmp_path: Path, start: Start, polling: bool
) -> None:
    # 50 MB in 1 MB chunks over ~5 s through one open handle: inotify reports modifications
    # until the close; the poller sees the size grow at every poll and never a close.
    _, seen = start(tmp_path, polling=polling, poll_interval=0.5)
    chunk = os.urandom(MB)
    with open(tmp_path / "scan.bin", "wb") as handle:
        for _ in range(50):
            handle.write(chunk)
            handle.flush()
            time.sleep(0.1)
    written = time.monotonic()

    assert seen.wait(lambda r: bool(r.events), timeout=10)
    time.sleep(1.0)  # anything else would come now
    assert seen.calls[0] > written
    assert [(e.kind, e.key, e.size) for e in seen.events] == [(CREATED, "scan.bin", 50 * MB)]
    event = seen.events[0]
    st = (tmp_path / "scan.bin").stat()
    assert (event.provider, event.bucket, event.mtime) == ("local", "./data", st.st_mtime_ns / 1e9)
    assert event.content_type == "application/octet-stream"
    assert event.cause is not None and "modified" in event.cause
    assert event.mtime is not None and event.event_time >= event.mtime
    assert seen.rescans == []


def test_ten_thousand_files_created_at_once_each_arrive_once(tmp_path: Path, start: Start) -> None:
    # The folders appear with the files: their watches are added while files are written.
    _, seen = start(tmp_path)
    began = time.monotonic()
    keys = set()
    for folder in ("a", "b", "c", "d"):
        (tmp_path / folder).mkdir()
        for i in range(2500):
            key = f"{folder}/{i:05d}.png"
            (tmp_path / key).write_bytes(b"png")
            keys.add(key)

    assert seen.wait(lambda r: len(r.events) >= len(keys), timeout=60)
    took = time.monotonic() - began
    time.sleep(0.5)
    assert seen.changes() == Counter({(CREATED, key): 1 for key in keys})
    assert {e.size for e in seen.events} == {3}
    assert seen.rescans == []
    assert took < 60


@pytest.mark.skipif(sys.platform != "linux", reason="inotify")
def test_a_queue_overflow_asks_for_a_rescan_and_watching_goes_on(
    tmp_path: Path, start: Start
) -> None:
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, WatchDescriptor

    (tmp_path / "sub").mkdir()
    watcher, seen = start(tmp_path)
    inotify = watcher._inotify
    assert inotify is not None
    # What the kernel queues when its queue is full, given to watchdog where its reader
    # would: watchdog rebuilds the watches, the watcher asks for the rescan.
    inotify.handle_event(InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b""))

    assert seen.wait(lambda r: bool(r.rescans), timeout=5)
    assert seen.rescans == [("", "inotify event queue overflowed")]
    (tmp_path / "sub" / "after.txt").write_text("still watched")
    assert seen.wait(lambda r: (CREATED, "sub/after.txt") in r.changes(), timeout=5)
    assert len(seen.rescans) == 1


def _namespaced_limit_works() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = "echo 3 > /proc/sys/user/max_inotify_watches"
    return subprocess.run(["unshare", "-U", "-r", "sh", "-c", probe], check=False).returncode == 0


def test_the_watch_limit_asks_for_a_rescan_of_each_folder_left_unwatched(tmp_path: Path) -> None:
    # The limit is per user namespace: 3 here (root and two folders), nothing outside changes.
    if not _namespaced_limit_works():
        pytest.skip("needs unshare and unprivileged user namespaces")
    for folder in "abcde":
        (tmp_path / folder).mkdir()
    script = (
        'echo 3 > /proc/sys/user/max_inotify_watches && exec "$0" -m tests.daemon.test_watch "$1"'
    )
    child = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", script, sys.executable, str(tmp_path)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    rescans = json.loads(child.stdout.splitlines()[-1])
    folders = [folder for folder, _ in rescans]
    assert {reason for _, reason in rescans} == {"inotify watch limit reached: folder not watched"}
    # Three of the five at start (which ones is os.walk's order), and the one made later.
    assert len(folders) == 4 == len(set(folders))
    assert "f/" in folders
    assert set(folders) <= {"a/", "b/", "c/", "d/", "e/", "f/"}


def _limit_child(root: Path) -> None:
    """Runs in the namespace of the test above: prints the rescans asked for as JSON."""
    seen = Recorder()
    watcher = FolderWatcher(
        root, KeyFilter(), bucket="b", on_events=seen.on_events, on_rescan=seen.on_rescan
    )
    watcher.start()
    (root / "f").mkdir()
    seen.wait(lambda r: len(r.rescans) >= 4, timeout=10)
    watcher.stop()
    print(json.dumps(seen.rescans))


def _scenario(root: Path, outside: Path) -> None:
    """Every kind of change a folder sees; the layout is made by `_layout` first."""
    (root / "keep.txt").rename(root / "moved.txt")  # a file moved
    (root / "old").rename(root / "new")  # a folder moved
    (root / "gone.txt").unlink()  # a delete
    (root / "dl").mkdir()  # a download renamed into place
    with open(root / "dl" / "x.jpg.part", "wb") as handle:
        for _ in range(4):
            handle.write(b"j" * 1000)
            handle.flush()
            time.sleep(0.05)
    (root / "dl" / "x.jpg.part").rename(root / "dl" / "x.jpg")
    (root / "report.csv.tmp").write_text("a,b\n1,2\n")  # an editor's save over a file
    (root / "report.csv.tmp").replace(root / "report.csv")
    (root / ".hidden").write_text("skipped")  # hidden, and inside a hidden folder
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("skipped")
    (root / "cache" / "z.bin").write_bytes(b"excluded")  # an excluded folder
    (root / "cache" / "y.bin").write_bytes(b"changed, excluded")
    (root / "cache" / "sub").rename(outside / "sub")
    (root / "flash.txt").write_text("here and gone before it settles")
    (root / "flash.txt").unlink()
    (root / "link.jpg").symlink_to(root / "moved.txt")  # not followed, as LocalStore
    (root / os.fsdecode(b"latin1-\xe9.jpg")).write_bytes(b"not UTF-8: never a key")
    (root / "out").rename(outside / "out")  # a folder moved out of the tree
    (outside / "in").rename(root / "in")  # and one moved in


def _layout(root: Path, outside: Path) -> None:
    for key in ("keep.txt", "gone.txt", "report.csv", "old/a.jpg", "old/b.jpg", "out/c.jpg"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(key)
    (root / "cache" / "sub").mkdir(parents=True)
    (root / "cache" / "y.bin").write_bytes(b"excluded")
    (root / "cache" / "sub" / "w.bin").write_bytes(b"excluded")
    (outside / "in").mkdir(parents=True)
    (outside / "in" / "d.jpg").write_bytes(b"moved in")


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_moves_deletes_renames_into_place_and_what_is_skipped(
    tmp_path: Path, start: Start, polling: bool
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _layout(root, outside)
    keys = KeyFilter(exclude=["cache/**"], skip=DEFAULT_SKIP)
    _, seen = start(root, keys, settle=1.0, polling=polling, poll_interval=0.2)
    _scenario(root, outside)

    expected = {
        (DELETED, "keep.txt"),
        (CREATED, "moved.txt"),
        (DELETED, "old/a.jpg"),
        (DELETED, "old/b.jpg"),
        (CREATED, "new/a.jpg"),
        (CREATED, "new/b.jpg"),
        (DELETED, "gone.txt"),
        (CREATED, "dl/x.jpg"),
        (CREATED, "report.csv"),
        (CREATED, "in/d.jpg"),
    }
    if polling:
        # The poller sees the files of a folder that left; inotify sees only the folder.
        expected.add((DELETED, "out/c.jpg"))
    assert seen.wait(lambda r: set(r.changes()) >= expected, timeout=15)
    time.sleep(1.5)  # longer than the settle: whatever else would be emitted is now
    assert seen.changes() == Counter(dict.fromkeys(expected, 1))
    assert seen.rescans == ([] if polling else [("out/", "folder moved out of the watched folder")])
    by_key = {event.key: event for event in seen.events}
    download = by_key["dl/x.jpg"]
    assert (download.size, download.content_type) == (4000, "image/jpeg")
    assert download.mtime == (root / "dl" / "x.jpg").stat().st_mtime_ns / 1e9
    assert by_key["report.csv"].size == len("a,b\n1,2\n")
    assert by_key["gone.txt"].size is None


def test_a_change_no_event_reported_restarts_the_wait(tmp_path: Path, start: Start) -> None:
    # Polls further apart than the settle: between two polls only the watcher's own stats
    # see the file grow, and they must hold it back.
    _, seen = start(tmp_path, settle=0.4, polling=True, poll_interval=1.0)
    with open(tmp_path / "log.csv", "w") as handle:
        for i in range(30):
            handle.write(f"{i},row\n")
            handle.flush()
            time.sleep(0.1)
    written = time.monotonic()

    assert seen.wait(lambda r: bool(r.events), timeout=5)
    assert seen.calls[0] > written
    assert [(e.key, e.size) for e in seen.events] == [
        ("log.csv", (tmp_path / "log.csv").stat().st_size)
    ]


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_stop_is_prompt_and_no_callback_runs_after_it(
    tmp_path: Path, start: Start, polling: bool
) -> None:
    watcher, seen = start(tmp_path, settle=0.3, polling=polling, poll_interval=0.1)
    (tmp_path / "first.txt").write_text("settles")
    assert seen.wait(lambda r: bool(r.events), timeout=5)
    for i in range(200):  # pending, not settled, when stop comes
        (tmp_path / f"late{i}.txt").write_text("dropped")
    began = time.monotonic()
    watcher.stop()
    stopped = time.monotonic()
    assert stopped - began < 1.0

    (tmp_path / "after.txt").write_text("never seen")
    time.sleep(0.6)
    watcher.flush()
    assert max(seen.calls) < stopped
    assert [e.key for e in seen.events] == ["first.txt"]


if __name__ == "__main__":
    _limit_child(Path(sys.argv[1]))
