"""The Azure Functions app with azure-functions' own request and event objects."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import azure.functions as func
import pytest

from syncd.catalog import Catalog
from tests.handlers.conftest import ROUTES, fresh

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


class Invocation(func.Context):
    """What the Functions host passes as `context` (the host itself cannot run here)."""

    invocation_id = "3f1c2a9e-0000-4000-8000-000000000001"
    function_name = "test"
    function_directory = "."
    trace_context = None  # type: ignore[assignment]
    retry_context = None  # type: ignore[assignment]
    thread_local_storage = None  # type: ignore[assignment]


def call(function: object, *args: object) -> func.HttpResponse:
    # The v2 model wraps each function; the user function is kept on the builder.
    user = getattr(function, "_function", None)
    target = user.get_user_function() if user is not None else function
    return target(*args, Invocation())  # type: ignore[no-any-return, operator]


def request(
    method: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url="http://localhost/api/events", body=body, headers=headers or {}
    )


def test_validation_handshakes(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    _, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="azure", bucket="test-container"))
    app = fresh("handlers.azure_function.function_app")
    body = (FIXTURES / "azure-eventgrid-validation.json").read_bytes()
    response = call(app.webhook, request("POST", body))
    assert json.loads(response.get_body()) == {
        "validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    }
    options = call(
        app.webhook, request("OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    )
    assert options.status_code == 200
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_event_grid_and_cloudevents_batches(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="azure", bucket="test-container"))
    app = fresh("handlers.azure_function.function_app")
    for name in ("azure-eventgrid-batch.json", "azure-cloudevents-batch.json"):
        response = call(app.webhook, request("POST", (FIXTURES / name).read_bytes()))
        assert response.status_code == 200
    items = {i.key: i.deleted for i in catalog.items("inbox", include_deleted=True)}
    assert items == {"new file+1.txt": False, "ünï/old.png": True}


def test_event_grid_trigger(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="azure", bucket="test-container"))
    app = fresh("handlers.azure_function.function_app")
    (document, _) = json.loads((FIXTURES / "azure-eventgrid-batch.json").read_text())
    event = func.EventGridEvent(
        id=document["id"],
        data=document["data"],
        topic=document["topic"],
        subject=document["subject"],
        event_type=document["eventType"],
        event_time=datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC),
        data_version="1",
    )
    call(app.on_blob_event, event)
    assert [i.key for i in catalog.items("inbox")] == ["new file+1.txt"]
