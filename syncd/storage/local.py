"""Local folders as a store: keys are `/`-joined paths relative to the root.

The walk yields keys in UTF-8 byte order without collecting the tree: inside each folder,
entries are sorted by name with folders compared as `name/`, which is exactly the order of
the full keys (`a-b` < `a/b` < `a0`). Memory is bounded by one folder's width times depth.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat as stat_module
from collections.abc import Iterator
from pathlib import Path

import structlog

from syncd.config import Driver, Integration
from syncd.errors import NotFound, PermissionDenied
from syncd.storage.filters import KeyFilter, key_filter
from syncd.storage.types import Gap, Listed, ObjectInfo

_HASH_CHUNK = 1 << 20
#: One folder's entries as (key, entry, is_dir); named here because `list` is a method below.
_Entries = list[tuple[str, os.DirEntry[str], bool]]
log = structlog.get_logger("syncd.storage.local")


class LocalStore:
    """A folder on this machine. Symlinks are not followed unless asked, and then only to
    targets inside the folder unless `symlinks_outside`; a link that leads back to a folder
    it is inside (a cycle) is never entered.

    What cannot be read (a folder without permission, a path longer than the system allows,
    a file whose content hash fails) becomes a `Gap` in the listing, so the reconciler holds
    deletes under it instead of the whole driver failing on every run.
    """

    sorted_listing = True

    def __init__(
        self,
        root: str | Path,
        *,
        follow_symlinks: bool = False,
        symlinks_outside: bool = False,
        content_hash: str = "none",
        keys: KeyFilter | None = None,
        name: str = "local",
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.name = name
        self.follow_symlinks = follow_symlinks
        self.symlinks_outside = symlinks_outside
        self.content_hash = content_hash
        self._keys = keys

    @property
    def skipped_by_store(self) -> tuple[str, ...]:
        return self._keys.skip if self._keys is not None else ()

    def _path(self, key: str) -> Path:
        if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
            raise NotFound(f"{self.name}: invalid key {key!r}")
        return self.root / key

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
        if not self.root.is_dir():
            raise NotFound(f"{self.name}: folder {self.root} does not exist")
        # Start from the deepest folder the prefix names, then filter by the full prefix.
        folder, _, _ = prefix.rpartition("/")
        start_dir = self.root / folder if folder else self.root
        if not start_dir.is_dir():
            return
        base = folder + "/" if folder else ""
        for info in self._walk(start_dir, base):
            if not info.key.startswith(prefix):
                if info.key > prefix:
                    return
                continue
            if start_after is not None and info.key <= start_after:
                continue
            yield info

    def _entries(self, directory: str, base: str) -> _Entries:
        """One folder's entries as (key, entry, is_dir), sorted by key (folders as `name/`).

        Raises OSError when the folder cannot be read."""
        with os.scandir(directory) as scan:
            entries = list(scan)
        keys = self._keys
        skips = keys.skips_segment if keys is not None and keys.skip else None
        follow = self.follow_symlinks
        named: _Entries = []
        for entry in entries:
            name = entry.name
            if not name.isascii():
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    # Such a name can never be a key, so skipping it is no doubt about deletes.
                    log.warning("name is not valid UTF-8, skipped", path=os.fsdecode(entry.path))
                    continue
            if skips is not None and skips(name):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=follow)
            except OSError:
                is_dir = False  # stat-ed as a file below, where the error becomes a gap
            named.append((base + name + "/" if is_dir else base + name, entry, is_dir))
        named.sort(key=_first)
        return named

    def _walk(self, directory: Path, base: str) -> Iterator[Listed]:
        # An explicit stack, not recursion: one generator for the whole tree. Each level
        # keeps the (device, inode) of its folder, so a symlink back to one is a cycle.
        try:
            top = self._entries(str(directory), base)
            here = directory.stat()
        except PermissionError as exc:
            raise PermissionDenied(
                f"{self.name}: cannot read folder {directory}: {exc.strerror}"
            ) from exc
        stack: list[tuple[Iterator[tuple[str, os.DirEntry[str], bool]], tuple[int, int]]] = [
            (iter(top), (here.st_dev, here.st_ino))
        ]
        follow = self.follow_symlinks
        info = self._info
        while stack:
            for key, entry, is_dir in stack[-1][0]:
                if is_dir:
                    if self._pruned(key):
                        continue
                    if follow and entry.is_symlink():
                        gap = self._link_gap(key, entry, {s[1] for s in stack})
                        if gap is not None:
                            yield gap
                            continue
                    try:
                        below = self._entries(entry.path, key)
                        st = entry.stat(follow_symlinks=follow)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        yield Gap(key, f"{entry.path}: cannot read folder: {_why(exc)}")
                        continue
                    stack.append((iter(below), (st.st_dev, st.st_ino)))
                    break
                try:
                    st = entry.stat(follow_symlinks=follow)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    yield Gap(key, f"{entry.path}: {_why(exc)}")
                    continue
                if not stat_module.S_ISREG(st.st_mode):
                    continue
                if follow and entry.is_symlink() and not self.symlinks_outside:
                    target = os.path.realpath(entry.path)
                    if not _inside(target, self.root):
                        yield Gap(
                            key, f"{entry.path}: symlink to {target}, outside the folder", False
                        )
                        continue
                try:
                    yield info(key, entry.path, st)
                except OSError as exc:
                    yield Gap(key, f"{entry.path}: cannot read its content: {_why(exc)}")
            else:
                stack.pop()

    def _pruned(self, folder_key: str) -> bool:
        keys = self._keys
        if keys is None or not folder_key.startswith(keys.prefix):
            return False
        return keys.prunes_folder(folder_key[len(keys.prefix) : -1])

    def _link_gap(
        self, key: str, entry: os.DirEntry[str], ancestors: set[tuple[int, int]]
    ) -> Gap | None:
        """Why a symlinked folder is not entered, or None when it may be."""
        target = os.path.realpath(entry.path)
        if not self.symlinks_outside and not _inside(target, self.root):
            return Gap(key, f"{entry.path}: symlink to {target}, outside the folder", False)
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError as exc:
            return Gap(key, f"{entry.path}: cannot follow the symlink: {_why(exc)}")
        if (st.st_dev, st.st_ino) in ancestors:
            return Gap(
                key, f"{entry.path}: symlink cycle (it leads to {target}, a folder it is in)", False
            )
        return None

    def _info(self, key: str, path: str, st: os.stat_result) -> ObjectInfo:
        etag = None
        if self.content_hash != "none":
            etag = _file_hash(path, self.content_hash)
        return ObjectInfo(key, st.st_size, st.st_mtime_ns / 1e9, etag, None, _content_type(key))

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat() if self.follow_symlinks else path.lstat()
        except FileNotFoundError:
            raise NotFound(f"{self.name}: {key} does not exist") from None
        if not stat_module.S_ISREG(st.st_mode):
            raise NotFound(f"{self.name}: {key} is not a regular file")
        return self._info(key, str(path), st)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise NotFound(f"{self.name}: {key} does not exist") from None

    def url(self, key: str) -> str:
        return (self.root / key).as_uri() if key else self.root.as_uri()

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.stat(key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            raise NotFound(f"{self.name}: {key} does not exist") from None


def _first(item: tuple[str, os.DirEntry[str], bool]) -> str:
    return item[0]


_TYPES: dict[str, str | None] = {}


def _content_type(name: str) -> str | None:
    """The content type guessed from a file or key name's extension (cached per extension)."""
    dot = name.rfind(".")
    extension = name[dot:] if dot > name.rfind("/") else ""
    try:
        return _TYPES[extension]
    except KeyError:
        guessed, _ = mimetypes.guess_type("x" + extension.lower(), strict=False)
        if len(_TYPES) < 10_000:
            _TYPES[extension] = guessed
        return guessed


def _file_hash(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root).rstrip(os.sep) + os.sep)


def from_config(driver: Driver, integration: Integration, base_dir: Path) -> LocalStore:
    root = Path(driver.bucket).expanduser()
    return LocalStore(
        root if root.is_absolute() else base_dir / root,
        follow_symlinks=driver.follow_symlinks,
        symlinks_outside=driver.follow_symlinks_outside,
        content_hash=driver.content_hash,
        keys=key_filter(driver),
        name=driver.name,
    )
