"""Webhooks: the catalog's outbox sent to HTTP endpoints, signed as Standard Webhooks are,
at least once.

The outbox rows are written in the transaction that made each event true (a run's end, a
committed batch of bucket events), so a daemon killed between that commit and the POST loses
nothing: whichever daemon runs next sends it.

One thread coordinates, on its own catalog connection. For each webhook it holds the lease
`webhook:NAME` (one replica delivers each webhook, in outbox order), reads the rows after the
webhook's cursor that match its `events` and `datasets`, and hands one message at a time to a
sender thread of that webhook, so an endpoint that is slow or down holds back its own
deliveries only. Consecutive `items.changed` rows of one dataset go as one message.

The cursor moves only after a 2xx. Any other answer, a timeout or a connection error is
retried after 1 s, doubling up to 5 minutes, each delay ±20% at random (a `Retry-After` that
asks for longer is honoured up to the same cap). The attempt count, when the next attempt is
due and which rows the message holds are stored with the cursor, so a restarted daemon keeps
the schedule and resends the same rows under the same `webhook-id`.

Signing (https://www.standardwebhooks.com/): `webhook-signature: v1,<base64 HMAC-SHA256>` of
`{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64 after `whsec_`, or by the
secret's UTF-8 bytes when it has no such prefix. Secrets, URLs and payloads are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import http.client
import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO
from urllib.parse import urlsplit

import structlog

import syncd
from syncd.catalog import Catalog, open_catalog
from syncd.catalog.types import Fence, OutboxRow, WebhookState
from syncd.config import Config, Webhook
from syncd.errors import SyncdError
from syncd.logs import scrub

log = structlog.get_logger("syncd.daemon.webhooks")

#: Seconds a request may wait on the network (connect, send, each read).
TIMEOUT = 10.0
#: Seconds between looks at the outbox.
POLL = 0.5
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
JITTER = 0.2
#: Outbox rows read at once.
PAGE = 200
#: `items.changed` rows one message may carry.
MAX_COALESCE = 100
#: Delivered rows are kept this long, then pruned (looked at this often).
KEEP = 7 * 86_400.0
PRUNE_EVERY = 3_600.0
#: How often a cursor that only moved past other webhooks' rows is stored.
SAVE_SKIPPED_EVERY = 30.0
#: What is read of a response body (it is not used; reading lets the connection close cleanly).
MAX_RESPONSE = 64 * 1024
#: Seconds a stopping deliverer waits for requests in flight to be answered.
STOP_WAIT = 5.0

ITEMS_CHANGED = "items.changed"
SECRET_PREFIX = "whsec_"


# -- signing ------------------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after `whsec_`, else the text's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ValueError("a secret starting whsec_ must be base64 after the prefix") from None
    return secret.encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of
    `{msg_id}.{timestamp}.{body}`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def backoff(
    attempts: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next attempt after `attempts` failed ones in a row."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(max(attempts, 1) - 1, 32))
    delay *= 1 + JITTER * (2 * rand() - 1)
    if retry_after is not None:
        delay = max(delay, min(BACKOFF_CAP, retry_after))
    return delay


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """What one POST carries: one outbox row, or consecutive `items.changed` rows of one
    dataset. `id` (the `webhook-id`) names the rows, so it is the same on every retry."""

    id: str
    first_id: int
    last_id: int
    rows: int
    body: bytes


def message_of(rows: Sequence[OutboxRow]) -> Message:
    first, last = rows[0], rows[-1]
    if len(rows) == 1:
        return Message(f"msg_{first.id}", first.id, first.id, 1, first.payload.encode("utf-8"))
    return Message(f"msg_{first.id}-{last.id}", first.id, last.id, len(rows), _coalesce(rows))


def _coalesce(rows: Sequence[OutboxRow]) -> bytes:
    """One `items.changed` body for several rows of one dataset: the same shape, summed."""
    parsed = [json.loads(row.payload) for row in rows]
    datas = [p["data"] for p in parsed]
    firsts = [d["first_change_id"] for d in datas if d.get("first_change_id") is not None]
    lasts = [d["last_change_id"] for d in datas if d.get("last_change_id") is not None]
    data = {
        "dataset": datas[0]["dataset"],
        "drivers": sorted({driver for d in datas for driver in d.get("drivers", ())}),
        "run_ids": [run for d in datas for run in d.get("run_ids", ())],
        "count": sum(int(d.get("count", 0)) for d in datas),
        "added": sum(int(d.get("added", 0)) for d in datas),
        "updated": sum(int(d.get("updated", 0)) for d in datas),
        "deleted": sum(int(d.get("deleted", 0)) for d in datas),
        "first_change_id": min(firsts) if firsts else None,
        "last_change_id": max(lasts) if lasts else None,
    }
    envelope = {"type": ITEMS_CHANGED, "timestamp": parsed[-1]["timestamp"], "data": data}
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def wants(webhook: Webhook, row: OutboxRow) -> bool:
    return row.kind in webhook.events and (not webhook.datasets or row.dataset in webhook.datasets)


def _joins(group: Sequence[OutboxRow], row: OutboxRow) -> bool:
    head = group[0]
    return (
        head.kind == ITEMS_CHANGED
        and row.kind == ITEMS_CHANGED
        and row.dataset == head.dataset
        and len(group) < MAX_COALESCE
    )


# -- one POST -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is a failure (Standard Webhooks: fix the URL rather than follow)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, message: Message, key: bytes, *, timeout: float = TIMEOUT) -> Outcome:
    """POST `message` signed with `key`; what came of it. Never raises for the network."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"syncd/{syncd.__version__}",
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message.id, timestamp, message.body),
    }
    request = urllib.request.Request(url, data=message.body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE)
            return Outcome(status=int(response.status))
    except urllib.error.HTTPError as exc:
        retry_after = _seconds(exc.headers.get("Retry-After") if exc.headers else None)
        with contextlib.suppress(Exception):
            exc.read(MAX_RESPONSE)
        exc.close()
        return Outcome(status=exc.code, error=f"HTTP {exc.code}", retry_after=retry_after)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Outcome(error=f"timed out after {timeout:g}s")
        return Outcome(error=f"cannot connect: {reason}")
    except TimeoutError:
        return Outcome(error=f"timed out after {timeout:g}s")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500])


