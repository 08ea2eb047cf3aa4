"""Every function entry point against malformed payloads: the providers' documented samples
with fields swapped for wrong types, out-of-range numbers, bad base64, bad UTF-8 and nesting.

Whatever arrives, no exception escapes, the platform is answered success for what was
committed or dead-lettered, a good message in the same delivery is applied, and nothing of a
wrong type is stored — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.catalog import Catalog, open_catalog
from tests.handlers.conftest import fresh

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ROUTES = """\
integrations: [{name: a, provider: s3}, {name: g, provider: gcs}, {name: z, provider: azure}]
drivers:
  - {name: aws, integration: a, bucket: amzn-s3-demo-bucket}
  - {name: gcp, integration: g, bucket: my-bucket}
  - {name: az, integration: z, bucket: test-container}
datasets: [{name: inbox, drivers: [aws, gcp, az]}]
"""

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["", "yesterday", "abc", "\x00", "\ud800", "9999-12-31T23:59:59Z", "%FF%FE", "+" * 5]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value can be replaced."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def replaced(document: Any, where: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(document)
    target = out
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    return out


@st.composite
def mutated(draw: Any, document: Any, count: int = 3) -> Any:
    places = paths(document)
    out = document
    for _ in range(draw(st.integers(1, count))):
        places = paths(out)
        if not places:
            break
        out = replaced(out, draw(st.sampled_from(places)), draw(odd_values))
    return out


def dumps(value: Any) -> str:
    # NaN and huge numbers are what a sender may put on the wire; surrogates too.
    return json.dumps(value, allow_nan=True)


def assert_types_stored(catalog: Catalog) -> None:
    for item in catalog.items("inbox", include_deleted=True):
        assert isinstance(item.size, int) and 0 <= item.size < 2**63
        assert isinstance(item.mtime, float) and math.isfinite(item.mtime)
        assert item.etag is None or isinstance(item.etag, str)
        item.key.encode("utf-8")
        assert "\x00" not in item.key


def applied_keys(catalog: Catalog) -> set[str]:
    return {i.key for i in catalog.items("inbox", include_deleted=True)}


def s3_record(key: str) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-23T08:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "amzn-s3-demo-bucket"},
            "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "0A"},
        },
    }


_count = iter(range(10**9))


@pytest.fixture
def routed(wired: tuple[Catalog, pytest.MonkeyPatch]) -> Catalog:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES)
    return catalog


@SETTINGS
@given(data=st.data())
def test_lambda_never_raises_and_applies_the_good_message(routed: Catalog, data: Any) -> None:
    handler = fresh("handlers.aws_lambda")
    sqs = json.loads((FIXTURES / "aws-sqs-lambda.json").read_text())
    bodies = [json.loads(r["body"]) for r in sqs["Records"] if r["body"].startswith("{")]
    bad = data.draw(mutated(data.draw(st.sampled_from(bodies))))
    good = f"good/{next(_count)}.jpg"
    records = [
        {
            "messageId": "bad",
            "body": data.draw(st.sampled_from([dumps(bad), dumps(bad)[:-3]])),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        },
        {
            "messageId": "good",
            "body": json.dumps({"Records": [s3_record(good)]}),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        },
    ]
    assert handler.handler({"Records": records}, None) == {"batchItemFailures": []}
    assert good in applied_keys(routed)
    direct = data.draw(mutated(json.loads((FIXTURES / "aws-s3-direct.json").read_text())))
    response = handler.handler(direct, None)
    assert set(response) == {"applied", "ignored", "dead_lettered"}
    assert_types_stored(routed)


@SETTINGS
@given(data=st.data())
def test_cloud_functions_never_answer_5xx(routed: Catalog, data: Any) -> None:
    from functions_framework import create_app

    fresh("handlers.gcp_function.main")
    source = str(Path(__file__).resolve().parents[2] / "handlers" / "gcp_function" / "main.py")
    document = json.loads((FIXTURES / "gcp-cloudevent-finalized.json").read_text())
    events = create_app("on_storage_event", source, "cloudevent").test_client()  # type: ignore[no-untyped-call]
    # The envelope is the framework's to parse (functions-framework refuses a malformed one
    # before any handler runs); what the handler reads is `data`.
    bad = {**document, "data": data.draw(st.one_of(mutated(document["data"]), odd_values))}
    response = events.post(
        "/", data=dumps(bad), headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code < 500
    push = json.loads((FIXTURES / "gcp-pubsub-push-finalize.json").read_text())
    message = push["message"]
    resource = json.loads(base64.b64decode(message["data"]))
    broken = data.draw(mutated(resource))
    raw = data.draw(
        st.sampled_from(
            [dumps(broken).encode(), b"\xff\xfe not utf-8", b"not base64 at all!!", b"{}"]
        )
    )
    message = {**message, "data": base64.b64encode(raw).decode()}
    if data.draw(st.booleans()):
        message["data"] = "%%%not-base64%%%"
    pushes = create_app("on_pubsub_push", source, "http").test_client()  # type: ignore[no-untyped-call]
    assert pushes.post("/", json={**push, "message": message}).status_code == 204
    good = f"good/{next(_count)}.jpg"
    resource["name"] = good
    ok = {**push["message"], "data": base64.b64encode(json.dumps(resource).encode()).decode()}
    assert pushes.post("/", json={**push, "message": ok}).status_code == 204
    assert good in applied_keys(routed)
    assert_types_stored(routed)


@SETTINGS
@given(data=st.data())
def test_azure_webhook_never_answers_5xx(routed: Catalog, data: Any) -> None:
    import azure.functions as func

    from tests.handlers.test_azure_function import call, request

    app = fresh("handlers.azure_function.function_app")
    batch = json.loads((FIXTURES / "azure-eventgrid-batch.json").read_text())
    bad = data.draw(mutated(batch[0]))
    good = {**batch[0], "id": f"g{next(_count)}"}
    good["subject"] = good["subject"].rsplit("/", 1)[0] + f"/good-{good['id']}.txt"
    body = data.draw(
        st.sampled_from(
            [
                dumps([bad, good]).encode(),
                dumps([{**bad, "data": "a string"}, good]).encode(),
                dumps([bad, good]).encode().replace(b"test-container", b"\xff\xfe"),
            ]
        )
    )
    response: func.HttpResponse = call(app.webhook, request("POST", body))
    assert response.status_code < 500
    if b"\xff" not in body:
        assert good["subject"].rsplit("/", 1)[1] in applied_keys(routed)
    assert_types_stored(routed)


def test_a_message_the_catalog_refuses_is_isolated_and_dead_lettered(routed: Catalog) -> None:
    """Defence behind validation: a batch whose commit fails is split until the message at
    fault is alone; it is dead-lettered, the others committed."""
    from syncd.config import parse_config
    from syncd.events.apply import EventApplier, apply_all
    from syncd.events.types import EventKind, Message, ObjectEvent

    applier = EventApplier(routed, parse_config(ROUTES, "r.yaml"))

    def message(n: int, key: str) -> Message:
        event = ObjectEvent(EventKind.CREATED, "s3", "amzn-s3-demo-bucket", key, 1.0, size=1)
        return Message(f"m{n}", "test", "{}", [event])

    batch = [message(n, f"ok/{n}") for n in range(9)]
    batch.insert(4, message(99, "bad\ud800key"))
    result = apply_all(applier, batch, batch=10)
    assert result.failed == [] and result.dead_lettered == 1
    assert {f"ok/{n}" for n in range(9)} <= applied_keys(routed)
    (letter,) = routed.dead_letters()
    assert letter.message_id == "m99" and "cannot be stored" in letter.reason


def test_a_redelivered_poison_message_is_one_dead_letter(routed: Catalog) -> None:
    handler = fresh("handlers.aws_lambda")
    event = {
        "Records": [
            {
                "messageId": "same",
                "body": "{nope",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }
    for _ in range(3):
        handler.handler(event, None)
    (letter,) = routed.dead_letters()
    assert (letter.message_id, letter.attempts) == ("same", 3)


def test_a_warm_handler_reconnects_after_the_database_dropped(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's case: a server connection a warm function instance kept is gone."""
    monkeypatch.setenv("SYNCD_CATALOG_URL", postgres_url)
    monkeypatch.setenv("SYNCD_CONFIG_YAML", ROUTES)
    catalog = open_catalog(postgres_url)
    handler = fresh("handlers.aws_lambda")

    def invoke(key: str) -> dict[str, Any]:
        body = json.dumps({"Records": [s3_record(key)]})
        records = [
            {
                "messageId": key,
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
        response: dict[str, Any] = handler.handler({"Records": records}, None)
        return response

    assert invoke("first.jpg") == {"batchItemFailures": []}
    pid = handler._sink.applier.catalog._conn.info.backend_pid
    import psycopg

    from tests.conftest import PG_URL

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert invoke("second.jpg") == {"batchItemFailures": []}
    assert {"first.jpg", "second.jpg"} <= applied_keys(catalog)
    catalog.close()


def test_deletes_follow_allow_external_delete(wired: tuple[Catalog, pytest.MonkeyPatch]) -> None:
    catalog, env = wired
    env.setenv(
        "SYNCD_CONFIG_YAML",
        ROUTES.replace(
            "bucket: amzn-s3-demo-bucket}",
            "bucket: amzn-s3-demo-bucket, allow_external_delete: false}",
        ),
    )
    handler = fresh("handlers.aws_lambda")
    handler.handler({"Records": [s3_record("kept.jpg")]}, None)
    gone = s3_record("kept.jpg")
    gone["eventName"] = "ObjectRemoved:Delete"
    gone["s3"]["object"]["sequencer"] = "0B"
    handler.handler({"Records": [gone]}, None)
    (item,) = catalog.items("inbox", include_deleted=True)
    assert (item.key, item.deleted) == ("kept.jpg", False)
