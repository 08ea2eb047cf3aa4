"""CVAT's `manifest.jsonl` for images in cloud storage: a version line, a type line, then one
line per image with its name (the key without extension), extension, width and height.
Image sizes are read from each image's header; other media are counted in `unsupported`."""

from __future__ import annotations

import json
from typing import Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts


class CvatManifestWriter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        parts.header = '{"version":"1.1"}\n{"type":"images"}\n'
        self.unsupported = 0

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        if entry.section not in ("images", "image_groups"):
            self.unsupported += len(entry.members)
            return
        for member in entry.members:
            if member.width is None or member.height is None:
                self.unsupported += 1
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
