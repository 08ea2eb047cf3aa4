"""Items become manifest entries: one per single object, one per group of objects.

Singles stream straight through. Members of groups (image groups, image sequences, DICOM
series) are spilled to a temporary SQLite table and read back per group in natural order
(`frame2` before `frame10`), so memory does not grow with the dataset and groups need not be
contiguous in key order.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from syncd.catalog.types import Item
from syncd.config import ManifestSettings
from syncd.manifest.dicom import read_header
from syncd.manifest.mp4 import read_video
from syncd.manifest.sniff import HEAD_BYTES, image_size, sniff_kind
from syncd.manifest.wav import parse_wav
from syncd.media import MediaKind
from syncd.storage.types import Store

SECTION_OF_KIND = {
    MediaKind.IMAGE: "images",
    MediaKind.VIDEO: "videos",
    MediaKind.AUDIO: "audio",
    MediaKind.PDF: "pdf",
    MediaKind.TEXT: "text",
    MediaKind.NIFTI: "nifti",
}
_DIGITS = re.compile(r"\d+")


def natural_key(text: str) -> str:
    """A string that sorts like `text` but with digit runs compared as numbers."""
    return _DIGITS.sub(lambda m: m.group().lstrip("0").rjust(24, "0"), text)


@dataclass(slots=True)
class Member:
    item: Item
    url: str
    width: int | None = None
    height: int | None = None
    #: Encord's videoMetadata / audioMetadata, when a probe measured them.
    media: dict[str, Any] | None = None


@dataclass(slots=True)
class Entry:
    """One manifest entry. `section` is Encord's section name; groups have several members."""

    section: str
    title: str
    members: list[Member]
    create_video: bool | None = None
    kind: MediaKind = MediaKind.OTHER

    @property
    def is_group(self) -> bool:
        return self.section in ("image_groups", "dicom_series")


#: Why an item got no entry (the keys of a summary's `skipped`).
NOT_MEDIA = "not a media kind any format registers"
TO_VERIFY = "state unknown until a stat or a sync settles it (items ls shows it to verify)"
NO_SERIES = "DICOM file without a SeriesInstanceUID (empty, not DICOM, or no dataset)"


@dataclass(slots=True)
class Counts:
    entries: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    probe_bytes: int = 0
    probed: int = 0

    def add(self, section: str) -> None:
        self.entries[section] = self.entries.get(section, 0) + 1

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


UrlFor = Callable[[Item], str]
StoreFor = Callable[[Item], Store | None]


class _GroupSpill:
    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="syncd-groups-", suffix=".db")
        os.close(handle)
        self.db = sqlite3.connect(self.path)
        self.db.execute(
            "CREATE TABLE m (section TEXT, driver TEXT, grp TEXT, create_video INTEGER, "
            "sort TEXT, key TEXT, member TEXT)"
        )

    def add(
        self, section: str, group: str, create_video: bool | None, sort: str, member: Member
    ) -> None:
        self.db.execute(
            "INSERT INTO m VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                section,
                member.item.driver,
                group,
                create_video,
                sort,
                member.item.key,
                json.dumps(_member_json(member)),
            ),
        )

    def groups(self) -> Iterator[Entry]:
        rows = self.db.execute(
            "SELECT section, driver, grp, create_video, member FROM m "
            "ORDER BY section, driver, grp, sort, key"
        )
        current: Entry | None = None
        current_id: tuple[str, str, str] | None = None
        for section, driver, group, create_video, member in rows:
            ident = (section, driver, group)
            if ident != current_id:
                if current is not None:
                    yield current
                kind = MediaKind.DICOM if section == "dicom_series" else MediaKind.IMAGE
                cv = None if create_video is None else bool(create_video)
                current, current_id = Entry(section, group, [], cv, kind), ident
            assert current is not None
            current.members.append(_member_from_json(json.loads(member)))
        if current is not None:
            yield current

    def close(self) -> None:
        self.db.close()
        os.unlink(self.path)


def _member_json(member: Member) -> dict[str, Any]:
    return {
        "item": list(member.item),
        "url": member.url,
        "width": member.width,
        "height": member.height,
        "media": member.media,
    }


def _member_from_json(data: dict[str, Any]) -> Member:
    return Member(Item(*data["item"]), data["url"], data["width"], data["height"], data["media"])


