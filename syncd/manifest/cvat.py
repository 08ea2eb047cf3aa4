"""CVAT's `manifest.jsonl` for images in cloud storage: a version line, a type line, then one
line per image with its name (the key without extension), extension, width and height.
Image sizes are read from each image's header; other media are counted in `unsupported`."""

from __future__ import annotations

import json
from typing import IO, Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts


class CvatManifestWriter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._handle: IO[str] | None = None
        self.unsupported = 0

    def _open(self) -> IO[str]:
        handle = self.parts.open()
        handle.write('{"version":"1.1"}\n{"type":"images"}\n')
        return handle

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        if entry.section not in ("images", "image_groups"):
            self.unsupported += len(entry.members)
            return
        for member in entry.members:
            if member.width is None or member.height is None:
                self.unsupported += 1
                continue
            if self._handle is None or self.parts.full():
                if self._handle is not None:
                    self.parts.close(self._handle)
                self._handle = self._open()
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
            text = json.dumps(line, ensure_ascii=False) + "\n"
            self._handle.write(text)
            self.parts.wrote(len(text))

    def close(self) -> None:
        if self._handle is None:
            self._handle = self._open()
        self.parts.close(self._handle)
