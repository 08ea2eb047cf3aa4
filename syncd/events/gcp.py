"""Google Cloud Storage: CloudEvents (structured and binary HTTP), gen1 background-function
payloads, and Pub/Sub notifications (push envelope, pulled message, and the Pub/Sub-triggered
function forms: the gen2 `messagePublished` CloudEvent and the gen1 Pub/Sub event).

An OBJECT_DELETE or OBJECT_ARCHIVE that carries `overwrittenByGeneration` is an overwrite:
the new generation's finalize carries the new state, so the delete is acknowledged and
ignored. Otherwise both hide the object (an archived generation never becomes live again),
and are ordered after every metadata update of their generation. A metadata update
refreshes the object at its new metageneration."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from syncd.events.aws import PayloadError
from syncd.events.timeparse import epoch
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


def object_event(
    kind: EventKind,
    resource: Mapping[str, Any],
    event_id: str | None,
    time: str | None,
    cause: str | None = None,
) -> ObjectEvent:
    """An event from a Cloud Storage object resource (the JSON API's object)."""
    bucket, name = resource.get("bucket"), resource.get("name")
    if not bucket or not name:
        raise PayloadError("object resource without bucket or name")
    md5 = resource.get("md5Hash")
    etag = base64.b64decode(md5).hex() if md5 else resource.get("etag")
    size = resource.get("size")
    metageneration = (
        GCS_FINAL_METAGENERATION if kind is EventKind.DELETED else resource.get("metageneration")
    )
    return ObjectEvent(
        kind=kind,
        provider="gcs",
        bucket=str(bucket),
        key=str(name),
        event_time=epoch(time or resource.get("updated")),
        token=gcs_token(resource.get("generation"), metageneration),
        size=int(size) if size is not None and kind is EventKind.CREATED else None,
        etag=etag,
        version=str(resource["generation"]) if resource.get("generation") else None,
        content_type=resource.get("contentType"),
        event_id=event_id,
        cause=cause,
    )


def parse_cloud_event(attributes: Mapping[str, Any], data: Any) -> Message:
    """A CloudEvent: `attributes` are the CloudEvent attributes (from a structured body or
    the `ce-` headers of binary mode). A Cloud Storage event's `data` is the object
    resource; a Pub/Sub `messagePublished` event's `data` carries the notification."""
    if attributes.get("type") == PUBSUB_CLOUD_EVENT:
        return parse_pubsub_cloud_event(attributes, data)
    raw = json.dumps({"attributes": dict(attributes), "data": data}, default=str)
    message = Message(id=str(attributes.get("id", "")), source="gcp:cloudevent", raw=raw)
    kind = _CLOUD_EVENT_KINDS.get(str(attributes.get("type")))
    if kind is None:
        message.error = f"unsupported CloudEvent type {attributes.get('type')!r}"
        return message
    if not isinstance(data, Mapping):
        message.error = "CloudEvent data is not an object resource"
        return message
    if kind is EventKind.DELETED and data.get("overwrittenByGeneration"):
        return message
    try:
        message.events = [
            object_event(kind, data, message.id, attributes.get("time"), str(attributes["type"]))
        ]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def parse_structured_cloud_event(body: Mapping[str, Any]) -> Message:
    """The structured HTTP mode: one JSON document with the attributes and `data`."""
    attributes = {k: v for k, v in body.items() if k != "data"}
    return parse_cloud_event(attributes, body.get("data"))


def parse_binary_cloud_event(headers: Mapping[str, str], body: bytes) -> Message:
    """The binary HTTP mode: attributes in `ce-` headers, the object resource as the body."""
    attributes = {k.lower()[3:]: v for k, v in headers.items() if k.lower().startswith("ce-")}
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        message = Message(
            id=attributes.get("id", ""),
            source="gcp:cloudevent",
            raw=body.decode("utf-8", "replace"),
        )
        message.error = "CloudEvent body is not JSON"
        return message
    return parse_cloud_event(attributes, data)


def parse_background_event(data: Mapping[str, Any], context: Any) -> Message:
    """A gen1 background function: (`data` = object resource, `context` with eventType)."""

    def attr(name: str) -> Any:
        return context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)

    event_type = attr("event_type") or attr("eventType")
    event_id = str(attr("event_id") or attr("eventId") or "")
    if event_type == PUBSUB_GEN1_EVENT:
        return _pubsub_of(event_id, data, source="gcp:gen1-pubsub")
    message = Message(id=event_id, source="gcp:gen1", raw=json.dumps(dict(data), default=str))
    kind = _GEN1_KINDS.get(str(event_type))
    if kind is None:
        message.error = f"unsupported background event type {event_type!r}"
        return message
    if kind is EventKind.DELETED and data.get("overwrittenByGeneration"):
        return message
    try:
        message.events = [object_event(kind, data, event_id, attr("timestamp"), str(event_type))]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def parse_pubsub_message(
    message_id: str, attributes: Mapping[str, str], data: bytes, source: str = "gcp:pubsub"
) -> Message:
    """A Cloud Storage Pub/Sub notification (payload format JSON_API_V1)."""
    raw = json.dumps({"attributes": dict(attributes), "data": data.decode("utf-8", "replace")})
    message = Message(id=message_id, source=source, raw=raw)
    kind = _NOTIFICATION_KINDS.get(str(attributes.get("eventType")))
    if kind is None:
        message.error = f"unsupported notification eventType {attributes.get('eventType')!r}"
        return message
    if kind is EventKind.DELETED and attributes.get("overwrittenByGeneration"):
        return message
    try:
        resource = json.loads(data) if data else {}
    except json.JSONDecodeError:
        resource = {}
    if not resource:
        resource = {
            "bucket": attributes.get("bucketId"),
            "name": attributes.get("objectId"),
            "generation": attributes.get("objectGeneration"),
        }
    try:
        message.events = [
            object_event(
                kind, resource, message_id, attributes.get("eventTime"), attributes.get("eventType")
            )
        ]
    except PayloadError as exc:
        message.error = str(exc)
    return message


def _pubsub_of(message_id: str, pushed: Mapping[str, Any], source: str) -> Message:
    """A Pub/Sub message as JSON carries it: base64 `data` and `attributes`."""
    try:
        data = base64.b64decode(pushed.get("data") or "")
    except ValueError:
        data = b""
    return parse_pubsub_message(
        message_id or str(pushed.get("messageId") or pushed.get("message_id") or ""),
        pushed.get("attributes") or {},
        data,
        source=source,
    )


def parse_push_envelope(body: Mapping[str, Any]) -> Message:
    """A Pub/Sub push request body: {"message": {attributes, data (base64), messageId}, ...}."""
    pushed = body.get("message")
    if not isinstance(pushed, Mapping):
        message = Message(id="", source="gcp:pubsub-push", raw=json.dumps(dict(body), default=str))
        message.error = "push body without a message"
        return message
    return _pubsub_of("", pushed, f"gcp:pubsub-push:{body.get('subscription', '')}")


def parse_pubsub_cloud_event(attributes: Mapping[str, Any], data: Any) -> Message:
    """A gen2 function on a Pub/Sub topic: `data` is {"message": {...}, "subscription"}."""
    pushed = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(pushed, Mapping):
        raw = json.dumps({"attributes": dict(attributes), "data": data}, default=str)
        message = Message(id=str(attributes.get("id", "")), source="gcp:pubsub-cloudevent", raw=raw)
        message.error = "messagePublished CloudEvent without data.message"
        return message
    return _pubsub_of("", pushed, f"gcp:pubsub-cloudevent:{data.get('subscription', '')}")
