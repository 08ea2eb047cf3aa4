"""Webhooks: the outbox written with a run's end or a batch of events, delivered signed as
Standard Webhooks specify, at least once, across retries and a daemon killed with SIGKILL.

The receiver is a real HTTP server on 127.0.0.1 that checks every signature with its own
HMAC computation (written from the spec, not syncd's); the daemon is a real `syncd run`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import syncd.catalog.sql
from syncd.catalog import Catalog, RunStatus, open_catalog
from syncd.catalog.types import Fence, OutboxRow, WebhookState
from syncd.config import Config, parse_config
from syncd.daemon.webhooks import (
    BACKOFF_CAP,
    WebhookDeliverer,
    backoff,
    message_of,
    post,
    sign,
    signing_key,
)
from syncd.errors import CatalogError
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from tests.conftest import make_driver
from tests.daemon.conftest import Daemons, wait_until
from tests.peers import free_port

BOUND = 20.0
SECRET_ENV = "SYNCD_TEST_WEBHOOK_SECRET"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# -- a receiver that verifies signatures by itself --------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, from the spec: HMAC-SHA256 over
    `{webhook-id}.{webhook-timestamp}.{body}` keyed by the base64 after `whsec_`; the header
    is a space-separated list of `v1,<base64>`."""
    key = (
        base64.b64decode(secret[len("whsec_") :])
        if secret.startswith("whsec_")
        else secret.encode()
    )
    content = b".".join(
        [headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(), body]
    )
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int
    #: What `Receiver.observe` returned while the request was being answered.
    observed: Any = None

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    secret: str
    port: int = 0
    #: Per path: the statuses of the next answers (then 200).
    answers: dict[str, list[int]] = field(default_factory=dict)
    #: Per path: an answer waits until the event is set.
    gates: dict[str, threading.Event] = field(default_factory=dict)
    observe: Callable[[], Any] | None = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                gate = receiver.gates.get(self.path)
                if gate is not None:
                    gate.wait(30)
                with receiver.lock:
                    queued = receiver.answers.get(self.path) or []
                    status = queued.pop(0) if queued else 200
                    observed = receiver.observe() if receiver.observe else None
                    receiver.received.append(
                        Received(
                            self.path,
                            headers,
                            body,
                            verify(receiver.secret, headers, body),
                            status,
                            observed,
                        )
                    )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def delivered(self, path: str = "/hook") -> list[Received]:
        """What was answered 2xx, in order."""
        return [r for r in self.at(path) if 200 <= r.status < 300]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(new_secret()).start()
    yield started
    started.stop()


# -- helpers -------------------------------------------------------------------------------------


def webhook_config(webhooks: list[dict[str, Any]], **daemon: Any) -> Config:
    text = json.dumps({"daemon": daemon, "webhooks": webhooks})
    return parse_config(text, "test.yaml", base_dir=Path.cwd())


