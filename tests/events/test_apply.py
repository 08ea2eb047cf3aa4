"""The applier on SQLite and PostgreSQL: order-independence, duplicates, dead letters,
routing, and events meeting a running reconcile."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.catalog import Catalog, Item, RunStatus, open_catalog
from syncd.config import Config, parse_config
from syncd.errors import NotFound
from syncd.events.apply import EventApplier, Route
from syncd.events.types import (
    GCS_FINAL_METAGENERATION,
    EventKind,
    Message,
    ObjectEvent,
    gcs_token,
    s3_token,
)
from syncd.reconcile import reconcile
from syncd.storage.memory import MemoryStore
from syncd.storage.types import ObjectInfo

CONFIG = """\
integrations: [{name: aws, provider: s3}]
drivers:
  - {name: raw, integration: aws, bucket: media, prefix: raw/, exclude: ["*.txt"], versioned: true}
  - {name: all, integration: aws, bucket: media, versioned: true}
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
        skipped_by_store: tuple[str, ...] = ()

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


def versioned(kind: EventKind, seq: str, version: str, size: int = 5) -> ObjectEvent:
    return ObjectEvent(
        kind,
        "s3",
        "media",
        "raw/v.jpg",
        float(int(seq, 16)),
        s3_token(seq),
        size=size if kind is EventKind.CREATED else None,
        etag=f"e-{version}",
        version=version,
    )


def one(catalog: Catalog) -> Item:
    (item,) = catalog.items("train", include_deleted=True)
    return item


def test_a_delete_marker_hides_the_object_in_every_order(catalog_url: str) -> None:
    put = versioned(EventKind.CREATED, "0A", "v1")
    marker = versioned(EventKind.DELETED, "0B", "marker-1")  # its own version id
    for order in ([put, marker], [marker, put]):
        opened = _fresh(catalog_url, "marker")
        try:
            applier = EventApplier(opened, config())
            for e in order:
                applier.apply([message(e)])
            assert one(opened).deleted and not one(opened).verify
        finally:
            opened.close()
            _drop(opened.url)


def test_a_gcs_delete_of_a_newer_generation_is_kept_as_its_tombstone(catalog_url: str) -> None:
    def gcs(kind: EventKind, generation: int) -> ObjectEvent:
        metageneration = GCS_FINAL_METAGENERATION if kind is EventKind.DELETED else 1
        return ObjectEvent(
            kind,
            "gcs",
            "media",
            "raw/g.jpg",
            float(generation),
            gcs_token(generation, metageneration),
            size=1 if kind is EventKind.CREATED else None,
            version=str(generation),
        )

    first, second, gone = (
        gcs(EventKind.CREATED, 100),
        gcs(EventKind.CREATED, 200),
        gcs(EventKind.DELETED, 200),
    )
    for order in ([first, second, gone], [first, gone, second], [gone, second, first]):
        opened = _fresh(catalog_url, "gcs")
        try:
            cfg = parse_config(CONFIG.replace("provider: s3", "provider: gcs"), "t.yaml")
            applier = EventApplier(opened, cfg)
            for e in order:
                applier.apply([message(e)])
            (item,) = opened.items("train", include_deleted=True)
            assert (item.deleted, item.version) == (True, "200")
        finally:
            opened.close()
            _drop(opened.url)


def test_removing_a_noncurrent_version_keeps_the_live_item(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    applier.apply([message(versioned(EventKind.CREATED, "0A", "v1", size=1))])
    applier.apply([message(versioned(EventKind.CREATED, "0B", "v2", size=2))])
    feed = catalog.last_change_id()
    gone = applier.apply([message(versioned(EventKind.VERSION_DELETED, "0C", "v1"))])
    assert gone.ignored == 2 and gone.unsettled == []  # both datasets watch raw/
    item = one(catalog)
    assert (item.deleted, item.verify, item.version, item.size) == (False, False, "v2", 2)
    assert catalog.last_change_id() == feed


def test_removing_the_current_version_asks_for_a_stat(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    applier.apply([message(versioned(EventKind.CREATED, "0A", "v1", size=1))])
    applier.apply([message(versioned(EventKind.CREATED, "0B", "v2", size=2))])
    result = applier.apply([message(versioned(EventKind.VERSION_DELETED, "0C", "v2"))])
    assert len(result.unsettled) == 2
    item = one(catalog)
    assert (item.deleted, item.verify) == (False, True)  # it may exist: an older version shows

    # An old event arriving now changes nothing; a stat of the bucket settles the item.
    assert applier.apply([message(versioned(EventKind.CREATED, "0A", "v1", size=1))]).applied == 0
    shown = ObjectInfo("raw/v.jpg", 1, 10.0, "e-v1", "v1")
    assert applier.settle(result.unsettled, lambda route, key: shown) == 2
    item = one(catalog)
    assert (item.deleted, item.verify, item.version, item.size) == (False, False, "v1", 1)
    # The settled state sits at the latest position seen: the removal's duplicate is old.
    again = applier.apply([message(versioned(EventKind.VERSION_DELETED, "0C", "v2"))])
    assert again.applied == 0 and again.unsettled == []


def test_a_version_removed_that_was_never_seen_is_not_guessed(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    applier.apply([message(versioned(EventKind.CREATED, "0A", "v2", size=2))])
    result = applier.apply([message(versioned(EventKind.VERSION_DELETED, "0B", "v0"))])
    assert one(catalog).verify and result.unsettled

    def missing(route: Route, key: str) -> ObjectInfo:
        raise NotFound(key)

    applier.settle(result.unsettled, missing)
    item = one(catalog)
    assert (item.deleted, item.verify) == (True, False)


def test_a_payload_with_nul_bytes_is_dead_lettered(catalog: Catalog) -> None:
    applier = EventApplier(catalog, config())
    poison = Message("p", "aws:sqs:q", "bad\x00payload", error="body has\x00 NUL")
    ok = message(event(EventKind.CREATED, "raw/fine.jpg", 1))
    result = applier.apply([poison, ok])
    assert result.dead_lettered == 1 and "raw/fine.jpg" in state(catalog)
    (letter,) = catalog.dead_letters()
    assert letter.payload == "bad\\u0000payload"


def test_a_permanent_delete_in_a_bucket_without_versions_deletes(catalog: Catalog) -> None:
    """S3 names an unversioned object's version "null"; removing it removes the object."""
    cfg = parse_config(CONFIG.replace(", versioned: true", ""), "t.yaml")
    applier = EventApplier(catalog, cfg)
    applier.apply([message(versioned(EventKind.CREATED, "0A", "null"))])
    applier.apply([message(versioned(EventKind.VERSION_DELETED, "0B", "null"))])
    item = one(catalog)
    assert (item.deleted, item.verify) == (True, False)