def _seconds(value: str | None) -> float | None:
    """A `Retry-After` in seconds (its HTTP-date form is not honoured)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# -- the deliverer ------------------------------------------------------------------------


@dataclass(slots=True)
class _Hook:
    webhook: Webhook
    lease: str
    url: str
    fence: Fence | None = None
    #: Stored state, read when the lease was claimed and kept as it is saved.
    state: WebhookState | None = None
    #: Read this far: at or past `state.last_id` (rows that are not this webhook's).
    scan: int = 0
    scan_saved_at: float = 0.0
    renew_at: float = 0.0
    claim_at: float = 0.0
    busy: bool = False

    @property
    def name(self) -> str:
        return self.webhook.name

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"


@dataclass(slots=True)
class _Done:
    hook: _Hook
    message: Message
    outcome: Outcome
    epoch: int


class WebhookDeliverer:
    """Sends every configured webhook its outbox rows, in order, at least once; ends when
    `stop` is set (leases released, cursors saved)."""

    def __init__(self, config: Config, catalog_url: str, owner: str, stop: threading.Event) -> None:
        self.config = config
        self.catalog_url = catalog_url
        self.owner = owner
        self.ttl = config.daemon.lease_ttl
        #: A webhook new to the catalog is sent what happens from now on.
        self.started_at = time.time()
        self._stop = stop
        self._hooks = [
            _Hook(webhook, f"webhook:{webhook.name}", str(webhook.url))
            for webhook in config.webhooks
        ]
        # Senders' outcomes, and None from `wake` (something was committed to the outbox).
        self._results: queue.Queue[_Done | None] = queue.Queue()
        self._ready: deque[_Done] = deque()
        self._catalog: Catalog | None = None
        self._prune_at = time.monotonic() + 60.0
        self._thread = threading.Thread(target=self._run, name="syncd-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (a run just ended)."""
        self._results.put(None)

    # -- the loop ---------------------------------------------------------------------------

    def _db(self) -> Catalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.catalog_url)
        return self._catalog

    def _run(self) -> None:
        log.info("webhooks started", webhooks=[hook.name for hook in self._hooks])
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                    failures = 0
                except SyncdError as exc:
                    failures += 1
                    log.warning("webhook delivery paused: catalog error", error=str(exc))
                    self._drop_catalog()
                    if self._stop.wait(min(30.0, 2.0**failures)):
                        break
                    continue
                except Exception as exc:  # the thread must not die and leave webhooks unsent
                    log.error("webhook delivery failed unexpectedly", error=str(exc), exc_info=True)
                    if self._stop.wait(5.0):
                        break
                    continue
                self._wait(POLL)
        finally:
            self._close()

    def _wait(self, seconds: float) -> None:
        """Until a sender reports or `seconds` passed."""
        with contextlib.suppress(queue.Empty):
            done = self._results.get(timeout=seconds)
            if done is not None:
                self._ready.append(done)

    def _step(self) -> None:
        catalog = self._db()
        self._collect(catalog)
        self._leases(catalog)
        newest = catalog.outbox_last_id()
        now = time.time()
        for hook in self._hooks:
            state = hook.state
            if hook.busy or hook.fence is None or state is None:
                continue
            if now < state.next_attempt_at or newest <= hook.scan:
                continue
            message = self._next_message(catalog, hook)
            if message is not None:
                self._launch(hook, hook.fence, message)
        self._save_skipped(catalog, force=False)
        if time.monotonic() >= self._prune_at:
            self._prune_at = time.monotonic() + PRUNE_EVERY
            self._prune(catalog)

    def _collect(self, catalog: Catalog) -> None:
        while True:
            if not self._ready:
                try:
                    done = self._results.get_nowait()
                except queue.Empty:
                    return
                if done is None:
                    continue
                self._ready.append(done)
            self._finished(catalog, self._ready.popleft())

    # -- leases -----------------------------------------------------------------------------

    def _leases(self, catalog: Catalog) -> None:
        now = time.monotonic()
        for hook in self._hooks:
            if hook.fence is None:
                if now >= hook.claim_at:
                    hook.claim_at = now + min(self.ttl / 3, 5.0)
                    self._claim(catalog, hook, now)
            elif now >= hook.renew_at:
                if catalog.renew_lease(hook.lease, self.owner, hook.fence.epoch, self.ttl):
                    hook.renew_at = now + self.ttl / 3
                else:
                    self._lost(hook)

    def _claim(self, catalog: Catalog, hook: _Hook, now: float) -> None:
        epoch = catalog.claim_lease(hook.lease, self.owner, self.ttl)
        if epoch is None:
            return
        fence = Fence(hook.lease, epoch)
        state = catalog.webhook_state(hook.name)
        if state is None:
            state = WebhookState(hook.name, last_id=catalog.outbox_last_id(before=self.started_at))
            if not catalog.save_webhook_state(state, fence):
                return
        hook.fence, hook.state = fence, state
        hook.scan, hook.scan_saved_at = state.last_id, now
        hook.renew_at = now + self.ttl / 3
        log.info(
            "webhook lease held",
            webhook=hook.name,
            epoch=epoch,
            cursor=state.last_id,
            attempts=state.attempts,
        )

    def _lost(self, hook: _Hook) -> None:
        log.warning("webhook lease lost to another replica", webhook=hook.name)
        hook.fence = hook.state = None

    # -- one webhook's next message -------------------------------------------------------

    def _next_message(self, catalog: Catalog, hook: _Hook) -> Message | None:
        """The webhook's next message: its first row after the cursor, with the
        `items.changed` rows of the same dataset that follow it; after a failure, exactly the
        rows the failed attempt held."""
        assert hook.state is not None
        through = hook.state.pending_through or None
        group: list[OutboxRow] = []
        after = hook.scan
        done = False
        while not done:
            page = catalog.outbox_after(after, PAGE)
            for row in page:
                if through is not None and row.id > through:
                    done = True
                    break
                if not wants(hook.webhook, row):
                    continue
                if group and through is None and not _joins(group, row):
                    done = True
                    break
                group.append(row)
                if through is None and group[0].kind != ITEMS_CHANGED:
                    done = True
                    break
            if len(page) < PAGE:
                done = True
            if page:
                after = page[-1].id
            if not group:
                hook.scan = after  # nothing of this webhook's up to here
        if not group:
            if through is not None:
                # The rows the failed attempt held are no longer this webhook's (its filters
                # changed): nothing is pending any more.
                hook.state = WebhookState(hook.name, last_id=hook.state.last_id)
            return None
        try:
            return message_of(group)
        except (ValueError, KeyError, TypeError) as exc:
            # Not one of syncd's payloads: sent alone, as it is, rather than not at all.
            log.error("outbox row unreadable; sent alone", webhook=hook.name, error=str(exc))
            return message_of(group[:1])

    def _launch(self, hook: _Hook, fence: Fence, message: Message) -> None:
        hook.busy = True
        thread = threading.Thread(
            target=self._send,
            args=(hook, fence.epoch, message),
            name=f"syncd-webhook:{hook.name}",
            daemon=True,
        )
        thread.start()

    def _send(self, hook: _Hook, epoch: int, message: Message) -> None:
        try:
            key = signing_key(hook.webhook.secret.resolve(self.config.base_dir))
        except (SyncdError, ValueError) as exc:
            outcome = Outcome(error=f"signing secret: {exc}")
        else:
            outcome = post(hook.url, message, key)
        if outcome.error is not None:
            # Stored and logged: no credential a URL might carry may be in it.
            outcome = replace(outcome, error=scrub(outcome.error)[:500])
        self._results.put(_Done(hook, message, outcome, epoch))

    def _finished(self, catalog: Catalog, done: _Done) -> None:
        hook, message, outcome = done.hook, done.message, done.outcome
        hook.busy = False
        if hook.fence is None or hook.fence.epoch != done.epoch or hook.state is None:
            log.info("webhook answer not recorded: the lease was lost", webhook=hook.name)
            return
        previous = hook.state
        if outcome.ok:
            state = WebhookState(hook.name, last_id=message.last_id)
        else:
            attempts = previous.attempts + 1
            delay = backoff(attempts, outcome.retry_after)
            state = WebhookState(
                hook.name,
                last_id=message.first_id - 1,
                pending_through=message.last_id,
                attempts=attempts,
                next_attempt_at=time.time() + delay,
                last_error=outcome.error,
            )
        if not catalog.save_webhook_state(state, hook.fence):
            self._lost(hook)
            return
        hook.state = state
        hook.scan, hook.scan_saved_at = state.last_id, time.monotonic()
        if outcome.ok:
            log.info(
                "webhook delivered",
                webhook=hook.name,
                host=hook.host,
                id=message.id,
                rows=message.rows,
                status=outcome.status,
                attempts=previous.attempts + 1,
            )
        else:
            log.warning(
                "webhook delivery failed; retrying",
                webhook=hook.name,
                host=hook.host,
                id=message.id,
                error=outcome.error,
                attempts=state.attempts,
                retry_in=round(state.next_attempt_at - time.time(), 1),
            )

    # -- housekeeping -----------------------------------------------------------------------

    def _save_skipped(self, catalog: Catalog, *, force: bool) -> None:
        """Store cursors that moved past other webhooks' rows only (so pruning can pass)."""
        now = time.monotonic()
        for hook in self._hooks:
            state = hook.state
            if hook.fence is None or state is None or hook.busy or state.pending_through:
                continue
            if hook.scan <= state.last_id:
                continue
            if not force and now - hook.scan_saved_at < SAVE_SKIPPED_EVERY:
                continue
            moved = WebhookState(hook.name, last_id=hook.scan)
            hook.scan_saved_at = now
            if catalog.save_webhook_state(moved, hook.fence):
                hook.state = moved
            else:
                self._lost(hook)

    def _prune(self, catalog: Catalog) -> None:
        """Delete rows every configured webhook is past, once they are a week old."""
        states = [catalog.webhook_state(hook.name) for hook in self._hooks]
        if not states or any(state is None for state in states):
            return
        through = min(state.last_id for state in states if state is not None)
        pruned = catalog.prune_outbox(time.time() - KEEP, through)
        if pruned:
            log.info("webhook outbox pruned", rows=pruned, through=through)

    def _drop_catalog(self) -> None:
        if self._catalog is not None:
            with contextlib.suppress(Exception):
                self._catalog.close()
            self._catalog = None

    def _close(self) -> None:
        """Record answers still coming (briefly), save cursors, release the leases."""
        deadline = time.monotonic() + STOP_WAIT
        try:
            catalog = self._db()
            while any(hook.busy for hook in self._hooks) and time.monotonic() < deadline:
                self._wait(min(POLL, max(0.0, deadline - time.monotonic())))
                self._collect(catalog)
            self._save_skipped(catalog, force=True)
            for hook in self._hooks:
                if hook.fence is not None:
                    catalog.release_lease(hook.lease, self.owner, hook.fence.epoch)
                    hook.fence = None
        except SyncdError as exc:
            log.warning("webhook leases not released; they expire", error=str(exc))
        finally:
            self._drop_catalog()
        log.info("webhooks stopped")
