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


def _s3_kind(name: str, version: str | None) -> EventKind | None:
    """What an S3 notification's `eventName` means for the object's listing.

    A delete marker (made by a user or by lifecycle expiration of the current version)
    hides the object. `ObjectRemoved:Delete` with a version id removes that version for
    good, which only hides the object when it was the current one. A lifecycle removal of
    a version only ever takes noncurrent versions or a delete marker with nothing under it,
    so the listing does not change. Restores, tags, ACLs, replication and tiering do not
    change what a listing shows either.
    """
    if name.startswith("ObjectCreated:"):
        return EventKind.CREATED
    if name in ("ObjectRemoved:DeleteMarkerCreated", "LifecycleExpiration:DeleteMarkerCreated"):
        return EventKind.DELETED
    if name == "ObjectRemoved:Delete":
        return EventKind.VERSION_DELETED if version else EventKind.DELETED
    if name == "LifecycleExpiration:Delete":
        return None if version else EventKind.DELETED
    return None


def _s3_record(record: dict[str, Any]) -> ObjectEvent | None:
    name = str(record.get("eventName", ""))
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        raise PayloadError("S3 record without an s3 field")
    obj = s3.get("object") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        raise PayloadError("S3 record without bucket name or object key")
    version = obj.get("versionId") or None
    kind = _s3_kind(name, version)
    if kind is None:
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
        version=version,
        event_id=(record.get("responseElements") or {}).get("x-amz-request-id"),
        cause=name,
    )


def _eventbridge_kind(
    detail_type: str, detail: dict[str, Any], version: str | None
) -> EventKind | None:
    """EventBridge's names for the same cases as `_s3_kind`."""
    if detail_type == "Object Created":
        return EventKind.CREATED
    if detail_type != "Object Deleted":
        return None
    if detail.get("deletion-type") == "Delete Marker Created":
        return EventKind.DELETED
    if not version:
        return EventKind.DELETED
    if detail.get("reason") == "Lifecycle Expiration":
        return None
    return EventKind.VERSION_DELETED


def _eventbridge(event: dict[str, Any]) -> list[ObjectEvent]:
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    version = obj.get("version-id") or None
    detail_type = str(event.get("detail-type"))
    kind = _eventbridge_kind(detail_type, detail, version)
    if kind is None:
        return []
    bucket = (detail.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        raise PayloadError("EventBridge S3 event without bucket name or object key")
    cause = detail.get("deletion-type") or detail.get("reason")
    return [
        ObjectEvent(
            kind=kind,
            provider="s3",
            bucket=bucket,
            # Form-encoded like notification keys (AWS Lambda Powertools decodes them the
            # same way): `cat photo (1).jpg` arrives as `cat+photo+%281%29.jpg`.
            key=unquote_plus(obj["key"]),
            event_time=epoch(event.get("time")),
            token=s3_token(obj.get("sequencer")),
            size=obj.get("size") if kind is EventKind.CREATED else None,
            etag=obj.get("etag") or None,
            version=version,
            event_id=event.get("id"),
            cause=f"{detail_type}: {cause}" if cause else detail_type,
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