class EntryBuilder:
    """Turns a stream of items into entries, following the manifest settings."""

    def __init__(
        self,
        settings: ManifestSettings,
        url_for: UrlFor,
        store_for: StoreFor,
        *,
        probe: bool = False,
        image_sizes: bool = False,
        prefix_of: Callable[[str], str] = lambda driver: "",
    ) -> None:
        self.settings = settings
        self.url_for = url_for
        self.store_for = store_for
        self.probe = probe
        self.image_sizes = image_sizes or probe
        self.prefix_of = prefix_of
        self.pattern = re.compile(settings.group_pattern) if settings.group_pattern else None
        self.counts = Counts()
        # Items arrive in key order, so neighbours share a folder: its verdict is cached.
        self._folder: tuple[str, str] | None = None
        self._folder_group: tuple[bool, bool] = (False, False)
        # The head the last sniff read, so probing the same object does not fetch it again.
        self._sniffed: tuple[str, str, bytes] | None = None

    def kind_of(self, item: Item) -> MediaKind:
        kind = MediaKind(item.media_kind) if item.media_kind else MediaKind.OTHER
        if kind is not MediaKind.OTHER:
            return kind
        store = self.store_for(item)
        if store is None:
            return kind
        head = self._head(store, item, HEAD_BYTES)
        self._sniffed = (item.driver, item.key, head)
        return sniff_kind(head) or MediaKind.OTHER

    def _sniffed_head(self, item: Item) -> bytes | None:
        sniffed = self._sniffed
        if sniffed is not None and sniffed[0] == item.driver and sniffed[1] == item.key:
            return sniffed[2]
        return None

    def _head(self, store: Store, item: Item, length: int) -> bytes:
        """The first `length` bytes of `item`, from the sniffed head when it holds them."""
        head = self._sniffed_head(item)
        # A head shorter than was asked for is the whole object.
        if head is not None and (len(head) >= length or len(head) < HEAD_BYTES):
            return head[:length]
        head = store.read_range(item.key, 0, length)
        self.counts.probe_bytes += len(head)
        return head

    def _group_of(self, item: Item) -> tuple[str, bool] | None:
        """(group title, is a sequence) when this image belongs to a group."""
        if not (self.settings.image_sequences or self.settings.image_groups):
            return None
        folder = item.key.rpartition("/")[0]
        if self._folder != (item.driver, folder):
            relative = folder[len(self.prefix_of(item.driver)) :]
            sequence = any(fnmatch.fnmatchcase(relative, g) for g in self.settings.image_sequences)
            grouped = sequence or any(
                fnmatch.fnmatchcase(relative, g) for g in self.settings.image_groups
            )
            self._folder, self._folder_group = (item.driver, folder), (grouped, sequence)
        grouped, sequence = self._folder_group
        if not grouped:
            return None
        if self.pattern is not None:
            match = self.pattern.search(item.key)
            if match and match.group("group"):
                return match.group("group"), sequence
        return item.key.rpartition("/")[0] or item.key, sequence

    def _member(self, item: Item, kind: MediaKind) -> Member:
        member = Member(item, self.url_for(item))
        if self.probe and kind in (MediaKind.VIDEO, MediaKind.AUDIO):
            store = self.store_for(item)
            if store is not None:
                member.media = self._media(store, item, kind)
        if kind is MediaKind.IMAGE and self.image_sizes:
            store = self.store_for(item)
            if store is not None:
                head = self._head(
                    store,
                    item,
                    65536
                    if item.content_type == "image/jpeg"
                    or item.key.lower().endswith((".jpg", ".jpeg"))
                    else HEAD_BYTES,
                )
                self.counts.probed += 1
                size = image_size(head)
                if size:
                    member.width, member.height = size
        return member

    def _media(self, store: Store, item: Item, kind: MediaKind) -> dict[str, Any] | None:
        mime = item.content_type or ("video/mp4" if kind is MediaKind.VIDEO else "audio/wav")
        self.counts.probed += 1
        if kind is MediaKind.VIDEO:
            video = read_video(store, item.key, item.size)
            if video is None:
                return None
            self.counts.probe_bytes += video.bytes_read
            if video.fps is None or video.width is None or video.height is None:
                return None
            return {
                "fps": video.fps,
                "duration": round(video.duration, 3),
                "width": video.width,
                "height": video.height,
                "file_size": item.size,
                "mime_type": mime,
            }
        audio = parse_wav(self._head(store, item, HEAD_BYTES), item.size)
        if audio is None:
            return None
        return {
            "duration": round(audio.duration, 3),
            "file_size": item.size,
            "mime_type": mime,
            "sample_rate": audio.sample_rate,
            "bit_depth": audio.bit_depth,
            "codec": audio.codec,
            "num_channels": audio.num_channels,
        }

    def entries(self, items: Iterable[Item]) -> Iterator[Entry]:
        spill = _GroupSpill()
        try:
            for item in items:
                if item.verify:
                    self.counts.skip(TO_VERIFY)
                    continue
                kind = self.kind_of(item)
                if kind is MediaKind.OTHER:
                    self.counts.skip(NOT_MEDIA)
                    continue
                if kind is MediaKind.DICOM:
                    self._dicom(spill, item)
                    continue
                if kind is MediaKind.IMAGE:
                    group = self._group_of(item)
                    if group is not None:
                        title, sequence = group
                        member = self._member(item, kind)
                        name = item.key.rpartition("/")[2]
                        spill.add("image_groups", title, sequence, natural_key(name), member)
                        continue
                entry = Entry(
                    SECTION_OF_KIND[kind], item.key, [self._member(item, kind)], kind=kind
                )
                self.counts.add(entry.section)
                yield entry
            for entry in spill.groups():
                self.counts.add(entry.section)
                yield entry
        finally:
            spill.close()

    def _dicom(self, spill: _GroupSpill, item: Item) -> None:
        member = Member(item, self.url_for(item))
        folder = item.key.rpartition("/")[0] or item.key
        title, sort = folder, natural_key(item.key.rpartition("/")[2])
        if self.probe:
            store = self.store_for(item)
            if store is not None:
                header = read_header(store, item.key, self._sniffed_head(item))
                self.counts.probe_bytes += header.bytes_read
                self.counts.probed += 1
                if not header.series_uid:
                    # It belongs to no series: grouping it by folder would pollute a real one.
                    self.counts.skip(NO_SERIES)
                    return
                description = header.description or folder
                title = f"{description} [{header.series_uid}]"
                number = header.instance_number if header.instance_number is not None else 0
                sort = f"{number:012d}" + sort
        spill.add("dicom_series", title, None, sort, member)
