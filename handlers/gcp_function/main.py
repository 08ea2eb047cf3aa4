"""Google Cloud Functions entry points for Cloud Storage events.

- `on_storage_event` (gen2, CloudEvents): a Cloud Storage trigger
  (`google.cloud.storage.object.v1.*`) or a Pub/Sub trigger on the bucket's notification
  topic (`google.cloud.pubsub.topic.v1.messagePublished`), routed by the event's type;
- `on_pubsub_push`: an HTTP function behind a Pub/Sub push subscription;
- `on_storage_event_gen1`: a gen1 background function on a Cloud Storage or a Pub/Sub
  trigger (`google.pubsub.topic.publish`), routed by the context's event type.

Configure with SYNCD_CATALOG_URL and SYNCD_CONFIG or SYNCD_CONFIG_YAML, or with SYNCD_INGEST_URL
and SYNCD_INGEST_TOKEN to forward to the daemon's ingest API instead. An exception makes
the platform deliver again; a payload that cannot be parsed is dead-lettered and accepted.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from syncd import logs
from syncd.events.gcp import parse_background_event, parse_cloud_event, parse_push_envelope
from syncd.events.sink import Sink, open_sink
from syncd.events.types import Message

logs.configure(function=True)
_sink: Sink | None = None


def _apply(message: Message) -> None:
    global _sink
    _sink = _sink or open_sink("gcp")
    if _sink.handle([message]).failed:
        raise RuntimeError("change not committed; retry")


@functions_framework.cloud_event
def on_storage_event(cloud_event: Any) -> None:
    attributes = dict(cloud_event.get_attributes())
    logs.bind_request(event_id=attributes.get("id"))
    _apply(parse_cloud_event(attributes, cloud_event.get_data()))


@functions_framework.http
def on_pubsub_push(request: Any) -> tuple[str, int]:
    logs.bind_request(execution_id=request.headers.get("Function-Execution-Id"))
    _apply(parse_push_envelope(request.get_json(silent=True) or {}))
    return "", 204


def on_storage_event_gen1(data: dict[str, Any], context: Any) -> None:
    logs.bind_request(event_id=getattr(context, "event_id", None))
    _apply(parse_background_event(data, context))
