"""Azure Functions (Python v2 model) for Blob Storage events.

`on_blob_event`: an Event Grid trigger. `webhook`: an HTTP endpoint for an Event Grid
webhook subscription in either schema; it answers the subscription-validation handshake
(Event Grid schema) and the CloudEvents abuse-protection OPTIONS handshake. Configure with
SYNCD_CATALOG_URL and SYNCD_CONFIG or SYNCD_CONFIG_YAML, or with SYNCD_INGEST_URL and
SYNCD_INGEST_TOKEN to forward to the daemon's ingest API instead.
"""

from __future__ import annotations

import json

import azure.functions as func

from syncd import logs
from syncd.events.azure import parse_event_grid_batch, validation_code
from syncd.events.sink import Sink, open_sink
from syncd.events.types import Message

logs.configure(function=True)
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_sink: Sink | None = None


def _apply(messages: list[Message]) -> list[str]:
    global _sink
    _sink = _sink or open_sink("azure")
    return _sink.handle(messages).failed


@app.event_grid_trigger(arg_name="event")
def on_blob_event(event: func.EventGridEvent, context: func.Context) -> None:
    logs.bind_request(invocation_id=context.invocation_id, event_id=event.id)
    document = {
        "id": event.id,
        "eventType": event.event_type,
        "subject": event.subject,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
    }
    if _apply(parse_event_grid_batch([document])):
        raise RuntimeError("change not committed; retry")


@app.route(route="events", methods=["POST", "OPTIONS"])
def webhook(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    logs.bind_request(invocation_id=context.invocation_id)
    if req.method == "OPTIONS":
        origin = req.headers.get("WebHook-Request-Origin", "")
        return func.HttpResponse(status_code=200, headers={"WebHook-Allowed-Origin": origin})
    try:
        body = req.get_json()
    except ValueError:
        body = req.get_body().decode("utf-8", "replace")
    code = validation_code(body)
    if code is not None:
        return func.HttpResponse(
            json.dumps({"validationResponse": code}), mimetype="application/json"
        )
    if _apply(parse_event_grid_batch(body)):
        return func.HttpResponse(
            json.dumps({"error": "not committed; retry"}),
            status_code=503,
            mimetype="application/json",
        )
    return func.HttpResponse(status_code=200)
