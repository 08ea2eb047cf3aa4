"""Encord's JSON registration file: sections `images`, `videos`, `audio`, `pdf`, `text`,
`nifti`, `image_groups` (groups, and sequences with `createVideo: true`), `dicom_series`, and
`skip_duplicate_urls`. Entries are written to one temporary file per section as they come
and joined at the end of each output part, so memory does not grow with the dataset."""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import IO, Any

from syncd.config import ManifestSettings
from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts

_string = json.encoder.encode_basestring  # the C-accelerated JSON string encoder

SECTIONS = ("images", "videos", "audio", "pdf", "text", "nifti", "image_groups", "dicom_series")


def entry_json(
    entry: Entry, settings: ManifestSettings, metadata: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"title": entry.title}
    if entry.is_group:
        if entry.create_video is not None:
            out["createVideo"] = entry.create_video
        for n, member in enumerate(entry.members):
            out[f"objectUrl_{n}"] = member.url
    else:
        (member,) = entry.members
        out["objectUrl"] = member.url
        if member.media is not None and entry.section in ("videos", "audio"):
            out["videoMetadata" if entry.section == "videos" else "audioMetadata"] = member.media
        if entry.section == "images" and member.width and member.height:
            out["imageMetadata"] = {
                "mimeType": member.item.content_type
                or "image/" + member.item.key.rsplit(".", 1)[-1].lower(),
                "fileSize": member.item.size,
                "width": member.width,
                "height": member.height,
            }
    client = {**settings.client_metadata, **metadata}
    if client:
        out["clientMetadata"] = client
    return out


class EncordJsonWriter:
    def __init__(self, parts: Parts, settings: ManifestSettings) -> None:
        self.parts = parts
        self.settings = settings
        self._sections: dict[str, IO[str]] = {}
        self._counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        if self.parts.full():
            self._flush()
        member = entry.members[0]
        if (
            entry.is_group
            or metadata
            or self.settings.client_metadata
            or member.width
            or member.media
        ):
            text = json.dumps(entry_json(entry, self.settings, metadata), ensure_ascii=False)
        else:
            # The common entry, {"title", "objectUrl"}, without the general encoder.
            text = f'{{"title": {_string(entry.title)}, "objectUrl": {_string(member.url)}}}'
        section = self._sections.get(entry.section)
        if section is None:
            section = self._sections[entry.section] = tempfile.TemporaryFile("w+", encoding="utf-8")
            self._counts[entry.section] = 0
        section.write(",\n    " if self._counts[entry.section] else "\n    ")
        section.write(text)
        self._counts[entry.section] += 1
        self.parts.wrote(len(text))

    def _flush(self) -> None:
        handle = self.parts.open()
        handle.write("{")
        for name in SECTIONS:
            section = self._sections.pop(name, None)
            handle.write(f'\n  "{name}": [')
            if section is not None:
                section.seek(0)
                shutil.copyfileobj(section, handle)
                section.close()
                handle.write("\n  ")
            handle.write("],")
        handle.write(
            f'\n  "skip_duplicate_urls": {json.dumps(self.settings.skip_duplicate_urls)}\n}}\n'
        )
        self._counts.clear()
        self.parts.close(handle)

    def close(self) -> None:
        if self._sections or not self.parts.paths:
            self._flush()
