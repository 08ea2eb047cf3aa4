"""AWS: S3 event notifications however they arrive — direct to Lambda, through SNS, through
SQS (raw, or an SNS envelope), and EventBridge "Object Created" / "Object Deleted" events,
directly or through SQS. Keys in S3 notifications are form-encoded (`+` is a space, `%2B`
a plus) and are decoded here, once."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from syncd.events.timeparse import epoch
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token


class PayloadError(ValueError):
    """The payload is not a notification syncd understands (the message says why)."""


def _s3_record(record: dict[str, Any]) -> ObjectEvent | None:
    name = str(record.get("eventName", ""))
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        raise PayloadError("S3 record without an s3 field")
    obj = s3.get("object") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        raise PayloadError("S3 record without bucket name or object key")
    if name.startswith("ObjectCreated:"):
        kind = EventKind.CREATED
    elif name in ("ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated"):
        kind = EventKind.DELETED
    else:
        return None
    return ObjectEvent(
        kind=kind,
        provider="s3",
        bucket=bucket,
        key=unquote_plus(obj["key"]),
        event_time=epoch(record.get("eventTime")),
        token=s3_token(obj.get("sequencer")),
        size=obj.get("size") if kind is EventKind.CREATED else None,
        etag=obj.get("eTag") or None,
        version=obj.get("versionId") or None,
        event_id=(record.get("responseElements") or {}).get("x-amz-request-id"),
    )


def _eventbridge(event: dict[str, Any]) -> list[ObjectEvent]:
    detail = event.get("detail") or {}
    kind = {"Object Created": EventKind.CREATED, "Object Deleted": EventKind.DELETED}.get(
        str(event.get("detail-type"))
    )
    if kind is None:
        return []
    obj = detail.get("object") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        raise PayloadError("EventBridge S3 event without bucket name or object key")
    return [
        ObjectEvent(
            kind=kind,
            provider="s3",
            bucket=bucket,
            # EventBridge delivers keys as they are, not form-encoded.
            key=obj["key"],
            event_time=epoch(event.get("time")),
            token=s3_token(obj.get("sequencer")),
            size=obj.get("size") if kind is EventKind.CREATED else None,
            etag=obj.get("etag") or None,
            version=obj.get("version-id") or None,
            event_id=event.get("id"),
        )
    ]


def events_of(document: Any) -> list[ObjectEvent]:
    """The object events in one notification document (any of the shapes above)."""
    if not isinstance(document, dict):
        raise PayloadError(f"expected a JSON object, got {type(document).__name__}")
    if document.get("Event") == "s3:TestEvent":
        return []
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return _eventbridge(document)
    if document.get("Type") == "Notification" and "Message" in document:
        return events_of(_json(document["Message"], "SNS Message"))
    records = document.get("Records")
    if not isinstance(records, list):
        raise PayloadError("no Records, no EventBridge detail, not an SNS notification")
    out: list[ObjectEvent] = []
    for record in records:
        if not isinstance(record, dict):
            raise PayloadError("a record is not a JSON object")
        if record.get("EventSource") == "aws:sns":
            out += events_of(_json((record.get("Sns") or {}).get("Message"), "SNS Message"))
        elif record.get("eventSource") == "aws:s3":
            event = _s3_record(record)
            if event is not None:
                out.append(event)
        else:
            raise PayloadError(f"unknown record source {record.get('eventSource')!r}")
    return out


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise PayloadError(f"{what} is not a string")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not JSON: {exc}") from None


def parse_lambda_event(event: dict[str, Any]) -> list[Message]:
    """Messages of a Lambda invocation: one per SQS record (its own ack unit), else one."""
    records = event.get("Records")
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        return [_sqs_message(r) for r in records]
    raw = json.dumps(event)
    message = Message(id=str(event.get("id") or "invocation"), source="aws:lambda", raw=raw)
    try:
        message.events = events_of(event)
    except PayloadError as exc:
        message.error = str(exc)
    return [message]


def _sqs_message(record: dict[str, Any]) -> Message:
    body = record.get("body", "")
    source = f"aws:sqs:{record.get('eventSourceARN', '')}"
    message = Message(id=str(record.get("messageId", "")), source=source, raw=str(body))
    try:
        message.events = events_of(_json(body, "SQS body"))
    except PayloadError as exc:
        message.error = str(exc)
    return message


def parse_sqs_body(message_id: str, body: str, source: str = "aws:sqs") -> Message:
    """One SQS message as received outside Lambda (ReceiveMessage)."""
    return _sqs_message({"messageId": message_id, "body": body, "eventSourceARN": source})
