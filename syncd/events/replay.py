"""Retry a dead letter: parse its stored payload again with the parser its `source` names and,
when it parses now, apply its events and remove the letter in one transaction.

What each source stored as the payload (`Message.raw`), and so how it is read again:

| source | payload | parsed again with |
|---|---|---|
| `aws:sqs:...` | the SQS message body | `parse_sqs_body` |
| `aws:lambda` | the whole invocation event (JSON) | `parse_lambda_event` |
| `aws:sns:TOPIC`, `aws:http` (the ingest API) | the delivered document | `parse_aws_document` |
| `azure:queue:NAME` | the queue message, base64-decoded | `parse_event_grid_batch`, as the queue source |
| `azure:eventgrid` | one event | `parse_event_grid_batch` |
| `azure:blobtrigger` | `{"name", "length"}` | `parse_blob_trigger` |
| `gcp:cloudevent` | `{"attributes", "data"}`, or a structured body | `parse_cloud_event` |
| `gcp:pubsub...`, `gcp:gen1-pubsub` | a push body, a Pub/Sub message as JSON, or `{"attributes", "data"}` with the data decoded | the Pub/Sub parsers |

Some payloads cannot be read alone, and the outcome says why: a gen1 Cloud Storage event
(`gcp:gen1`) keeps only its `data`, not the context that says whether it was a finalize or a
delete; a binary-mode CloudEvent whose body was not JSON keeps the body without its `ce-`
headers; folder-watcher messages (`watch:`) carry no payload (the next sync reconciles).

A letter that still fails is left as it is (nothing is written), and the outcome gives the
reason as it stands now. A catalog that cannot be reached raises `CatalogUnavailable`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.catalog.types import Catalog, DeadLetter
from syncd.config import Config
from syncd.errors import CatalogUnavailable
from syncd.events.apply import EventApplier
from syncd.events.aws import (
    PayloadError,
    parse_aws_document,
    parse_lambda_event,
    parse_sqs_body,
)
from syncd.events.azure import parse_blob_trigger, parse_event_grid_batch
from syncd.events.gcp import (
    parse_cloud_event,
    parse_pubsub_cloud_event,
    parse_pubsub_message,
    parse_push_envelope,
    parse_structured_cloud_event,
)
from syncd.events.types import Message


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    id: int
    applied_ok: bool
    applied: int = 0
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "applied_ok": self.applied_ok,
            "applied": self.applied,
            "reason": self.reason,
        }


class _CannotReparse(Exception):
    """The stored payload alone is not enough to parse the message again."""


def retry_dead_letter(catalog: Catalog, config: Config, letter_id: int) -> RetryOutcome | None:
    """Parse dead letter `letter_id` again and apply it; None when there is no such letter."""
    letter = catalog.dead_letter_by_id(letter_id)
    if letter is None:
        return None
    try:
        message = reparse(letter)
    except _CannotReparse as exc:
        return RetryOutcome(letter.id, False, 0, str(exc))
    if message.error is not None:
        return RetryOutcome(letter.id, False, 0, f"still cannot be parsed: {message.error}")
    applier = EventApplier(catalog, config)
    try:
        result = applier.apply([message], discard_letter=letter.id)
    except CatalogUnavailable:
        raise
    except Exception as exc:
        # The transaction rolled back: the letter is still there, the items as they were.
        return RetryOutcome(
            letter.id, False, 0, f"cannot be stored: {type(exc).__name__}: {exc}"[:2000]
        )
    return RetryOutcome(letter.id, True, result.applied, None)


def reparse(letter: DeadLetter) -> Message:
    """The letter's message as its parser reads it today, named as the letter is (its source,
    message id and payload), so that it is the same message to the applier."""
    source = letter.source
    family, _, rest = source.partition(":")
    if family == "aws":
        parts = _aws(letter, rest)
    elif family == "azure":
        parts = _azure(letter, rest)
    elif family == "gcp":
        parts = _gcp(letter, rest)
    elif family == "watch":
        raise _CannotReparse(
            "folder-watcher messages carry no payload to parse again; the next sync of the "
            "driver reconciles the folder"
        )
    else:
        raise _CannotReparse(f"no parser reads messages of source {source[:80]!r}")
    return _merged(letter, parts)


def _merged(letter: DeadLetter, parts: Sequence[Message]) -> Message:
    message = Message(letter.message_id, letter.source, letter.payload)
    message.events = [event for part in parts for event in part.events]
    errors = [part.error for part in parts if part.error]
    if errors:
        message.error = "; ".join(errors)[:2000]
    return message


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise PayloadError(f"{what} is not JSON") from None


def _failed(letter: DeadLetter, reason: str) -> list[Message]:
    return [Message(letter.message_id, letter.source, letter.payload, error=reason)]


def _aws(letter: DeadLetter, rest: str) -> list[Message]:
    if rest == "sqs" or rest.startswith("sqs:"):
        arn = rest[4:] if rest.startswith("sqs:") else ""
        return [parse_sqs_body(letter.message_id, letter.payload, arn)]
    try:
        document = _json(letter.payload, "the payload")
    except PayloadError as exc:
        return _failed(letter, str(exc))
    if rest == "lambda":
        return parse_lambda_event(document)
    # A document delivered to the ingest API (an SNS notification, an S3 notification, an
    # EventBridge event): the SNS signature was checked when it arrived.
    return [parse_aws_document(letter.message_id, letter.source, letter.payload, document)]


def _azure(letter: DeadLetter, rest: str) -> list[Message]:
    if rest == "blobtrigger":
        try:
            document = _json(letter.payload, "the payload")
        except PayloadError:
            document = None
        if not isinstance(document, Mapping) or not isinstance(document.get("name"), str):
            raise _CannotReparse("a blob-trigger letter without the blob's name")
        length = document.get("length")
        return [parse_blob_trigger(document["name"], length if isinstance(length, int) else None)]
    try:
        document = _json(letter.payload, "the event")
    except PayloadError as exc:
        if not rest.startswith("queue"):
            return _failed(letter, str(exc))
        # A queue message is stored as received when it was not base64 (of UTF-8 JSON).
        try:
            text = base64.b64decode(letter.payload, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return _failed(letter, "queue message is not base64")
        try:
            document = _json(text, "queue message")
        except PayloadError as again:
            return _failed(letter, str(again))
    parts = parse_event_grid_batch(document if isinstance(document, list) else [document])
    return parts or _failed(letter, "queue message holds no event")


def _gcp(letter: DeadLetter, rest: str) -> list[Message]:
    if rest == "gen1":
        raise _CannotReparse(
            "a gen1 Cloud Storage event keeps only its data, not the context that says which "
            "change it was (finalize, delete, ...); the next sync reconciles the object"
        )
    try:
        document = _json(letter.payload, "the payload")
    except PayloadError as exc:
        if rest == "cloudevent":
            raise _CannotReparse(
                "the payload is the body of a binary-mode CloudEvent that was not JSON; its "
                "attributes (the ce- headers) were not kept"
            ) from None
        return _failed(letter, str(exc))
    if rest == "cloudevent":
        if _is_pair(document) and isinstance(document["attributes"], Mapping):
            return [parse_cloud_event(document["attributes"], document["data"])]
        return [parse_structured_cloud_event(document)]
    return [_pubsub(letter, document)]


def _is_pair(document: Any) -> bool:
    return isinstance(document, Mapping) and set(document) == {"attributes", "data"}


def _pubsub(letter: DeadLetter, document: Any) -> Message:
    """The three forms a Pub/Sub letter's payload takes: a push body (or the data of a
    `messagePublished` CloudEvent) with `message`; `{attributes, data}` with the CloudEvent's
    data, or with the notification's data already decoded; a Pub/Sub message as JSON has it,
    its data in base64."""
    if isinstance(document, Mapping) and isinstance(document.get("message"), Mapping):
        return parse_push_envelope(document)
    if _is_pair(document):
        attributes = document["attributes"]
        data = document["data"]
        if isinstance(data, Mapping):
            return parse_pubsub_cloud_event(
                attributes if isinstance(attributes, Mapping) else {}, data
            )
        if isinstance(attributes, Mapping) and isinstance(data, str) and _decoded(data):
            return parse_pubsub_message(letter.message_id, attributes, data.encode("utf-8"))
    return parse_push_envelope({"message": document})


def _decoded(data: str) -> bool:
    """Whether `data` is a notification's payload as decoded (a JSON object, or nothing for
    payload format NONE) rather than base64, whose alphabet has no `{`."""
    return not data or data.lstrip().startswith("{")
