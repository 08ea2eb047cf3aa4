"""A function's other sink: the daemon's ingest API instead of the catalog.

With `SYNCD_INGEST_URL` set (the daemon's base URL, e.g. `http://10.0.0.5:8080`), a handler
POSTs the messages it parsed to `/v1/events/{cloud}` with `SYNCD_INGEST_TOKEN` (a token of
`api.tokens` with the `write` scope) and answers the platform with what the daemon committed.
The daemon routes and applies; the function needs neither a catalog URL nor a routing config.

The request body, media type `application/vnd.syncd.messages+json`, version 1::

    {"version": 1,
     "messages": [{"id": "059f36b4-...", "source": "aws:sqs:arn:aws:sqs:...", "raw": "...",
                   "error": null,
                   "events": [{"kind": "created", "provider": "s3", "bucket": "b", "key": "k",
                               "event_time": 1795420800.0, "token": "0055AED6...",
                               "size": 5, "etag": "...", "version": null,
                               "content_type": null, "event_id": "...",
                               "cause": "ObjectCreated:Put", "mtime": null}]}]}

`raw` is the payload as the parser kept it (what the dead-letter table stores), `error` what
the parser could not understand (the daemon dead-letters the message and still applies its
events). Every field is always present. A change that the daemon cannot read (a new field, a
new meaning) gets a new `version`; the daemon refuses versions it does not know with a 400.

The daemon answers 200 with `{"applied", "ignored", "unrouted", "dead_lettered", "kept",
"failed": [message ids not committed]}`; anything else (a network failure, a timeout, any
other status) means that no message of the request was committed: all are reported failed, and
the platform delivers them again (its partial-batch answer where it has one). Applying twice
changes nothing, so a commit whose answer was lost is harmless.

Standard library only (`urllib`): a function's cold start stays as it is.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog

from syncd.errors import ConfigError
from syncd.events.apply import BatchResult
from syncd.events.types import Message, ObjectEvent

log = structlog.get_logger("syncd.events")

MEDIA_TYPE = "application/vnd.syncd.messages+json"
FORMAT_VERSION = 1
CLOUDS = ("aws", "gcp", "azure")
#: The fields of an event on the wire, in this order (ObjectEvent's, all of them).
EVENT_FIELDS = (
    "kind",
    "provider",
    "bucket",
    "key",
    "event_time",
    "token",
    "size",
    "etag",
    "version",
    "content_type",
    "event_id",
    "cause",
    "mtime",
)
#: A request body is cut at about this size (the daemon's `api.max_body` is 10 MiB by
#: default); a bigger batch goes as several requests, each answered on its own.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0


def event_json(event: ObjectEvent) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(event, name) for name in EVENT_FIELDS}
    out["kind"] = event.kind.value
    return out


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "source": message.source,
        "raw": message.raw,
        "error": message.error,
        "events": [event_json(e) for e in message.events],
    }


def _encoded(message: Message) -> str:
    # ASCII JSON: any text (even a lone surrogate in a raw payload) crosses unchanged.
    return json.dumps(message_json(message), separators=(",", ":"))


def encode_body(parts: Sequence[str]) -> bytes:
    """The request body around messages already encoded by `_encoded`."""
    return f'{{"version":{FORMAT_VERSION},"messages":[{",".join(parts)}]}}'.encode("ascii")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would send the token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ForwardingSink:
    """Sends messages to the daemon's ingest API; reuse one per warm function instance."""

    def __init__(
        self,
        base_url: str,
        cloud: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        if cloud not in CLOUDS:
            raise ConfigError(f"forwarding: cloud {cloud!r} is not one of {', '.join(CLOUDS)}")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "SYNCD_INGEST_URL: expected the daemon's base URL, http(s)://HOST:PORT"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(
                "SYNCD_INGEST_URL: no query, fragment or user in the URL; "
                "the token goes in SYNCD_INGEST_TOKEN"
            )
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/events/{cloud}"
        self.cloud = cloud
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._token = token or None
        self._opener = urllib.request.build_opener(_NoRedirects)

    @classmethod
    def from_env(cls, cloud: str) -> ForwardingSink:
        url = os.environ.get("SYNCD_INGEST_URL", "")
        text = os.environ.get("SYNCD_INGEST_TIMEOUT", "")
        try:
            timeout = float(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise ConfigError(f"SYNCD_INGEST_TIMEOUT: {text[:40]!r} is not seconds") from None
        if not 0 < timeout <= 900:
            raise ConfigError("SYNCD_INGEST_TIMEOUT: between 0 and 900 seconds")
        return cls(url, cloud, os.environ.get("SYNCD_INGEST_TOKEN"), timeout=timeout)

    def handle(self, messages: Sequence[Message]) -> BatchResult:
        result = BatchResult()
        for chunk, parts in self._chunks(messages):
            self._send(chunk, parts, result)
        return result

    def _chunks(self, messages: Sequence[Message]) -> Iterator[tuple[list[Message], list[str]]]:
        chunk: list[Message] = []
        parts: list[str] = []
        size = 0
        for message in messages:
            encoded = _encoded(message)
            if chunk and size + len(encoded) > self.max_bytes:
                yield chunk, parts
                chunk, parts, size = [], [], 0
            chunk.append(message)
            parts.append(encoded)
            size += len(encoded) + 1
        if chunk:
            yield chunk, parts

    def _send(self, chunk: list[Message], parts: list[str], result: BatchResult) -> None:
        ids = [m.id for m in chunk]
        try:
            answer = self._post(encode_body(parts))
            failed = answer["failed"]
            if not isinstance(failed, list):
                raise ValueError("`failed` is not a list")
            counts = {
                name: int(answer.get(name, 0))
                for name in ("applied", "ignored", "unrouted", "dead_lettered", "kept")
            }
        except _Refused as exc:
            log.error(
                "forwarding refused; the platform delivers again",
                url=self.url,
                status=exc.status,
                detail=exc.detail,
                messages=len(chunk),
            )
            result.failed += ids
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # URLError and timeouts are OSErrors; a body that is not the answer is a ValueError.
            log.error(
                "forwarding failed; the platform delivers again",
                url=self.url,
                error=f"{type(exc).__name__}: {exc}"[:500],
                messages=len(chunk),
            )
            result.failed += ids
            return
        wanted = {str(i) for i in failed}
        result.failed += [i for i in ids if i in wanted]
        result.applied += counts["applied"]
        result.ignored += counts["ignored"]
        result.unrouted += counts["unrouted"]
        result.dead_lettered += counts["dead_lettered"]
        result.kept += counts["kept"]
        log.info("forwarded", messages=len(chunk), **counts, failed=len(wanted))

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {
            "Content-Type": MEDIA_TYPE,
            "Accept": "application/json",
            "User-Agent": "syncd-forward/1",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                text = response.read(1024 * 1024)
        except urllib.error.HTTPError as exc:
            raise _Refused(exc.code, _detail(exc.read(4096))) from None
        if status != 200:
            raise _Refused(status, _detail(text))
        answer = json.loads(text)
        if not isinstance(answer, dict):
            raise ValueError("the answer is not a JSON object")
        return answer

    def close(self) -> None:
        self._opener.close()


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _detail(body: bytes) -> str:
    """The problem body's `detail`, or the start of whatever came back."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("detail"), str):
            return str(document["detail"])[:500]
    except (ValueError, RecursionError):
        pass
    return body[:200].decode("utf-8", "replace")
