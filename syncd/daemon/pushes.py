"""`syncd run` keeps every target in step: a push after commits (batched over a moment) and
on an interval, by one replica at a time (each push holds the lease `push:<target>`)."""

from __future__ import annotations

import threading
import time

import structlog

from syncd.catalog import open_catalog
from syncd.catalog.types import Catalog, RunStatus
from syncd.config import Config, LabelStudioTarget
from syncd.errors import Stopped, SyncdError
from syncd.push.push import PushBusy, push

log = structlog.get_logger(__name__)

#: Commits within this long go out in one push.
SETTLE = 1.0


class TargetPusher:
    def __init__(self, config: Config, catalog_url: str, owner: str, stop: threading.Event) -> None:
        self.config = config
        self.catalog_url = catalog_url
        self.owner = owner
        self._stop = stop
        self._wake = threading.Event()
        self._next: dict[str, float] = {t.name: 0.0 for t in config.targets}
        self._failures: dict[str, int] = {t.name: 0 for t in config.targets}
        self._catalog: Catalog | None = None
        self._thread = threading.Thread(target=self._run, name="syncd-pushes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after `stop`), then close its catalog."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive() and self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def wake(self) -> None:
        """Something was committed: push soon rather than at the next interval."""
        self._wake.set()

    def _db(self) -> Catalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.catalog_url)
        return self._catalog

    def _run(self) -> None:
        log.info("pushes started", targets=[t.name for t in self.config.targets])
        while not self._stop.is_set():
            woken = self._wake.is_set()
            if woken:
                self._wake.clear()
                if self._stop.wait(SETTLE):
                    break
            self.push_due(woken)
            now = time.time()
            wait = min(self._next.values(), default=now + 60.0) - now
            self._wake.wait(max(0.5, min(wait, 60.0)))

    def push_due(self, woken: bool = False) -> None:
        """Push every target whose interval passed, or (`woken`) whose dataset changed."""
        for target in self.config.targets:
            if self._stop.is_set():
                return
            now = time.time()
            if now < self._next[target.name] and not (woken and self._failures[target.name] == 0):
                continue
            self._push(target)

    def _push(self, target: LabelStudioTarget) -> None:
        try:
            catalog = self._db()
            state = catalog.push_state(target.name)
            since = 0 if state is None else state.pushed_through
            changed = catalog.count_changes(target.dataset, since) > 0
            due = state is None or time.time() - state.verified_at >= target.verify_every
            pending = catalog.count_pending_links(target.name) > 0
            if changed or due or pending:
                result = push(
                    self.config, catalog, target, owner=self.owner, stop=self._stop, verify=None
                )
                if result.status is not RunStatus.SUCCEEDED:
                    log.warning("push incomplete", target=target.name, reason=result.reason)
            self._failures[target.name] = 0
            self._next[target.name] = time.time() + target.every
        except PushBusy:
            self._next[target.name] = time.time() + target.every
        except Stopped:
            return
        except SyncdError as exc:
            failures = self._failures[target.name] = self._failures[target.name] + 1
            delay = min(target.every, 2.0**failures)
            log.error("push failed", target=target.name, error=str(exc), retry_in=delay)
            self._next[target.name] = time.time() + delay
            if self._catalog is not None and getattr(exc, "transient", False):
                self._catalog.close()
                self._catalog = None
        except Exception as exc:  # the thread must not die and leave targets behind
            log.error("push failed unexpectedly", target=target.name, error=str(exc), exc_info=True)
            self._next[target.name] = time.time() + target.every
