"""CVAT's `manifest.jsonl` for images in cloud storage: a version line, a type line, then one
line per image with its name (the key without extension), extension, width and height.
Image sizes are read from each image's header. Other media, images whose size cannot be read
and images whose header says 0x0 (CVAT refuses both) are left out and counted by reason."""

from __future__ import annotations

import json
from typing import Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts

NOT_IMAGE = "not an image (a CVAT image manifest lists images only)"
NO_SIZE = "image size unreadable from its header"
ZERO_SIZE = "image header says 0x0"


class CvatManifestWriter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        parts.header = '{"version":"1.1"}\n{"type":"images"}\n'
        self.skipped: dict[str, int] = {}

    def _skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        if entry.section not in ("images", "image_groups"):
            self._skip(NOT_IMAGE, len(entry.members))
            return
        for member in entry.members:
            if member.width is None or member.height is None:
                self._skip(NO_SIZE)
                continue
            if member.width <= 0 or member.height <= 0:
                self._skip(ZERO_SIZE)
                continue
            key = member.item.key
            dot = key.rfind(".")
            name, extension = (key[:dot], key[dot:]) if dot > key.rfind("/") else (key, "")
            line: dict[str, Any] = {
                "name": name,
                "extension": extension,
                "width": member.width,
                "height": member.height,
                "meta": {"related_images": []},
            }
            self.parts.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.parts.finish()
