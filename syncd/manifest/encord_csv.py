"""Encord's CSV registration file: a header row starts each run of one data type
(`ObjectUrl,Image title` / `Video title` / `Image group title,Create video` / `Dicom title`),
one row per object, URLs without whitespace (they are percent-encoded already)."""

from __future__ import annotations

import csv
import io
from typing import IO, Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts

HEADERS = {
    "images": ["ObjectUrl", "Image title"],
    "videos": ["ObjectUrl", "Video title"],
    "image_groups": ["ObjectUrl", "Image group title", "Create video"],
    "dicom_series": ["ObjectUrl", "Dicom title"],
}


class EncordCsvWriter:
    """Sections the CSV format has no header for (audio, PDF, text, NIfTI) are counted in
    `unsupported` and left out; use encord-json for them."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self._section: str | None = None
        self.unsupported = 0

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        header = HEADERS.get(entry.section)
        if header is None:
            self.unsupported += 1
            return
        if self._handle is None or self.parts.full():
            if self._handle is not None:
                self.parts.close(self._handle)
            self._handle = self.parts.open()
            self._writer = csv.writer(self._handle, lineterminator="\n")
            self._section = None
        if entry.section != self._section:
            self._writer.writerow(header)
            self._section = entry.section
        buffer = io.StringIO()
        rows = csv.writer(buffer, lineterminator="\n")
        for member in entry.members:
            row = [member.url, entry.title]
            if entry.section == "image_groups":
                row.append("true" if entry.create_video else "false")
            rows.writerow(row)
        text = buffer.getvalue()
        self._handle.write(text)
        self.parts.wrote(len(text))

    def close(self) -> None:
        if self._handle is None:
            self._handle = self.parts.open()
        self.parts.close(self._handle)
