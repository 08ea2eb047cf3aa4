"""Liveness, readiness and metrics as an operator's tools read them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.api.conftest import Api
from tests.daemon.conftest import wait_until


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_follow_prometheus_conventions_and_hold_no_secret(
    start_api: Callable[..., Api],
) -> None:
    api = start_api(
        files={"a.jpg": b"12345", "b.jpg": b"678"},
        env={"API_TOKEN": "very-secret-token"},
        api={"tokens": [{"name": "ops", "token": "env:API_TOKEN"}]},
    )
    answer = api.get("/metrics", token="very-secret-token")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    text = answer.body.decode()
    found = samples(text)
    assert found['syncd_items{dataset="images"}'] == 2
    assert found['syncd_items_bytes{dataset="images"}'] == 8
    assert found['syncd_sync_runs_total{dataset="images",driver="photos",status="succeeded"}'] >= 1
    assert (
        'syncd_sync_run_duration_seconds_bucket{dataset="images",driver="photos",le="+Inf"}'
        in found
    )
    assert found["syncd_leases_held"] == 0
    for name in {
        re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and line[0] != "#"
    }:
        assert re.fullmatch(r"syncd_[a-z_]+", name), name
    assert "very-secret-token" not in text
    assert api.get("/metrics").status == 401


def test_readyz_reports_each_check(start_api: Callable[..., Api]) -> None:
    api = start_api()
    answer = api.get("/readyz")
    assert answer.status == 200
    assert answer.json() == {
        "ready": True,
        "checks": {"catalog": "ok", "sources": "ok", "leases": "ok"},
    }
    assert api.get("/healthz").json() == {"status": "ok"}
    api.daemon.stop()
    wait_until(lambda: not api.daemon.alive(), 15, "the daemon to stop")


def test_readyz_is_503_naming_a_source_that_cannot_be_reached(
    start_api: Callable[..., Api],
) -> None:
    def unreachable_queue(config: dict[str, Any]) -> None:
        config["integrations"].append(
            {
                "name": "aws",
                "provider": "s3",
                "endpoint_url": "http://127.0.0.1:9",
                "region": "us-east-1",
                "access_key_id": "env:AWS_ACCESS_KEY_ID",
                "secret_access_key": "env:AWS_SECRET_ACCESS_KEY",
            }
        )
        config["drivers"].append(
            {
                "name": "inbox",
                "integration": "aws",
                "bucket": "nowhere",
                "schedule": {"every": "1h"},
                "source": {
                    "kind": "sqs",
                    "queue_url": "http://127.0.0.1:9/000000000000/missing",
                    "wait": 1,
                },
            }
        )
        config["datasets"][0]["drivers"].append("inbox")

    api = start_api(
        edit=unreachable_queue,
        env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_MAX_ATTEMPTS": "1"},
    )

    def not_ready() -> bool:
        answer = api.get("/readyz")
        return answer.status == 503 and answer.json()["checks"]["sources"] != "ok"

    wait_until(not_ready, 30, "/readyz to report the unreachable queue")
    checks = api.get("/readyz").json()["checks"]
    assert checks["catalog"] == "ok" and checks["sources"].startswith("inbox: ")
