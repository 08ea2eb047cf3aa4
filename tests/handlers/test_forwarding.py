"""The Lambda handler forwarding to a real `syncd run` (SYNCD_INGEST_URL): the fixtures'
events land in the daemon's catalog, poison is dead-lettered there, and a daemon that does
not answer makes every record a batch item failure."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest

from syncd.events.apply import BatchResult
from syncd.events.aws import parse_lambda_event
from syncd.events.forward import ForwardingSink, message_json
from tests.api.conftest import Api, start_api
from tests.api.test_ingest import fixture, items, start_cloud_api
from tests.daemon.conftest import daemons
from tests.handlers.conftest import fresh
from tests.peers import free_port

#: The API's fixtures: a real daemon per test.
__all__ = ["daemons", "start_api"]

SQS_IDS = [r["messageId"] for r in fixture("aws-sqs-lambda.json")["Records"]]
TOKENS = {
    "api": {
        "tokens": [
            {"name": "functions", "token": "env:INGEST_TOKEN", "scopes": ["write"]},
            {"name": "reader", "token": "env:READ_TOKEN", "scopes": ["read"]},
        ]
    }
}
TOKEN_ENV = {"INGEST_TOKEN": "w-secret", "READ_TOKEN": "r-secret"}


@pytest.fixture
def forwarding(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str | None], Any]:
    """The Lambda handler module, cold-started with forwarding to `url` with `token`; no
    catalog URL or routing config in its environment."""

    def start(url: str, token: str | None) -> Any:
        for name in ("SYNCD_CATALOG_URL", "SYNCD_CONFIG", "SYNCD_CONFIG_YAML"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("SYNCD_INGEST_URL", url)
        if token is None:
            monkeypatch.delenv("SYNCD_INGEST_TOKEN", raising=False)
        else:
            monkeypatch.setenv("SYNCD_INGEST_TOKEN", token)
        return fresh("handlers.aws_lambda")

    return start


def test_sqs_batch_lands_in_the_daemons_catalog(
    start_api: Callable[..., Api], forwarding: Callable[[str, str | None], Any]
) -> None:
    api = start_cloud_api(start_api, env=TOKEN_ENV, **TOKENS)
    handler = forwarding(api.url, "w-secret")
    assert handler._sink is None

    answer = handler.handler(fixture("aws-sqs-lambda.json"), None)
    assert answer == {"batchItemFailures": []}
    assert isinstance(handler._sink, ForwardingSink)
    state = items(api, token="r-secret")
    assert state["s3in/videos/clip 1.mp4"]["size"] == 5_000_000
    assert state["s3eb/scans/ct 01.dcm"]["deleted"] is True
    letters = api.get("/v1/dead-letters", token="r-secret").json()["dead_letters"]
    assert [(d["message_id"], d["payload"]) for d in letters] == [(SQS_IDS[4], "this is not json")]

    # A direct invocation (EventBridge) answers with the daemon's counts.
    direct = handler.handler(fixture("aws-s3-direct.json"), None)
    assert direct == {"applied": 3, "ignored": 0, "dead_lettered": 0}
    assert items(api, token="r-secret")["s3in/photos/Happy Face +1.jpg"]["deleted"] is False

    # The dead letter, retried through the API, still does not parse: it stays.
    retried = api.post(f"/v1/dead-letters/{letters[0]['id']}/retry", token="w-secret")
    assert retried.status == 422 and "JSON" in retried.json()["reason"]


def test_a_daemon_that_is_down_or_refuses_fails_every_record(
    start_api: Callable[..., Api], forwarding: Callable[[str, str | None], Any]
) -> None:
    event = fixture("aws-sqs-lambda.json")
    every = {"batchItemFailures": [{"itemIdentifier": i} for i in SQS_IDS]}

    nobody = forwarding(f"http://127.0.0.1:{free_port()}", "w-secret")
    assert nobody.handler(event, None) == every
    with pytest.raises(RuntimeError, match="not committed"):
        nobody.handler(fixture("aws-eventbridge-created.json"), None)

    api = start_cloud_api(start_api, env=TOKEN_ENV, **TOKENS)
    for token in (None, "wrong", "r-secret"):  # 401, 401, 403: nothing is committed
        assert forwarding(api.url, token).handler(event, None) == every
    datasets = api.get("/v1/datasets", token="r-secret").json()["datasets"]
    assert [d["items"] for d in datasets if d["name"] == "events"] in ([], [0])
    assert api.get("/v1/dead-letters", token="r-secret").json()["dead_letters"] == []

    api.daemon.stop(signal.SIGKILL)  # the daemon's host went away
    assert forwarding(api.url, "w-secret").handler(event, None) == every


def test_a_big_batch_goes_in_several_requests(start_api: Callable[..., Api]) -> None:
    api = start_cloud_api(start_api)
    messages = parse_lambda_event(fixture("aws-sqs-lambda.json"))
    # Each message alone (one bigger than the limit still goes, by itself).
    sink = ForwardingSink(api.url, "aws", max_bytes=1)
    assert [len(chunk) for chunk, _ in sink._chunks(messages)] == [1] * len(messages)
    together = ForwardingSink(
        api.url, "aws", max_bytes=sum(len(json.dumps(message_json(m))) + 1 for m in messages)
    )
    assert [len(chunk) for chunk, _ in together._chunks(messages)] == [len(messages)]
    result = sink.handle(messages)
    assert isinstance(result, BatchResult)
    assert (result.failed, result.dead_lettered) == ([], 1)
    assert "s3in/videos/clip 1.mp4" in items(api)


def test_the_sink_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from syncd.errors import ConfigError
    from syncd.events.sink import open_sink

    monkeypatch.setenv("SYNCD_INGEST_URL", "http://10.0.0.5:8080/")
    sink = open_sink("gcp")
    assert isinstance(sink, ForwardingSink) and sink.url == "http://10.0.0.5:8080/v1/events/gcp"
    for bad in ("ftp://x", "http://h:1/?token=x", "10.0.0.5:8080"):
        monkeypatch.setenv("SYNCD_INGEST_URL", bad)
        with pytest.raises(ConfigError, match="SYNCD_INGEST_URL"):
            open_sink("aws")
