"""The leases a replica holds, renewed by a heartbeat that runs whatever the work is doing.

A sync stuck in retries keeps its lease; a replica that stops (crash, SIGSTOP, network
partition) stops renewing and loses it after the TTL, and its writes are then refused by the
epoch every batch checks (syncd.catalog's fencing). Transaction-scoped row locks only: a
session lock would not survive PgBouncer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import structlog

from syncd.catalog import Catalog, open_catalog
from syncd.catalog.types import Fence
from syncd.errors import SyncdError

log = structlog.get_logger("syncd.daemon.leases")


@dataclass(slots=True)
class LeaseStats:
    held: int = 0
    renewals: int = 0
    lost: int = 0
    last_renewal: float = 0.0
    last_error: str | None = None


class LeaseKeeper:
    def __init__(self, catalog_url: str, owner: str, ttl: float) -> None:
        self.owner = owner
        self.ttl = ttl
        self._catalog_url = catalog_url
        self._catalog: Catalog | None = None
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="syncd-leases", daemon=True)
        self.stats = LeaseStats()

    def _db(self) -> Catalog:
        # The keeper's own connection: a heartbeat must not queue behind a sync's writes.
        if self._catalog is None:
            self._catalog = open_catalog(self._catalog_url)
        return self._catalog

    def start(self) -> None:
        self._thread.start()

    def acquire(self, name: str) -> Fence | None:
        """The lease `name` for this replica, or None when another replica holds it."""
        with self._lock:
            epoch = self._db().claim_lease(name, self.owner, self.ttl)
            if epoch is None:
                return None
            self._held[name] = epoch
            self.stats.held = len(self._held)
            # A fresh claim counts as renewed: /readyz measures staleness from here.
            self.stats.last_renewal = time.time()
            return Fence(name, epoch)

    def release(self, fence: Fence) -> None:
        with self._lock:
            if self._held.get(fence.name) == fence.epoch:
                del self._held[fence.name]
            self.stats.held = len(self._held)
            try:
                self._db().release_lease(fence.name, self.owner, fence.epoch)
            except SyncdError as exc:
                log.warning("lease not released; it expires", lease=fence.name, error=str(exc))

    def holds(self, fence: Fence) -> bool:
        with self._lock:
            return self._held.get(fence.name) == fence.epoch

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew_all()

    def renew_all(self) -> None:
        with self._lock:
            for name, epoch in list(self._held.items()):
                try:
                    kept = self._db().renew_lease(name, self.owner, epoch, self.ttl)
                except SyncdError as exc:
                    self.stats.last_error = str(exc)
                    log.warning("lease renewal failed", lease=name, error=str(exc))
                    with contextlib.suppress(SyncdError):
                        self._db().reconnect()
                    continue
                if kept:
                    self.stats.renewals += 1
                    self.stats.last_renewal = time.time()
                else:
                    # Another replica claimed it: this one's writes under it now fail.
                    del self._held[name]
                    self.stats.lost += 1
                    log.warning("lease lost to another replica", lease=name, epoch=epoch)
            self.stats.held = len(self._held)

    def stop(self) -> None:
        """Stop renewing and release every lease, so another replica may go on at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.ttl)
        for name, epoch in list(self._held.items()):
            self.release(Fence(name, epoch))
        if self._catalog is not None:
            self._catalog.close()
