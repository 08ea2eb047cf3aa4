"""One catalog item per line with every field, for any tool that is not a known platform."""

from __future__ import annotations

import json
from typing import Any

from syncd.manifest.entries import Entry
from syncd.manifest.output import Parts


class JsonlWriter:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.skipped: dict[str, int] = {}

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None:
        for member in entry.members:
            i = member.item
            row = {
                "dataset": i.dataset,
                "driver": i.driver,
                "key": i.key,
                "url": member.url,
                "size": i.size,
                "mtime": i.mtime,
                "etag": i.etag,
                "version": i.version,
                "content_type": i.content_type,
                "media_kind": str(entry.kind),
                "order_token": i.order_token,
                "observed_at": i.observed_at,
                "change_id": i.change_id,
                "section": entry.section,
                "group": entry.title if entry.is_group else None,
            }
            self.parts.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.parts.finish()
