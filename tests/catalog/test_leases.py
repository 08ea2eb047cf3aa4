"""Leases with fencing and schedule slots, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from syncd.catalog import Catalog, RunStatus, open_catalog
from syncd.catalog.types import Fence
from syncd.errors import LeaseLost
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from syncd.storage.types import Listed
from tests.conftest import make_driver


def test_one_owner_at_a_time_and_a_dead_owner_loses_it_after_the_ttl(catalog: Catalog) -> None:
    first = catalog.claim_lease("sync:d:r", "replica-a", ttl=0.5)
    assert first == 1
    assert catalog.claim_lease("sync:d:r", "replica-b", ttl=0.5) is None
    assert catalog.renew_lease("sync:d:r", "replica-a", 1, ttl=0.5)
    time.sleep(0.7)
    assert catalog.claim_lease("sync:d:r", "replica-b", ttl=5) == 2  # a took too long
    assert not catalog.renew_lease("sync:d:r", "replica-a", 1, ttl=5)
    catalog.release_lease("sync:d:r", "replica-b", 2)
    assert catalog.claim_lease("sync:d:r", "replica-a", ttl=5) == 3
    (lease,) = catalog.leases()
    assert (lease.owner, lease.epoch) == ("replica-a", 3)


def test_each_slot_goes_to_one_claimer(catalog_url: str) -> None:
    winners: list[str] = []

    def replica(name: str) -> None:
        mine = open_catalog(catalog_url)
        try:
            for slot in range(50):
                if mine.claim_slot("sync:d:r", slot, name):
                    winners.append(f"{name}:{slot}")
        finally:
            mine.close()

    open_catalog(catalog_url).close()
    threads = [threading.Thread(target=replica, args=(f"r{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(w.split(":")[1]) for w in winners) == list(range(50))


def test_a_run_that_lost_its_lease_writes_nothing_more(catalog: Catalog, catalog_url: str) -> None:
    store = MemoryStore()
    for n in range(12_000):
        store.put(f"k{n:05d}", b"1")
    claimed = catalog.claim_lease("sync:ds:files", "replica-a", ttl=0.2)
    assert claimed is not None
    epoch: int = claimed
    other = open_catalog(catalog_url)

    class Paused:
        """The owner pauses mid-listing (as SIGSTOP would) past the TTL; another replica
        claims the lease meanwhile."""

        name = "paused"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
            for n, info in enumerate(store.list(prefix, start_after)):
                if n == 6_000:
                    time.sleep(0.4)
                    assert other.claim_lease("sync:ds:files", "replica-b", ttl=60) == epoch + 1
                yield info

    try:
        result = reconcile(
            catalog,
            Paused(),
            dataset="ds",
            driver=make_driver("b"),
            provider="local",
            fence=Fence("sync:ds:files", epoch),
        )
    finally:
        other.close()
    assert result.status is RunStatus.INTERRUPTED and "another replica" in (result.reason or "")
    assert sum(1 for _ in catalog.items("ds")) == 5_000  # the batch before the pause only
    with catalog.transaction() as tx, pytest.raises(LeaseLost):
        tx.check_fence(Fence("sync:ds:files", epoch))
