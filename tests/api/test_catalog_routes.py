"""The catalog through the API: datasets, items pages, the change feed and its long poll,
runs, sync triggers, manifests; errors as problem bodies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from tests.api.conftest import Api
from tests.daemon.conftest import wait_until


def test_datasets_items_pages_and_runs(start_api: Callable[..., Api]) -> None:
    api = start_api(files={f"img/{n:03d}.jpg": b"x" * n for n in range(25)})
    (dataset,) = api.get("/v1/datasets").json()["datasets"]
    assert (dataset["name"], dataset["items"], dataset["drivers"]) == ("images", 25, ["photos"])
    assert api.get("/v1/datasets/images").json()["items"] == 25

    keys: list[str] = []
    cursor: str | None = None
    while True:
        page = api.get(
            f"/v1/datasets/images/items?limit=10{f'&cursor={cursor}' if cursor else ''}"
        ).json()
        keys += [item["key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert keys == [f"img/{n:03d}.jpg" for n in range(25)]
    assert len(api.get("/v1/datasets/images/items?prefix=img/01").json()["items"]) == 10

    runs = api.get("/v1/runs?dataset=images").json()["runs"]
    assert runs and runs[-1]["counts"]["added"] == 25
    assert api.get(f"/v1/runs/{runs[-1]['id']}").json()["id"] == runs[-1]["id"]


def test_errors_are_problem_bodies_naming_what_is_at_fault(start_api: Callable[..., Api]) -> None:
    api = start_api()
    for path, status, fragment in [
        ("/v1/datasets/nope", 404, "nope"),
        ("/v1/datasets/images/items?limit=0", 400, "'limit'"),
        ("/v1/datasets/images/items?limit=10001", 400, "'limit'"),
        ("/v1/datasets/images/items?cursor=garbage!", 400, "'cursor'"),
        ("/v1/datasets/images/changes?since=-1", 400, "'since'"),
        ("/v1/datasets/images/changes?wait=61", 400, "'wait'"),
        ("/v1/runs/12x", 400, "12x"),
        ("/v1/runs/999999", 404, "999999"),
        ("/v1/dead-letters/5", 404, "5"),
        ("/v1/datasets/images/manifest?format=xml", 400, "'format'"),
    ]:
        answer = api.get(path)
        assert answer.status == status, path
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert fragment in answer.json()["detail"], (path, answer.json())
    for body, fragment in [({"datasetx": "images"}, "dataset"), ({"dataset": "nope"}, "nope")]:
        answer = api.post("/v1/sync", body)
        assert answer.status in (400, 404) and fragment in answer.json()["detail"]
    bad = api.post("/v1/sync", raw=b"{not json")
    assert bad.status == 400 and "not JSON" in bad.json()["detail"]
    missing = api.get("/v1/nothing-here", validate=False)
    assert missing.status == 404 and missing.headers["Content-Type"].startswith(
        "application/problem+json"
    )


def test_the_change_feed_long_poll_wakes_on_a_commit(start_api: Callable[..., Api]) -> None:
    api = start_api(files={"a.jpg": b"a"})
    first = api.get("/v1/datasets/images/changes?since=0").json()
    since = first["next_since"]
    assert [c["key"] for c in first["changes"]] == ["a.jpg"]
    answers: list[Any] = []

    def poll() -> None:
        started = time.monotonic()
        answers.append(
            (
                api.get(f"/v1/datasets/images/changes?since={since}&wait=30").json(),
                time.monotonic() - started,
            )
        )

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    (api.folder / "b.jpg").write_bytes(b"b")
    thread.join(timeout=40)
    ((body, waited),) = answers
    assert [c["key"] for c in body["changes"]] == ["b.jpg"]
    assert waited < 30, "the long poll waited out its time instead of waking on the commit"
    # Nothing new: an empty page after the wait, with the same cursor.
    empty = api.get(f"/v1/datasets/images/changes?since={body['next_since']}&wait=1").json()
    assert empty == {"changes": [], "next_since": body["next_since"]}


def test_post_sync_starts_a_run_and_refuses_a_second_at_once(start_api: Callable[..., Api]) -> None:
    api = start_api(files={f"{n:05d}.jpg": b"x" for n in range(20_000)}, edit=hourly)
    first = api.post("/v1/sync", {"dataset": "images"})
    assert first.status == 202, first.json()
    (started,) = first.json()["started"]
    second = api.post("/v1/sync", {"dataset": "images", "driver": "photos"})
    assert second.status == 409, second.json()
    wait_until(
        lambda: api.get(f"/v1/runs/{started['run_id']}").json()["status"] == "succeeded",
        30,
        "the triggered run",
    )


def hourly(config: dict[str, Any]) -> None:
    config["drivers"][0]["schedule"] = {"every": "1h"}


def run_succeeded(api: Api, run_id: int) -> bool:
    return bool(api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded")


def sharded(config: dict[str, Any]) -> None:
    hourly(config)
    config["drivers"][0]["shards"] = ["b", "c"]


def test_post_sync_of_a_sharded_driver_starts_a_run_per_shard(
    start_api: Callable[..., Api],
) -> None:
    api = start_api(files={"a.jpg": b"a", "b.jpg": b"b", "c.jpg": b"c"}, edit=sharded)

    # The schedule's first slot runs each shard at start; the trigger follows it.
    def first_slot_done() -> bool:
        runs = api.get("/v1/runs").json()["runs"]
        return len(runs) == 3 and all(r["status"] == "succeeded" for r in runs)

    wait_until(first_slot_done, 30, "the first slot")
    time.sleep(0.5)  # the slot's runs are recorded a moment before their workers are free
    answer = api.post("/v1/sync", {"dataset": "images"})
    assert answer.status == 202, answer.json()
    started = answer.json()["started"]
    assert [(s["driver"], s["shard"]) for s in started] == [
        ("photos", {"index": 1, "of": 3, "from": "", "to": "b"}),
        ("photos", {"index": 2, "of": 3, "from": "b", "to": "c"}),
        ("photos", {"index": 3, "of": 3, "from": "c", "to": None}),
    ]
    for run in started:
        wait_until(partial(run_succeeded, api, run["run_id"]), 30, "a shard's run")
        assert api.get(f"/v1/runs/{run['run_id']}").json()["shard"] == run["shard"]
    keys = [i["key"] for i in api.get("/v1/datasets/images/items").json()["items"]]
    assert keys == ["a.jpg", "b.jpg", "c.jpg"]


def test_the_manifest_streams_from_the_same_writers(start_api: Callable[..., Api]) -> None:
    api = start_api(files={"a.jpg": b"a", "b.png": b"b"})
    answer = api.get("/v1/datasets/images/manifest?format=jsonl")
    assert answer.status == 200
    lines = answer.body.decode().splitlines()
    assert sorted(line.split('"key": "')[1].split('"')[0] for line in lines) == ["a.jpg", "b.png"]


def test_tokens_and_scopes(start_api: Callable[..., Api]) -> None:
    api = start_api(
        env={"READ_TOKEN": "r-secret", "WRITE_TOKEN": "w-secret"},
        api={
            "tokens": [
                {"name": "reader", "token": "env:READ_TOKEN", "scopes": ["read"]},
                {"name": "writer", "token": "env:WRITE_TOKEN", "scopes": ["write"]},
            ]
        },
    )
    assert api.get("/healthz").status == 200
    assert api.get("/readyz").status == 200
    assert api.get("/v1/datasets").status == 401
    assert api.get("/v1/datasets", token="wrong").status == 401
    assert api.get("/v1/datasets", token="r-secret").status == 200
    assert api.get("/v1/datasets", token="w-secret").status == 200
    refused = api.post("/v1/sync", {"dataset": "images"}, token="r-secret")
    assert refused.status == 403 and "write" in refused.json()["detail"]
    assert api.post("/v1/sync", {"dataset": "images"}, token="w-secret").status in (202, 409)
    assert "r-secret" not in api.daemon.log.read_text()


def test_pages_stay_stable_while_items_change(start_api: Callable[..., Api]) -> None:
    api = start_api(files={f"{n:03d}.jpg": b"x" for n in range(0, 60, 2)}, edit=every_second)
    seen: list[str] = []
    cursor: str | None = None
    for page_number in range(100):
        query = "limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/v1/datasets/images/items?{query}").json()
        seen += [item["key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Between pages: a new key behind the cursor, one ahead, one deleted ahead.
        (api.folder / f"{page_number * 2 + 1:03d}.jpg").write_bytes(b"new")
        added = f"{page_number * 2 + 1:03d}"
        wait_until(partial(synced, api, added), 10, "the new file synced")
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "a key came twice or out of order"
    assert {f"{n:03d}.jpg" for n in range(0, 60, 2)} <= set(seen), (
        "a key present throughout was missed"
    )


def synced(api: Api, prefix: str) -> bool:
    return bool(api.get(f"/v1/datasets/images/items?prefix={prefix}").json()["items"])


def every_second(config: dict[str, Any]) -> None:
    config["drivers"][0]["schedule"] = {"every": "1s"}
