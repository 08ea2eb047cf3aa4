"""Query parameters read with a 400 that names the parameter at fault."""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from syncd.api.problems import Problem


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(
            400, f"query parameter {name!r}: {text[:40]!r} is not a whole number"
        ) from None
    if not low <= value <= high:
        raise Problem(400, f"query parameter {name!r}: {value} is outside {low} to {high}")
    return value


def boolean(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false").lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", ""):
        return False
    raise Problem(400, f"query parameter {name!r}: write true or false, not {text[:40]!r}")


def encode_cursor(driver: str, key: str) -> str:
    raw = json.dumps([driver, key], ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: web.Request) -> tuple[str, str] | None:
    text = request.query.get("cursor")
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        driver, key = json.loads(raw)
        if not isinstance(driver, str) or not isinstance(key, str):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise Problem(400, "query parameter 'cursor': not a cursor this API gave out") from None
    return driver, key
