"""The Cloud Functions entry points through functions-framework's own test client."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from functions_framework import create_app

from syncd.catalog import Catalog
from tests.handlers.conftest import ROUTES, fresh, json_lines

SOURCE = str(Path(__file__).resolve().parents[2] / "handlers" / "gcp_function" / "main.py")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def test_cloud_event_structured_and_binary(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="gcs", bucket="my-bucket"))
    fresh("handlers.gcp_function.main")
    client = create_app("on_storage_event", SOURCE, "cloudevent").test_client()  # type: ignore[no-untyped-call]
    document = json.loads((FIXTURES / "gcp-cloudevent-finalized.json").read_text())
    response = client.post(
        "/", json=document, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 200
    (item,) = catalog.items("inbox")
    assert (item.key, item.size, item.version) == ("images/photo 1.jpg", 3, "1700000000000001")

    deleted = {
        **document,
        "id": "2",
        "type": "google.cloud.storage.object.v1.deleted",
        "time": "2026-11-23T09:00:00Z",
    }
    headers = {f"ce-{k}": str(v) for k, v in deleted.items() if k != "data"}
    response = client.post(
        "/",
        data=json.dumps(deleted["data"]),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert [i.deleted for i in catalog.items("inbox", include_deleted=True)] == [True]


def test_pubsub_push_and_poison(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="gcs", bucket="my-bucket"))
    fresh("handlers.gcp_function.main")
    client = create_app("on_pubsub_push", SOURCE, "http").test_client()  # type: ignore[no-untyped-call]
    body = json.loads((FIXTURES / "gcp-pubsub-push-finalize.json").read_text())
    assert client.post("/", json=body).status_code == 204
    assert [i.key for i in catalog.items("inbox")] == ["images/photo+plus.jpg"]
    poison = {
        "message": {
            "attributes": {"eventType": "OBJECT_FINALIZE"},
            "data": base64.b64encode(b"{}").decode(),
            "messageId": "p",
        }
    }
    assert client.post("/", json=poison).status_code == 204
    assert "bucket: is missing" in catalog.dead_letters()[0].reason


def test_gen1_background_entry(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="gcs", bucket="my-bucket"))
    handler = fresh("handlers.gcp_function.main")
    payload = json.loads((FIXTURES / "gcp-background-delete.json").read_text())
    handler.on_storage_event_gen1(payload["data"], payload["context"])
    (item,) = catalog.items("inbox", include_deleted=True)
    assert (item.key, item.deleted) == ("日本/写真.png", True)


def test_pubsub_triggered_functions_gen2_and_gen1(
    wired: tuple[Catalog, pytest.MonkeyPatch], capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="gcs", bucket="my-bucket"))
    handler = fresh("handlers.gcp_function.main")
    client = create_app("on_storage_event", SOURCE, "cloudevent").test_client()  # type: ignore[no-untyped-call]
    document = json.loads((FIXTURES / "gcp-pubsub-cloudevent.json").read_text())
    response = client.post(
        "/", json=document, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 200
    assert [i.key for i in catalog.items("inbox")] == ["images/photo+plus.jpg"]

    gen1 = json.loads((FIXTURES / "gcp-gen1-pubsub.json").read_text())
    gen1["data"]["attributes"]["eventType"] = "OBJECT_DELETE"
    handler.on_storage_event_gen1(gen1["data"], gen1["context"])
    assert [i.deleted for i in catalog.items("inbox", include_deleted=True)] == [True]
    poison = {**document, "id": "poison-7", "data": {"subscription": "s"}}
    client.post("/", json=poison, headers={"Content-Type": "application/cloudevents+json"})
    lines = json_lines(capsys.readouterr().err)
    (dead,) = [line for line in lines if line["message"] == "message dead-lettered"]
    assert (dead["event_id"], dead["severity"]) == ("poison-7", "WARNING")
