"""AWS: S3 event notifications however they arrive — direct to Lambda, through SNS, through
SQS (raw, or an SNS envelope), and EventBridge "Object Created" / "Object Deleted" events,
directly or through SQS. Keys in S3 notifications and EventBridge events are form-encoded
(`+` is a space, `%2B` a plus) and are decoded here, once.

Within one message, a record that fails validation is reported in the message's `error`
(it goes to the dead-letter table) while its valid records are still applied.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from syncd.events.payloads import EventBridgeEvent, PayloadError, S3Record, read
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token

__all__ = ["PayloadError", "events_of", "parse_lambda_event", "parse_sqs_body"]


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


def _decoded(key: str) -> str:
    decoded = unquote_plus(key, errors="strict")
    if "\x00" in decoded:
        raise PayloadError("object key decodes to a NUL character")
    return decoded


def _s3_record(data: Any) -> ObjectEvent | None:
    record = read(S3Record, data, "S3 record")
    obj = record.s3.object
    kind = _s3_kind(record.eventName, obj.versionId)
    if kind is None:
        return None
    try:
        key = _decoded(obj.key)
    except UnicodeDecodeError:
        raise PayloadError("S3 record: object key is not UTF-8 once URL-decoded") from None
    return ObjectEvent(
        kind=kind,
        provider="s3",
        bucket=record.s3.bucket.name,
        key=key,
        event_time=record.eventTime,
        token=s3_token(obj.sequencer),
        size=obj.size if kind is EventKind.CREATED else None,
        etag=obj.eTag or None,
        version=obj.versionId or None,
        event_id=_request_id(record.responseElements),
        cause=record.eventName,
    )


def _request_id(elements: dict[str, Any] | None) -> str | None:
    value = (elements or {}).get("x-amz-request-id")
    return value if isinstance(value, str) and len(value) <= 256 else None


def _eventbridge_kind(event: EventBridgeEvent) -> EventKind | None:
    """EventBridge's names for the same cases as `_s3_kind`."""
    detail = event.detail
    if event.detail_type == "Object Created":
        return EventKind.CREATED
    if event.detail_type != "Object Deleted":
        return None
    if detail.deletion_type == "Delete Marker Created":
        return EventKind.DELETED
    if not detail.object.version_id:
        return EventKind.DELETED
    if detail.reason == "Lifecycle Expiration":
        return None
    return EventKind.VERSION_DELETED


_OBJECT_EVENTS = ("Object Created", "Object Deleted")


def _eventbridge(document: dict[str, Any]) -> list[ObjectEvent]:
    if document.get("detail-type") not in _OBJECT_EVENTS:
        return []  # restores, tags, ACLs, storage classes: nothing a listing shows
    event = read(EventBridgeEvent, document, "EventBridge S3 event")
    kind = _eventbridge_kind(event)
    if kind is None:
        return []
    obj = event.detail.object
    cause = event.detail.deletion_type or event.detail.reason
    try:
        key = _decoded(obj.key)
    except UnicodeDecodeError:
        raise PayloadError("EventBridge S3 event: key is not UTF-8 once URL-decoded") from None
    return [
        ObjectEvent(
            kind=kind,
            provider="s3",
            bucket=event.detail.bucket.name,
            # Form-encoded like notification keys (AWS Lambda Powertools decodes them the
            # same way): `cat photo (1).jpg` arrives as `cat+photo+%281%29.jpg`.
            key=key,
            event_time=event.time,
            token=s3_token(obj.sequencer),
            size=obj.size if kind is EventKind.CREATED else None,
            etag=obj.etag or None,
            version=obj.version_id or None,
            event_id=event.id,
            cause=f"{event.detail_type}: {cause}" if cause else event.detail_type,
        )
    ]


def events_of(document: Any, errors: list[str]) -> list[ObjectEvent]:
    """The object events in one notification document (any of the shapes above).

    A record that cannot be understood is described in `errors` and skipped; a document
    that is not a notification at all raises PayloadError.
    """
    if not isinstance(document, dict):
        raise PayloadError(f"expected a JSON object, got {type(document).__name__}")
    if document.get("Event") == "s3:TestEvent":
        return []
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return _eventbridge(document)
    if document.get("Type") == "Notification" and "Message" in document:
        return events_of(_json(document["Message"], "SNS Message"), errors)
    records = document.get("Records")
    if not isinstance(records, list):
        raise PayloadError("no Records, no EventBridge detail, not an SNS notification")
    out: list[ObjectEvent] = []
    for number, record in enumerate(records):
        try:
            if not isinstance(record, dict):
                raise PayloadError("a record is not a JSON object")
            if record.get("EventSource") == "aws:sns":
                sns = record.get("Sns")
                message = sns.get("Message") if isinstance(sns, dict) else None
                out += events_of(_json(message, "SNS Message"), errors)
            elif record.get("eventSource") == "aws:s3":
                event = _s3_record(record)
                if event is not None:
                    out.append(event)
            else:
                raise PayloadError(f"unknown record source {str(record.get('eventSource'))[:60]!r}")
        except PayloadError as exc:
            errors.append(f"record {number}: {exc}" if len(records) > 1 else str(exc))
    return out


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise PayloadError(f"{what} is not a string")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{what} nests too deeply") from None


def parse_aws_document(ident: str, source: str, raw: str, document: Any) -> Message:
    """One message of an S3 notification, an SNS envelope of one, or an EventBridge event
    already read as JSON (`raw` is kept for the dead-letter table)."""
    return _message(Message(ident, source, raw), document)


def _message(message: Message, document: Any) -> Message:
    errors: list[str] = []
    try:
        message.events = events_of(document, errors)
    except PayloadError as exc:
        errors.append(str(exc))
    if errors:
        message.error = "; ".join(errors)[:2000]
    return message


def parse_lambda_event(event: Any) -> list[Message]:
    """Messages of a Lambda invocation: one per SQS record (its own ack unit), else one."""
    records = event.get("Records") if isinstance(event, dict) else None
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        return [_sqs_message(r) for r in records]
    raw = json.dumps(event, default=str)
    ident = event.get("id") if isinstance(event, dict) else None
    message = Message(
        id=ident if isinstance(ident, str) else "invocation", source="aws:lambda", raw=raw
    )
    return [_message(message, event)]


def _sqs_message(record: dict[str, Any]) -> Message:
    body = record.get("body", "")
    ident = record.get("messageId")
    source = f"aws:sqs:{record.get('eventSourceARN', '')}"
    message = Message(id=str(ident) if ident is not None else "", source=source, raw=str(body))
    try:
        document = _json(body, "SQS body")
    except PayloadError as exc:
        message.error = str(exc)
        return message
    return _message(message, document)


def parse_sqs_body(message_id: str, body: str, queue_arn: str = "") -> Message:
    """One SQS message as received outside Lambda (ReceiveMessage); its source is
    `aws:sqs:QUEUE_ARN`, as a Lambda record's."""
    return _sqs_message({"messageId": message_id, "body": body, "eventSourceARN": queue_arn})
