"""Google Cloud Storage: CloudEvents (structured and binary HTTP), gen1 background-function
payloads, and Pub/Sub notifications (push envelope, pulled message, and the Pub/Sub-triggered
function forms: the gen2 `messagePublished` CloudEvent and the gen1 Pub/Sub event).

An OBJECT_DELETE or OBJECT_ARCHIVE that carries `overwrittenByGeneration` is an overwrite:
the new generation's finalize carries the new state, so the delete is acknowledged and
ignored. Otherwise both hide the object (an archived generation never becomes live again),
and are ordered after every metadata update of their generation. A metadata update
refreshes the object at its new metageneration."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncd.events.payloads import (
    GcsAttributes,
    GcsObject,
    PayloadError,
    PubsubMessage,
    event_time,
    read,
)
from syncd.events.types import (
    GCS_FINAL_METAGENERATION,
    EventKind,
    Message,
    ObjectEvent,
    gcs_token,
)

PUBSUB_CLOUD_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
PUBSUB_GEN1_EVENT = "google.pubsub.topic.publish"

_CLOUD_EVENT_KINDS = {
    "google.cloud.storage.object.v1.finalized": EventKind.CREATED,
    "google.cloud.storage.object.v1.metadataUpdated": EventKind.CREATED,
    "google.cloud.storage.object.v1.deleted": EventKind.DELETED,
    "google.cloud.storage.object.v1.archived": EventKind.DELETED,
}
_NOTIFICATION_KINDS = {
    "OBJECT_FINALIZE": EventKind.CREATED,
    "OBJECT_METADATA_UPDATE": EventKind.CREATED,
    "OBJECT_DELETE": EventKind.DELETED,
    "OBJECT_ARCHIVE": EventKind.DELETED,
}
_GEN1_KINDS = {
    "google.storage.object.finalize": EventKind.CREATED,
    "google.storage.object.metadataUpdate": EventKind.CREATED,
    "google.storage.object.delete": EventKind.DELETED,
    "google.storage.object.archive": EventKind.DELETED,
}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def object_event(
    kind: EventKind,
    resource: Any,
    event_id: str | None,
    time: str | None,
    cause: str | None = None,
) -> ObjectEvent:
    """An event from a Cloud Storage object resource (the JSON API's object)."""
    obj = read(GcsObject, resource, "object resource")
    moment = event_time(time, "event time") if time is not None else obj.updated
    if moment is None:
        raise PayloadError("object resource without an event time or `updated`")
    metageneration = GCS_FINAL_METAGENERATION if kind is EventKind.DELETED else obj.metageneration
    return ObjectEvent(
        kind=kind,
        provider="gcs",
        bucket=obj.bucket,
        key=obj.name,
        event_time=moment,
        token=gcs_token(obj.generation, metageneration),
        size=obj.size if kind is EventKind.CREATED else None,
        etag=obj.md5Hash or obj.etag,
        version=str(obj.generation) if obj.generation is not None else None,
        content_type=obj.contentType,
        event_id=event_id,
        cause=cause,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_cloud_event(attributes: Mapping[str, Any], data: Any) -> Message:
    """A CloudEvent: `attributes` are the CloudEvent attributes (from a structured body or
    the `ce-` headers of binary mode). A Cloud Storage event's `data` is the object
    resource; a Pub/Sub `messagePublished` event's `data` carries the notification."""
    if attributes.get("type") == PUBSUB_CLOUD_EVENT:
        return parse_pubsub_cloud_event(attributes, data)
    raw = _dumps({"attributes": dict(attributes), "data": data})
    message = Message(id=_text(attributes.get("id")) or "", source="gcp:cloudevent", raw=raw)
    kind = _CLOUD_EVENT_KINDS.get(str(attributes.get("type")))
    if kind is None:
        message.error = f"unsupported CloudEvent type {str(attributes.get('type'))[:80]!r}"
        return message
    if not isinstance(data, Mapping):
        message.error = "CloudEvent data is not an object resource"
        return message
    if kind is EventKind.DELETED and data.get("overwrittenByGeneration"):
        return message
    try:
        message.events = [
            object_event(
                kind, data, message.id, _text(attributes.get("time")), str(attributes["type"])
            )
        ]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def parse_structured_cloud_event(body: Any) -> Message:
    """The structured HTTP mode: one JSON document with the attributes and `data`."""
    if not isinstance(body, Mapping):
        return Message(
            id="",
            source="gcp:cloudevent",
            raw=_dumps(body),
            error=f"CloudEvent body is not a JSON object (got {type(body).__name__})",
        )
    attributes = {k: v for k, v in body.items() if k != "data"}
    return parse_cloud_event(attributes, body.get("data"))


def parse_binary_cloud_event(headers: Mapping[str, str], body: bytes) -> Message:
    """The binary HTTP mode: attributes in `ce-` headers, the object resource as the body."""
    attributes = {k.lower()[3:]: v for k, v in headers.items() if k.lower().startswith("ce-")}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return Message(
            id=attributes.get("id", ""),
            source="gcp:cloudevent",
            raw=body.decode("utf-8", "replace"),
            error="CloudEvent body is not JSON",
        )
    return parse_cloud_event(attributes, data)


def parse_background_event(data: Any, context: Any) -> Message:
    """A gen1 background function: (`data` = object resource, `context` with eventType),
    or on a Pub/Sub trigger (`data` = {data (base64), attributes})."""

    def attr(name: str) -> Any:
        return context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)

    event_type = attr("event_type") or attr("eventType")
    event_id = str(attr("event_id") or attr("eventId") or "")
    if event_type == PUBSUB_GEN1_EVENT:
        return _pubsub_of(event_id, data, source="gcp:gen1-pubsub")
    message = Message(id=event_id, source="gcp:gen1", raw=_dumps(data))
    kind = _GEN1_KINDS.get(str(event_type))
    if kind is None:
        message.error = f"unsupported background event type {str(event_type)[:80]!r}"
        return message
    if not isinstance(data, Mapping):
        message.error = "background event data is not an object resource"
        return message
    if kind is EventKind.DELETED and data.get("overwrittenByGeneration"):
        return message
    try:
        timestamp = attr("timestamp")
        message.events = [object_event(kind, data, event_id, _text(timestamp), str(event_type))]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def parse_pubsub_message(
    message_id: str, attributes: Mapping[str, Any], data: bytes, source: str = "gcp:pubsub"
) -> Message:
    """A Cloud Storage Pub/Sub notification (payload format JSON_API_V1 or NONE)."""
    raw = _dumps({"attributes": dict(attributes), "data": data.decode("utf-8", "replace")})
    message = Message(id=message_id, source=source, raw=raw)
    try:
        notice = read(GcsAttributes, attributes, "notification attributes")
        kind = _NOTIFICATION_KINDS.get(notice.eventType)
        if kind is None:
            raise PayloadError(f"unsupported notification eventType {notice.eventType[:80]!r}")
        if kind is EventKind.DELETED and notice.overwrittenByGeneration is not None:
            return message
        resource: Any = _resource(data) or {
            "bucket": notice.bucketId,
            "name": notice.objectId,
            "generation": notice.objectGeneration,
        }
        time = attributes.get("eventTime")
        message.events = [object_event(kind, resource, message_id, _text(time), notice.eventType)]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def _resource(data: bytes) -> Any:
    """The JSON_API_V1 payload, or None for payload format NONE."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise PayloadError("notification payload is not JSON") from None


def _pubsub_of(message_id: str, pushed: Any, source: str) -> Message:
    """A Pub/Sub message as JSON carries it: base64 `data` and `attributes`."""
    try:
        envelope = read(PubsubMessage, pushed, "Pub/Sub message")
        data = envelope.payload()
    except PayloadError as exc:
        return Message(id=message_id, source=source, raw=_dumps(pushed), error=str(exc))
    return parse_pubsub_message(message_id or envelope.id, envelope.attributes, data, source)


def parse_push_envelope(body: Any) -> Message:
    """A Pub/Sub push request body: {"message": {attributes, data (base64), messageId}, ...}."""
    pushed = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(pushed, Mapping):
        message = Message(id="", source="gcp:pubsub-push", raw=_dumps(body))
        message.error = "push body without a message"
        return message
    subscription = body.get("subscription", "") if isinstance(body, Mapping) else ""
    return _pubsub_of("", pushed, f"gcp:pubsub-push:{str(subscription)[:200]}")


def parse_pubsub_cloud_event(attributes: Mapping[str, Any], data: Any) -> Message:
    """A gen2 function on a Pub/Sub topic: `data` is {"message": {...}, "subscription"}."""
    pushed = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(pushed, Mapping):
        raw = _dumps({"attributes": dict(attributes), "data": data})
        return Message(
            id=_text(attributes.get("id")) or "",
            source="gcp:pubsub-cloudevent",
            raw=raw,
            error="messagePublished CloudEvent without data.message",
        )
    subscription = data.get("subscription", "") if isinstance(data, Mapping) else ""
    return _pubsub_of("", pushed, f"gcp:pubsub-cloudevent:{str(subscription)[:200]}")
