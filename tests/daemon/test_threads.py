"""The daemon's workers each own a catalog connection: threads writing at once leave a
consistent catalog, as two processes do (tests/catalog/test_catalog.py)."""

from __future__ import annotations

import threading

from syncd.catalog.threads import ThreadCatalogs
from syncd.config import Config
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from tests.conftest import make_driver


def config() -> Config:
    return Config.model_validate(
        {
            "integrations": [{"name": "mem", "provider": "s3"}],
            "drivers": [
                {"name": f"d{n}", "integration": "mem", "bucket": f"bucket{n}"} for n in range(3)
            ],
            "datasets": [{"name": "ds", "drivers": ["d0", "d1", "d2"]}],
        }
    )


def event(bucket: str, key: str, n: int) -> ObjectEvent:
    return ObjectEvent(
        kind=EventKind.CREATED,
        provider="s3",
        bucket=bucket,
        key=key,
        event_time=1_700_000_000.0 + n,
        token=f"{n:016X}",
        size=n,
        etag=f"e{n}",
    )


def test_threads_with_their_own_connections_apply_and_reconcile_at_once(
    catalog_url: str,
) -> None:
    cfg = config()
    catalogs = ThreadCatalogs(catalog_url)
    errors: list[BaseException] = []
    store = MemoryStore()
    for n in range(3000):
        store.put(f"listed/{n:05d}", b"x")

    def events(worker: int) -> None:
        try:
            applier = EventApplier(catalogs.get(), cfg)
            bucket = f"bucket{worker}"
            for start in range(0, 3000, 100):
                messages = [
                    Message(f"{worker}-{n}", "test", "", [event(bucket, f"e/{n:05d}", n)])
                    for n in range(start, start + 100)
                ]
                # Every key twice, out of order: the second copy must change nothing.
                applier.apply(messages[::-1] + messages)
        except BaseException as exc:
            errors.append(exc)

    def listing() -> None:
        try:
            reconcile(
                catalogs.get(),
                store,
                dataset="ds",
                driver=make_driver("bucket2", name="d2"),
                provider="s3",
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=events, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=listing))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        catalog = catalogs.get()
        drivers = [item.driver for item in catalog.items("ds")]
        assert drivers.count("d0") == 3000 and drivers.count("d1") == 3000
        assert drivers.count("d2") == 3000
        ids = [c.id for c in catalog.changes("ds")]
        assert ids == list(range(1, 9001))
    finally:
        catalogs.close()
