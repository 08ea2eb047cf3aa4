"""The applier on SQLite and PostgreSQL: order-independence, duplicates, dead letters,
routing, and events meeting a running reconcile."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.catalog import Catalog, RunStatus, open_catalog
from syncd.config import Config, parse_config
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from syncd.storage.types import ObjectInfo

CONFIG = """\
integrations: [{name: aws, provider: s3}]
drivers:
  - {name: raw, integration: aws, bucket: media, prefix: raw/, exclude: ["*.txt"]}
  - {name: all, integration: aws, bucket: media}
datasets:
  - {name: train, drivers: [raw]}
  - {name: everything, drivers: [all]}
"""


def config() -> Config:
    return parse_config(CONFIG, "test.yaml", base_dir=Path.cwd())


def event(kind: EventKind, key: str, seq: int, size: int = 1, time: float = 0.0) -> ObjectEvent:
    return ObjectEvent(
        kind,
        "s3",
        "media",
        key,
        time or 1_700_000_000.0 + seq,
        s3_token(f"{seq:016X}"),
        size=size if kind is EventKind.CREATED else None,
        etag=f"e{seq}",
    )


def message(*events: ObjectEvent, mid: str = "m") -> Message:
    return Message(mid, "test", "{}", list(events))


def state(catalog: Catalog, dataset: str = "train") -> dict[str, Any]:
    return {
        i.key: (i.deleted, None if i.deleted else (i.size, i.etag), i.order_token)
        for i in catalog.items(dataset, include_deleted=True)
    }


def test_routing_duplicates_and_counts(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    batch = [
        message(event(EventKind.CREATED, "raw/a.jpg", 1)),
        message(event(EventKind.CREATED, "raw/a.jpg", 1)),  # a duplicate delivery
        message(event(EventKind.CREATED, "raw/b.txt", 2)),  # excluded from `raw`, kept by `all`
        message(ObjectEvent(EventKind.CREATED, "s3", "other-bucket", "x", 1.0)),
    ]
    result = applier.apply(batch)
    assert result.unrouted == 1
    assert sorted(state(catalog, "train")) == ["raw/a.jpg"]
    assert sorted(state(catalog, "everything")) == ["raw/a.jpg", "raw/b.txt"]
    again = applier.apply(batch)
    assert again.applied == 0 and again.ignored == 3


def test_poison_messages_are_dead_lettered_and_the_rest_applied(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    poison = Message("p1", "aws:sqs:q", "not json", error="SQS body is not JSON")
    result = applier.apply([message(event(EventKind.CREATED, "raw/ok.jpg", 1)), poison])
    assert result.dead_lettered == 1 and result.failed == []
    assert "raw/ok.jpg" in state(catalog)
    (letter,) = catalog.dead_letters()
    assert (letter.source, letter.reason, letter.payload) == (
        "aws:sqs:q",
        "SQS body is not JSON",
        "not json",
    )


def test_an_older_event_never_overrides_a_newer_one(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    applier.apply([message(event(EventKind.DELETED, "raw/k.jpg", 5))])
    applier.apply([message(event(EventKind.CREATED, "raw/k.jpg", 3, size=9))])
    assert state(catalog)["raw/k.jpg"][0] is True
    applier.apply([message(event(EventKind.CREATED, "raw/k.jpg", 7, size=7))])
    assert state(catalog)["raw/k.jpg"][:2] == (False, (7, "e7"))
    changes = [(c.key, str(c.op)) for c in catalog.changes("train")]
    assert changes == [("raw/k.jpg", "deleted"), ("raw/k.jpg", "added")]


operations = st.lists(
    st.tuples(
        st.sampled_from(["raw/a.jpg", "raw/b b.png", "raw/c+1.dcm"]),
        st.sampled_from([EventKind.CREATED, EventKind.DELETED]),
        st.integers(min_value=1, max_value=5),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=operations,
    seed=st.integers(0, 2**16),
    duplicates=st.integers(0, 4),
    batch=st.integers(1, 6),
)
def test_any_permutation_with_duplicates_in_any_batching_converges(
    catalog_url: str, ops: list[tuple[str, EventKind, int]], seed: int, duplicates: int, batch: int
) -> None:
    history = [event(kind, key, seq, size=seq) for seq, (key, kind, _) in enumerate(ops, start=1)]
    rng = random.Random(seed)
    shuffled = history + [rng.choice(history) for _ in range(duplicates)]
    rng.shuffle(shuffled)

    schema_url = catalog_url
    in_order = _fresh(schema_url, "in_order")
    permuted = _fresh(schema_url, "permuted")
    try:
        ordered_applier = EventApplier(in_order, config())
        for e in history:
            ordered_applier.apply([message(e)])
        permuted_applier = EventApplier(permuted, config())
        for start in range(0, len(shuffled), batch):
            permuted_applier.apply([message(e) for e in shuffled[start : start + batch]])
        assert state(permuted) == state(in_order)
    finally:
        for opened in (in_order, permuted):
            opened.close()
            _drop(opened.url)


_counter = iter(range(10**9))


def _drop(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).unlink(missing_ok=True)
        return
    import psycopg

    from syncd.catalog.postgres import split_schema

    conninfo, schema = split_schema(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _fresh(url: str, label: str) -> Catalog:
    n = next(_counter)
    if url.startswith("sqlite:///"):
        return open_catalog(url.replace(".db", f"-{label}-{n}.db"))
    return open_catalog(f"{url}_{label}_{n}")


def test_events_and_a_running_reconcile_meet_safely(catalog: Catalog, catalog_url: str) -> None:
    """Invariant 4 from the event side: events land while a listing is under way."""
    store = MemoryStore()
    for n in range(6):
        store.put(f"raw/{n}.jpg", b"x")
    cfg = config()
    driver = cfg.driver("raw")
    reconcile(catalog, store, dataset="train", driver=driver, provider="s3")
    store.put("raw/2.jpg", b"changed before the listing")
    other = open_catalog(catalog_url)
    applier = EventApplier(other, cfg)

    class Listing:
        name = "racing"
        sorted_listing = True

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
            before = list(store.list(prefix))
            yield before[0]
            # While the listing runs: raw/2.jpg is deleted, raw/new.jpg created (by events).
            future = 4_000_000_000.0
            applier.apply(
                [
                    message(event(EventKind.DELETED, "raw/2.jpg", 10, time=future)),
                    message(event(EventKind.CREATED, "raw/new.jpg", 11, time=future)),
                ]
            )
            yield from before[1:]

    try:
        result = reconcile(catalog, Listing(), dataset="train", driver=driver, provider="s3")
    finally:
        other.close()
    assert result.status is RunStatus.SUCCEEDED
    live = {k for k, v in state(catalog).items() if not v[0]}
    assert "raw/2.jpg" not in live and "raw/new.jpg" in live
    assert result.counts.skipped >= 1


def test_removing_an_old_version_keeps_the_live_item(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    live = ObjectEvent(
        EventKind.CREATED, "s3", "media", "raw/v.jpg", 1.0, s3_token("0A"), size=5, version="v2"
    )
    applier.apply([message(live)])
    old = ObjectEvent(
        EventKind.DELETED, "s3", "media", "raw/v.jpg", 2.0, s3_token("0B"), version="v1"
    )
    assert applier.apply([message(old)]).ignored == 2  # both datasets watch raw/
    assert state(catalog)["raw/v.jpg"][0] is False
    current = ObjectEvent(
        EventKind.DELETED, "s3", "media", "raw/v.jpg", 3.0, s3_token("0C"), version="v2"
    )
    assert applier.apply([message(current)]).applied == 2
    assert state(catalog)["raw/v.jpg"][0] is True


def test_a_payload_with_nul_bytes_is_dead_lettered(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    poison = Message("p", "aws:sqs:q", "bad\x00payload", error="body has\x00 NUL")
    ok = message(event(EventKind.CREATED, "raw/fine.jpg", 1))
    result = applier.apply([poison, ok])
    assert result.dead_lettered == 1 and "raw/fine.jpg" in state(catalog)
    (letter,) = catalog.dead_letters()
    assert letter.payload == "bad\\u0000payload"
