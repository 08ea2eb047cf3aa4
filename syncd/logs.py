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
    r"((?:AccountKey|SharedAccessSignature|SharedAccessKey|password)=)[^;&\s]+"
    r"|([?&](?:sig|X-Amz-Signature|X-Goog-Signature|X-Amz-Security-Token)=)[^&\s]+"
    # The password of a URL's user info: scheme://user:PASSWORD@host
    r"|([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s]+(?=@)",
    re.IGNORECASE,
)
MASK = "***"


def scrub(text: str) -> str:
    """Mask credential material inside free text (an error message, a URL)."""
    return _SECRET_VALUE.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + MASK, text)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if name != "event" and _SECRET_FIELD.search(name) and value is not None:
            event[name] = MASK
        elif isinstance(value, str):
            event[name] = scrub(value)
    return event


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def _severity(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Cloud Logging reads `severity` and `message`; Lambda and Azure read `level` and the
    # JSON object itself. Both are present in a function's lines.
    event["severity"] = str(event.get("level", "info")).upper()
    return event


def configure(
    level: str | None = None, *, json: bool | None = None, function: bool = False
) -> None:
    """Set up structlog for a process; safe to call more than once.

    `function`: a serverless function's lines, always JSON, with the field names the
    platforms' log parsers read (`message`, `level`, `severity`).
    """
    name = (level or os.environ.get("SYNCD_LOG_LEVEL") or "info").upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    as_json = function or (not sys.stderr.isatty() if json is None else json)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    platform: list[Any] = (
        [structlog.processors.EventRenamer("message"), _severity] if function else []
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            *platform,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolved at each use, not now: whoever replaces sys.stderr later (a test runner, a
        # host process) keeps receiving the lines, and none go to a closed stream.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def bind_request(**ids: str | None) -> None:
    """Start a request's context: every line logged until the next call carries `ids`."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v})
