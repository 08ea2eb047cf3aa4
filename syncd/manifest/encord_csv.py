"""Encord's CSV registration file: a header row starts each run of one data type
(`ObjectUrl,Image title` / `Video title` / `Image group title,Create video` / `Dicom title`),
one row per object, URLs without whitespace (they are percent-encoded already)."""

from __future__ import annotations

import csv
import io
from typing import Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts

HEADERS = {
    "images": ["ObjectUrl", "Image title"],
    "videos": ["ObjectUrl", "Video title"],
    "image_groups": ["ObjectUrl", "Image group title", "Create video"],
    "dicom_series": ["ObjectUrl", "Dicom title"],
}


NO_HEADER = "no Encord CSV header for this kind (audio, PDF, text, NIfTI): use encord-json"


class EncordCsvWriter:
    """Sections the CSV format has no header for (audio, PDF, text, NIfTI) are left out and
    counted by reason; use encord-json for them."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._section: str | None = None
        self.skipped: dict[str, int] = {}

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        header = HEADERS.get(entry.section)
        if header is None:
            self.skipped[NO_HEADER] = self.skipped.get(NO_HEADER, 0) + 1
            return
        buffer = io.StringIO()
        rows = csv.writer(buffer, lineterminator="\n")
        if self.parts.prepare() or entry.section != self._section:
            rows.writerow(header)
            self._section = entry.section
        for member in entry.members:
            row = [member.url, entry.title]
            if entry.section == "image_groups":
                row.append("true" if entry.create_video else "false")
            rows.writerow(row)
        self.parts.write(buffer.getvalue())

    def close(self) -> None:
        self.parts.finish()
