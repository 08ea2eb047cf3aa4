"""Structured logs: one JSON object per line when stderr is not a terminal, pretty when it is.

Secrets never reach a log line: fields whose names say they hold one are masked, and values
that look like credentials (connection strings, signed-URL signatures) are scrubbed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_FIELD = re.compile(
    r"(secret|password|passwd|token|credential|account_key|access_key|connection_string|sas)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s]+"
    r"|([?&](?:sig|X-Amz-Signature|X-Goog-Signature|X-Amz-Security-Token)=)[^&\s]+",
    re.IGNORECASE,
)
MASK = "***"


def scrub(text: str) -> str:
    """Mask credential material inside free text (an error message, a URL)."""
    return _SECRET_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if name != "event" and _SECRET_FIELD.search(name) and value is not None:
            event[name] = MASK
        elif isinstance(value, str):
            event[name] = scrub(value)
    return event


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Set up structlog for a process; safe to call more than once."""
    name = (level or os.environ.get("SYNCD_LOG_LEVEL") or "info").upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolved at each use, not now: whoever replaces sys.stderr later (a test runner, a
        # host process) keeps receiving the lines, and none go to a closed stream.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