def hook(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret": f"env:{SECRET_ENV}", **fields}


@contextmanager
def delivering(config: Config, catalog_url: str) -> Iterator[WebhookDeliverer]:
    stop = threading.Event()
    deliverer = WebhookDeliverer(config, catalog_url, "test-replica", stop)
    deliverer.start()
    try:
        yield deliverer
    finally:
        stop.set()
        deliverer.join(15)
        assert not deliverer.is_alive()


def sync(catalog: Catalog, store: MemoryStore, dataset: str, driver: str = "files") -> Any:
    return reconcile(
        catalog, store, dataset=dataset, driver=make_driver("mem", name=driver), provider="memory"
    )


def payloads(catalog: Catalog) -> list[tuple[str, str, dict[str, Any]]]:
    rows = catalog.outbox_after(0, 1000)
    return [(r.kind, r.dataset, json.loads(r.payload)) for r in rows]


def cursor(catalog: Catalog, name: str) -> int:
    state = catalog.webhook_state(name)
    assert state is not None
    return state.last_id


def sqlite_state(path: Path, name: str) -> tuple[int, int, int] | None:
    """(last_id, pending_through, attempts) read straight from the file, read-only."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT last_id, pending_through, attempts FROM webhook_state WHERE name = ?", (name,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None  # not migrated yet
    finally:
        conn.close()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def daemon_config(
    url: str, folder: Path, webhooks: list[dict[str, Any]], **daemon: Any
) -> dict[str, Any]:
    # `every: 1h`: the daemon runs the slot due at its start, then nothing during the test.
    return {
        "catalog": url,
        "daemon": {"shutdown_grace": "5s", **daemon},
        "integrations": [{"name": "disk", "provider": "local"}],
        "drivers": [
            {
                "name": "photos",
                "integration": "disk",
                "bucket": str(folder),
                "schedule": {"every": "1h"},
            }
        ],
        "datasets": [{"name": "images", "drivers": ["photos"]}],
        "webhooks": webhooks,
    }


def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"a")
    (folder / "b.jpg").write_bytes(b"bb")
    return folder


# -- signing and backoff ------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The vector of standard-webhooks' own libraries (libraries/python/tests/test_webhooks.py).
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    # A secret without the prefix is its UTF-8 bytes.
    assert signing_key("plain-text secret") == b"plain-text secret"
    body = b'{"a":1}'
    plain = sign(signing_key("s3cret"), "msg_1", 1700000000, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": plain}
    assert verify("s3cret", headers, body)
    with pytest.raises(ValueError, match="base64"):
        signing_key("whsec_not base64!")


def test_backoff_doubles_from_one_second_to_five_minutes_with_jitter() -> None:
    middle = [backoff(n, rand=lambda: 0.5) for n in range(1, 12)]
    assert middle == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff(1, rand=lambda: 0.0) == pytest.approx(0.8)
    assert backoff(1, rand=lambda: 1.0) == pytest.approx(1.2)
    assert backoff(10_000, rand=lambda: 0.5) == BACKOFF_CAP
    # A Retry-After that asks for longer is honoured, up to the cap.
    assert backoff(1, retry_after=30, rand=lambda: 0.5) == 30
    assert backoff(1, retry_after=86_400, rand=lambda: 0.5) == BACKOFF_CAP


def test_a_redirect_or_a_silent_server_is_a_failure(receiver: Receiver) -> None:
    message = message_of([OutboxRow(7, "sync.completed", "ds", '{"type":"sync.completed"}', 0.0)])
    key = signing_key(receiver.secret)
    receiver.answers["/moved"] = [302]
    moved = post(receiver.url("/moved"), message, key)
    assert (moved.ok, moved.status, moved.error) == (False, 302, "HTTP 302")
    assert receiver.at("/elsewhere") == []  # not followed
    receiver.answers["/busy"] = [503]
    assert post(receiver.url("/busy"), message, key).error == "HTTP 503"
    ok = post(receiver.url("/fine"), message, key)
    assert ok.ok and receiver.at("/fine")[0].id == "msg_7" and receiver.at("/fine")[0].verified
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        quiet = post(f"http://127.0.0.1:{port}/", message, key, timeout=0.3)
    assert (quiet.ok, quiet.error) == (False, "timed out after 0.3s")
    closed = post(f"http://127.0.0.1:{free_port()}/", message, key)
    assert closed.error is not None and closed.error.startswith("cannot connect")


# -- the outbox in the catalog (SQLite and PostgreSQL) ----------------------------------------


def test_a_run_end_writes_its_outbox_rows_and_a_dry_run_none(catalog: Catalog) -> None:
    store = MemoryStore()
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        store.put(key, b"x")
    dry = reconcile(
        catalog,
        store,
        dataset="ds",
        driver=make_driver("mem"),
        provider="memory",
        dry_run=True,
    )
    assert dry.counts.added == 3 and catalog.outbox_after(0) == []

    first = sync(catalog, store, "ds")
    changes = list(catalog.changes("ds"))
    (changed, completed) = payloads(catalog)
    assert changed == (
        "items.changed",
        "ds",
        {
            "type": "items.changed",
            "timestamp": completed[2]["timestamp"],
            "data": {
                "dataset": "ds",
                "drivers": ["files"],
                "run_ids": [first.run_id],
                "count": 3,
                "added": 3,
                "updated": 0,
                "deleted": 0,
                "first_change_id": changes[0].id,
                "last_change_id": changes[-1].id,
            },
        },
    )
    kind, dataset, body = completed
    assert (kind, dataset, body["type"]) == ("sync.completed", "ds", "sync.completed")
    assert body["timestamp"].endswith("Z") and "T" in body["timestamp"]
    assert body["data"] == {
        "run_id": first.run_id,
        "dataset": "ds",
        "driver": "files",
        "status": "succeeded",
        "counts": {
            "listed": 3,
            "added": 3,
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
            "skipped": 0,
        },
        "reason": None,
        "started_at": body["data"]["started_at"],
        "finished_at": body["timestamp"],
    }
    assert body["data"]["started_at"] <= body["data"]["finished_at"]

    # Unchanged: the run's end only. Emptied: aborted, nothing deleted, nothing changed.
    sync(catalog, store, "ds")
    for key in ("a.jpg", "b.jpg", "c.jpg"):
        store.delete(key)
    aborted = sync(catalog, store, "ds")
    assert aborted.status is RunStatus.ABORTED
    kinds = [(kind, body["data"].get("status")) for kind, _, body in payloads(catalog)]
    assert kinds[2:] == [("sync.completed", "succeeded"), ("sync.aborted", "aborted")]
    assert "empty" in payloads(catalog)[-1][2]["data"]["reason"]


def test_the_outbox_row_commits_with_the_run_end_or_not_at_all(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id = catalog.dataset_id("ds")
    driver_id = catalog.driver_id("files", "memory", "mem", "")
    run_id = catalog.begin_run(dataset_id, driver_id, watermark=0)

    def broken(*args: Any) -> int:
        raise CatalogError("the outbox write failed")

    monkeypatch.setattr(syncd.catalog.sql, "_insert_outbox", broken)
    with pytest.raises(CatalogError):
        catalog.finish_run(run_id, RunStatus.SUCCEEDED, None)
    assert catalog.runs("ds")[0].status is RunStatus.RUNNING
    monkeypatch.undo()
    # A run left running is taken over: its end is announced too, as an interrupted one.
    catalog.begin_run(dataset_id, driver_id, watermark=0, takeover=True)
    ((kind, _, body),) = payloads(catalog)
    assert kind == "sync.aborted"
    assert (body["data"]["run_id"], body["data"]["status"]) == (run_id, "interrupted")


def test_webhook_state_is_fenced_and_pruning_keeps_what_is_not_delivered(
    catalog: Catalog,
) -> None:
    assert catalog.webhook_state("h") is None
    epoch = catalog.claim_lease("webhook:h", "replica-a", ttl=0.2)
    assert epoch is not None
    fence = Fence("webhook:h", epoch)
    state = WebhookState("h", last_id=3, pending_through=5, attempts=2, next_attempt_at=9.5)
    assert catalog.save_webhook_state(state, fence)
    assert catalog.webhook_state("h") == state
    time.sleep(0.3)
    assert catalog.claim_lease("webhook:h", "replica-b", ttl=5) == epoch + 1
    assert not catalog.save_webhook_state(WebhookState("h", last_id=99), fence)
    assert catalog.webhook_state("h") == state

    dataset_id = catalog.dataset_id("ds")
    driver_id = catalog.driver_id("files", "memory", "mem", "")
    for _ in range(3):
        run_id = catalog.begin_run(dataset_id, driver_id, watermark=0)
        catalog.finish_run(run_id, RunStatus.SUCCEEDED, None)
    assert [r.id for r in catalog.outbox_after(0)] == [1, 2, 3]
    assert catalog.outbox_last_id() == 3
    assert catalog.outbox_last_id(before=0.0) == 0
    assert catalog.prune_outbox(time.time() - 3600, through_id=3) == 0  # too new
    assert catalog.prune_outbox(time.time() + 1, through_id=2) == 2
    assert [r.id for r in catalog.outbox_after(0)] == [3]
    assert catalog.prune_outbox(time.time() + 1, through_id=3) == 1
    # Ids are never reused after a prune: a cursor at 3 must see the next row.
    run_id = catalog.begin_run(dataset_id, driver_id, watermark=0)
    catalog.finish_run(run_id, RunStatus.FAILED, None, reason="boom")
    assert [(r.id, r.kind) for r in catalog.outbox_after(3)] == [(4, "sync.aborted")]


# -- delivery in-process -----------------------------------------------------------------------


def test_filters_and_a_slow_endpoint_holding_back_only_its_own(
    catalog_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, receiver.secret)
    config = webhook_config(
        [
            # First: a deliverer that sent one message at a time would wait on it.
            hook("slow", receiver.url("/slow")),
            hook("all", receiver.url("/all")),
            hook("only-b", receiver.url("/only-b"), datasets=["b"]),
            hook("aborts", receiver.url("/aborts"), events=["sync.aborted"]),
        ]
    )
    receiver.gates["/slow"] = threading.Event()
    catalog = open_catalog(catalog_url)
    try:
        for name in ("all", "only-b", "aborts", "slow"):
            catalog.save_webhook_state(WebhookState(name))  # from the first row on
        store_a, store_b = MemoryStore(), MemoryStore()
        store_a.put("one.jpg", b"1")
        store_b.put("two.jpg", b"2")
        sync(catalog, store_a, "a", "files-a")
        sync(catalog, store_b, "b", "files-b")
        store_b.delete("two.jpg")
        assert sync(catalog, store_b, "b", "files-b").status is RunStatus.ABORTED
        rows = catalog.outbox_after(0)
    finally:
        catalog.close()
    expected = [("items.changed", "a"), ("sync.completed", "a"), ("items.changed", "b")]
    expected += [("sync.completed", "b"), ("sync.aborted", "b")]
    assert [(r.kind, r.dataset) for r in rows] == expected

    def seen(path: str) -> list[tuple[str, str]]:
        return [(r.payload["type"], r.payload["data"]["dataset"]) for r in receiver.delivered(path)]

    with delivering(config, catalog_url):
        # Sooner than the slow endpoint's first request would time out (10 s).
        wait_until(lambda: len(receiver.delivered("/all")) == 5, 8, "every row to /all")
        wait_until(lambda: len(receiver.delivered("/only-b")) == 3, 8, "b's rows")
        wait_until(lambda: len(receiver.delivered("/aborts")) == 1, 8, "the abort")
        assert len(receiver.at("/slow")) == 0  # still held
        receiver.gates["/slow"].set()
        wait_until(lambda: len(receiver.delivered("/slow")) == 5, BOUND, "the slow one")
    assert seen("/all") == expected
    assert seen("/only-b") == expected[2:]
    assert seen("/aborts") == [("sync.aborted", "b")]
    assert [r.id for r in receiver.delivered("/all")] == [f"msg_{r.id}" for r in rows]
    assert all(r.verified for r in receiver.received)
    catalog = open_catalog(catalog_url)
    try:
        assert [cursor(catalog, n) for n in ("all", "only-b", "slow")] == [rows[-1].id] * 3
    finally:
        catalog.close()


def test_one_replica_delivers_and_another_takes_over_when_it_stops(
    catalog_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, receiver.secret)
    config = webhook_config([hook("hook", receiver.url(), events=["sync.aborted"])], lease_ttl="3s")
    catalog = open_catalog(catalog_url)
    try:
        catalog.save_webhook_state(WebhookState("hook"))
        dataset_id = catalog.dataset_id("ds")
        driver_id = catalog.driver_id("files", "memory", "mem", "")

        def failed_run() -> None:
            run_id = catalog.begin_run(dataset_id, driver_id, watermark=0)
            catalog.finish_run(run_id, RunStatus.FAILED, None, reason="store unreachable")

        failed_run()
        stop_a, stop_b = threading.Event(), threading.Event()
        a = WebhookDeliverer(config, catalog_url, "replica-a", stop_a)
        b = WebhookDeliverer(config, catalog_url, "replica-b", stop_b)
        a.start()
        wait_until(lambda: len(receiver.delivered()) == 1, BOUND, "replica-a's delivery")
        b.start()
        failed_run()
        wait_until(lambda: len(receiver.delivered()) == 2, BOUND, "the next one")
        (lease,) = [lease for lease in catalog.leases() if lease.name == "webhook:hook"]
        assert lease.owner == "replica-a"
        stop_a.set()
        a.join(15)
        failed_run()
        wait_until(lambda: len(receiver.delivered()) == 3, BOUND, "replica-b taking over")
        (lease,) = [lease for lease in catalog.leases() if lease.name == "webhook:hook"]
        assert lease.owner == "replica-b"
        stop_b.set()
        b.join(15)
        rows = catalog.outbox_after(0)
    finally:
        catalog.close()
    # Each message once, in order, though two replicas were delivering.
    assert [r.id for r in receiver.delivered()] == [f"msg_{r.id}" for r in rows]


EVENTS_CONFIG = """\
integrations: [{name: aws, provider: s3}]
drivers:
  - {name: raw, integration: aws, bucket: media, prefix: raw/}
  - {name: all, integration: aws, bucket: media}
datasets:
  - {name: train, drivers: [raw]}
  - {name: everything, drivers: [all]}
"""


def bucket_event(key: str, seq: int) -> ObjectEvent:
    return ObjectEvent(
        EventKind.CREATED,
        "s3",
        "media",
        key,
        1_700_000_000.0 + seq,
        s3_token(f"{seq:016X}"),
        size=1,
    )


def test_items_changed_from_events_are_coalesced_per_dataset(
    catalog_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, receiver.secret)
    catalog = open_catalog(catalog_url)
    try:
        catalog.save_webhook_state(WebhookState("train-changes"))
        applier = EventApplier(catalog, parse_config(EVENTS_CONFIG, "t.yaml", base_dir=Path.cwd()))
        for batch in range(3):
            keys = [f"raw/{batch}-{n}.jpg" for n in range(batch + 1)]
            events = [bucket_event(key, batch * 10 + n) for n, key in enumerate(keys)]
            assert applier.apply([Message(f"m{batch}", "test", "{}", events)]).applied == 2 * len(
                keys
            )
        # Nothing applied (a duplicate): no row.
        applier.apply([Message("again", "test", "{}", [bucket_event("raw/0-0.jpg", 0)])])
        rows = catalog.outbox_after(0)
        train_changes = [c.id for c in catalog.changes("train")]
    finally:
        catalog.close()
    # One row per dataset per committed batch.
    assert [(r.kind, r.dataset) for r in rows] == [
        ("items.changed", d) for d in ["train", "everything"] * 3
    ]
    first_row = json.loads(rows[0].payload)["data"]
    assert first_row == {
        "dataset": "train",
        "drivers": ["raw"],
        "run_ids": [],
        "count": 1,
        "added": 1,
        "updated": 0,
        "deleted": 0,
        "first_change_id": train_changes[0],
        "last_change_id": train_changes[0],
    }
    config = webhook_config(
        [hook("train-changes", receiver.url(), events=["items.changed"], datasets=["train"])]
    )
    with delivering(config, catalog_url):
        wait_until(lambda: len(receiver.delivered()) == 1, BOUND, "one coalesced POST")
        catalog = open_catalog(catalog_url)
        try:
            wait_until(
                lambda: cursor(catalog, "train-changes") == rows[4].id,
                BOUND,
                "the cursor past the last train row",
            )
        finally:
            catalog.close()
    (coalesced,) = receiver.delivered()
    assert coalesced.verified
    assert coalesced.id == f"msg_{rows[0].id}-{rows[4].id}"
    assert coalesced.payload["type"] == "items.changed"
    assert coalesced.payload["timestamp"] == json.loads(rows[4].payload)["timestamp"]
    assert coalesced.payload["data"] == {
        "dataset": "train",
        "drivers": ["raw"],
        "run_ids": [],
        "count": 6,
        "added": 6,
        "updated": 0,
        "deleted": 0,
        "first_change_id": train_changes[0],
        "last_change_id": train_changes[-1],
    }


# -- the daemon, a real process ---------------------------------------------------------------


def test_a_run_end_is_delivered_signed(
    daemons: Daemons, tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "catalog.db"
    config = daemons.write_config(
        daemon_config(f"sqlite:///{db}", photo_folder(tmp_path), [hook("hook", receiver.url())])
    )
    daemon = daemons.start(config, env={SECRET_ENV: receiver.secret})
    wait_until(lambda: len(receiver.delivered()) == 2, BOUND, "the run's two events")
    wait_until(lambda: sqlite_state(db, "hook") == (2, 0, 0), BOUND, "the cursor at the end")
    assert daemon.stop() == 0
    changed, completed = receiver.delivered()
    for request in (changed, completed):
        assert request.verified, "signature"
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    assert (changed.id, completed.id) == ("msg_1", "msg_2")
    assert changed.payload["data"]["added"] == 2
    assert changed.payload["data"]["drivers"] == ["photos"]
    data = completed.payload["data"]
    assert completed.payload["type"] == "sync.completed"
    assert (data["dataset"], data["driver"], data["status"]) == ("images", "photos", "succeeded")
    assert data["counts"]["added"] == 2
    assert sqlite_state(db, "hook") == (2, 0, 0)
    lines = daemon.log.read_text()
    assert receiver.secret not in lines
    assert receiver.secret.removeprefix("whsec_") not in lines
    assert '"type":"sync.completed"' not in lines  # no payload in the log
    assert [line["id"] for line in daemon.events("webhook delivered")] == ["msg_1", "msg_2"]


def test_failed_attempts_keep_the_webhook_id_and_the_cursor_waits_for_a_2xx(
    daemons: Daemons, tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "catalog.db"
    receiver.answers["/hook"] = [500, 500]
    receiver.observe = lambda: sqlite_state(db, "hook")
    webhooks = [hook("hook", receiver.url(), events=["sync.completed"])]
    config = daemons.write_config(
        daemon_config(f"sqlite:///{db}", photo_folder(tmp_path), webhooks)
    )
    daemon = daemons.start(config, env={SECRET_ENV: receiver.secret})
    wait_until(lambda: len(receiver.delivered()) == 1, BOUND, "the third attempt's 200")
    wait_until(lambda: sqlite_state(db, "hook") == (2, 0, 0), BOUND, "the cursor after the 200")
    assert daemon.stop() == 0
    attempts = receiver.at("/hook")
    assert [a.status for a in attempts] == [500, 500, 200]
    assert {a.id for a in attempts} == {"msg_2"}  # row 1 is the run's items.changed
    assert all(a.verified for a in attempts)
    assert len({a.body for a in attempts}) == 1
    # While each attempt was answered, the cursor had not moved; failures were counted and
    # the failed message's rows were kept pending.
    assert [a.observed for a in attempts] == [(0, 0, 0), (1, 2, 1), (1, 2, 2)]
    failed = daemon.events("webhook delivery failed; retrying")
    assert [(f["id"], f["error"], f["attempts"]) for f in failed] == [
        ("msg_2", "HTTP 500", 1),
        ("msg_2", "HTTP 500", 2),
    ]


def test_a_run_end_is_not_lost_when_the_daemon_is_killed_before_delivering(
    daemons: Daemons, tmp_path: Path
) -> None:
    db = tmp_path / "catalog.db"
    port = free_port()  # nothing listens there yet
    down = Receiver(new_secret(), port=port)
    config = daemons.write_config(
        daemon_config(f"sqlite:///{db}", photo_folder(tmp_path), [hook("hook", down.url())])
    )
    env = {SECRET_ENV: down.secret, "SYNCD_REPLICA": "replica-a"}
    first = daemons.start(config, env=env, name="first")

    def failed_once() -> bool:
        state = sqlite_state(db, "hook")
        return state is not None and state[2] >= 1

    wait_until(failed_once, BOUND, "a failed delivery attempt")
    first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    catalog = open_catalog(f"sqlite:///{db}")
    try:
        rows = catalog.outbox_after(0)
        (run,) = catalog.runs("images")
    finally:
        catalog.close()
    assert [r.kind for r in rows] == ["items.changed", "sync.completed"]
    assert run.status is RunStatus.SUCCEEDED

    down.start()
    try:
        second = daemons.start(config, env=env, name="second")
        wait_until(lambda: len(down.delivered()) == 2, BOUND, "delivery after the restart")
        wait_until(lambda: sqlite_state(db, "hook") == (2, 0, 0), BOUND, "the cursor at the end")
        assert second.stop() == 0
    finally:
        down.stop()
    assert [r.id for r in down.delivered()] == ["msg_1", "msg_2"]
    assert all(r.verified for r in down.received)
    assert [r.payload["type"] for r in down.delivered()] == ["items.changed", "sync.completed"]
    assert down.delivered()[1].payload["data"]["run_id"] == run.id
    # No second run: the restarted daemon delivered the first one's end.
    catalog = open_catalog(f"sqlite:///{db}")
    try:
        assert len(catalog.runs("images")) == 1
    finally:
        catalog.close()
