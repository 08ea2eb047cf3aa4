"""Azure Blob Storage: Event Grid events in the Event Grid schema and the CloudEvents schema
(both delivered as JSON arrays), the subscription-validation handshake, and blob-trigger
input. The container is the bucket; the blob name comes from the subject
`/blobServices/default/containers/CONTAINER/blobs/NAME`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from syncd.events.payloads import BlobEventData, GridEvent, PayloadError, read, storable
from syncd.events.types import EventKind, Message, ObjectEvent, azure_token

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_KINDS = {
    "Microsoft.Storage.BlobCreated": EventKind.CREATED,
    "Microsoft.Storage.BlobDeleted": EventKind.DELETED,
}


def _split_subject(subject: str) -> tuple[str, str]:
    marker = "/containers/"
    head, _, rest = subject.partition(marker)
    container, sep, name = rest.partition("/blobs/")
    if (not head.endswith("/blobServices/default") and head != "/blobServices/default") or not sep:
        raise PayloadError(f"subject {subject[:200]!r} does not name a blob")
    return container, name


def _names_a_version(url: str | None) -> bool:
    """A delete of a previous version or a snapshot leaves the base blob as it is."""
    query = urlsplit(url or "").query.lower()
    return "versionid=" in query or "snapshot=" in query


def event_of(document: Any) -> ObjectEvent | None:
    """One Event Grid or CloudEvents-schema event; None for types syncd does not track.

    BlobDeleted hides the blob (on versioning or soft-delete accounts too: the current
    version becomes a previous one), unless its URL names a version or snapshot.
    """
    event = read(GridEvent, document, "Event Grid event")
    event_type = event.eventType or event.type or ""
    kind = _KINDS.get(event_type)
    if kind is None:
        return None
    data = event.data or BlobEventData()
    if kind is EventKind.DELETED and _names_a_version(data.url):
        return None
    container, name = _split_subject(event.subject)
    if not name:
        raise PayloadError("event without a blob name")
    try:
        key = storable(name)
    except ValueError as exc:
        raise PayloadError(f"blob name {exc}") from None
    moment = event.eventTime if event.eventTime is not None else event.time
    if moment is None:
        raise PayloadError("event without eventTime or time")
    return ObjectEvent(
        kind=kind,
        provider="azure",
        bucket=container,
        key=key,
        event_time=moment,
        token=azure_token(data.sequencer),
        size=data.contentLength if kind is EventKind.CREATED else None,
        etag=(data.eTag or "").strip('"') or None,
        content_type=data.contentType,
        event_id=event.id or None,
        cause=event_type,
    )


def validation_code(events: Any) -> str | None:
    """The code to echo when this is an Event Grid subscription-validation request."""
    if isinstance(events, list) and events and isinstance(events[0], Mapping):
        first = events[0]
        if first.get("eventType") == VALIDATION_EVENT:
            return str((first.get("data") or {}).get("validationCode", ""))
    return None


def parse_event_grid_batch(events: Any, source: str = "azure:eventgrid") -> list[Message]:
    """A delivered array (either schema); each event is its own message for dead-lettering."""
    if isinstance(events, Mapping):
        events = [events]
    if not isinstance(events, list):
        return [
            Message(
                id="",
                source=source,
                raw=json.dumps(events, default=str),
                error="Event Grid delivery is not a JSON array",
            )
        ]
    out = []
    for document in events:
        raw = json.dumps(document, default=str)
        if not isinstance(document, Mapping):
            out.append(Message(id="", source=source, raw=raw, error="event is not an object"))
            continue
        message = Message(id=str(document.get("id", ""))[:200], source=source, raw=raw)
        try:
            event = event_of(document)
            if event is not None:
                message.events = [event]
            elif str(document.get("eventType") or document.get("type") or "").startswith(
                "Microsoft.Storage."
            ):
                pass
            else:
                kind = str(document.get("eventType") or document.get("type"))[:80]
                message.error = f"unsupported event type {kind!r}"
        except PayloadError as exc:
            message.error = str(exc)
        out.append(message)
    return out


def parse_blob_trigger(name: str, length: int | None, uri: str | None = None) -> Message:
    """Blob-trigger input: `name` is `CONTAINER/PATH` (the trigger's {name} binding path)."""
    container, _, key = name.partition("/")
    message = Message(
        id=uri or name, source="azure:blobtrigger", raw=json.dumps({"name": name, "length": length})
    )
    if not key:
        message.error = f"blob trigger name {name!r} has no container/blob form"
        return message
    message.events = [
        ObjectEvent(
            EventKind.CREATED, "azure", container, key, time.time(), size=length, event_id=uri
        )
    ]
    return message
