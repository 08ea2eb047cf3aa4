"""Labelbox data rows as NDJSON: `row_data` (the URL), a stable `global_key`
(`DATASET/DRIVER/KEY`), `external_id` (the key) and `media_type`, one object per line.
Groups are flattened to one row per object; DICOM and NIfTI have no Labelbox data-row media
type and are left out, counted by reason."""

from __future__ import annotations

import json
from typing import Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts

MEDIA_TYPES = {
    "images": "IMAGE",
    "image_groups": "IMAGE",
    "videos": "VIDEO",
    "audio": "AUDIO",
    "pdf": "PDF",
    "text": "TEXT",
}


NO_MEDIA_TYPE = "no Labelbox data-row media type (DICOM, NIfTI)"


class LabelboxWriter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.skipped: dict[str, int] = {}

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        media_type = MEDIA_TYPES.get(entry.section)
        if media_type is None:
            self.skipped[NO_MEDIA_TYPE] = self.skipped.get(NO_MEDIA_TYPE, 0) + len(entry.members)
            return
        for member in entry.members:
            item = member.item
            row = {
                "row_data": member.url,
                "global_key": f"{item.dataset}/{item.driver}/{item.key}",
                "external_id": item.key,
                "media_type": media_type,
            }
            self.parts.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.parts.finish()
