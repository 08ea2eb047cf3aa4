"""Event timestamps (RFC 3339, with `Z` or an offset, up to nanoseconds) as epoch seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d{6})\d+")


def epoch(text: str | None) -> float:
    if not text:
        return 0.0
    value = datetime.fromisoformat(_FRACTION.sub(r".\1", text.replace("Z", "+00:00")))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
