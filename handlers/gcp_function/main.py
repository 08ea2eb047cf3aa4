"""Google Cloud Functions entry points for Cloud Storage events.

`on_storage_event` (gen2, Eventarc CloudEvents; structured or binary), `on_pubsub_push` (an
HTTP function behind a Pub/Sub push subscription), `on_storage_event_gen1` (background).
Configure with SYNCD_CATALOG_URL and SYNCD_CONFIG or SYNCD_CONFIG_YAML. An exception makes
the platform deliver again; a payload that cannot be parsed is dead-lettered and accepted.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from syncd.events.gcp import parse_background_event, parse_cloud_event, parse_push_envelope
from syncd.events.sink import CatalogSink
from syncd.events.types import Message

_sink: CatalogSink | None = None


def _apply(message: Message) -> None:
    global _sink
    _sink = _sink or CatalogSink()
    if _sink.handle([message]).failed:
        raise RuntimeError("change not committed; retry")


@functions_framework.cloud_event
def on_storage_event(cloud_event: Any) -> None:
    _apply(parse_cloud_event(dict(cloud_event.get_attributes()), cloud_event.get_data()))


@functions_framework.http
def on_pubsub_push(request: Any) -> tuple[str, int]:
    _apply(parse_push_envelope(request.get_json(silent=True) or {}))
    return "", 204


def on_storage_event_gen1(data: dict[str, Any], context: Any) -> None:
    _apply(parse_background_event(data, context))
