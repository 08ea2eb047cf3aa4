"""`listing: inventory` against reports delivered to moto, fake-gcs-server and Azurite in
each provider's layout, on SQLite and PostgreSQL catalogs: the same items as a listing,
keys byte-exact, events newer than a report win, and a report that cannot be trusted
writes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.catalog import open_catalog
from syncd.catalog.types import RunStatus
from syncd.config import Config, parse_config
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent
from syncd.inventory import snapshot
from syncd.project import Project
from syncd.reconcile import SyncResult
from syncd.storage.types import ObjectInfo, Store
from tests.conftest import NASTY_KEYS
from tests.daemon.conftest import Daemons, daemons
from tests.inventory.layouts import azure_inventory, gcs_inventory, s3_inventory
from tests.peers import Peer
from tests.storage.conftest import Bucket, azure_bucket, gcs_bucket, s3_bucket
from tests.storage.throttle_proxy import throttling_proxy

__all__ = ["daemons"]

PREFIX = {"s3": "inventory/source/daily/", "gcs": "reports/", "azure": ""}
RULE = "daily-rule"


@dataclass
class Setup:
    kind: str
    source: Bucket
    reports: Bucket
    catalog_url: str
    base: Path
    endpoint: str | None = None
    #: Inventory options every sync of this setup takes.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def src(self) -> Store:
        return self.source.open()

    @property
    def dst(self) -> Store:
        return self.reports.open()

    def config(self, **inventory: Any) -> Config:
        return parse_config(yaml.safe_dump(self.data(**inventory)), base_dir=self.base)

    def data(self, **inventory: Any) -> dict[str, Any]:
        integration = self.source.integration.model_dump(mode="json", exclude_none=True)
        if self.endpoint is not None:
            integration["endpoint_url"] = self.endpoint
        block: dict[str, Any] = {"bucket": self.reports.bucket, "prefix": PREFIX[self.kind]}
        block.update(self.options)
        if self.kind == "azure":
            block["rule"] = RULE
        block.update(inventory)
        name = integration["name"]
        data = {
            "catalog": self.catalog_url,
            "integrations": [integration],
            "drivers": [
                {"name": "listed", "integration": name, "bucket": self.source.bucket},
                {
                    "name": "inv",
                    "integration": name,
                    "bucket": self.source.bucket,
                    "listing": "inventory",
                    "inventory": block,
                },
            ],
            "datasets": [
                {"name": "by-listing", "drivers": ["listed"]},
                {"name": "by-inventory", "drivers": ["inv"]},
            ],
        }
        return data

    def sync(self, dataset: str, **inventory: Any) -> SyncResult:
        project = Project(self.config(**inventory))
        try:
            (result,) = project.sync(dataset).results
        finally:
            project.close()
        return result

    def listing(self) -> list[ObjectInfo]:
        return [o for o in self.src.list() if isinstance(o, ObjectInfo)]

    def deliver(self, taken_at: float | None = None, **options: Any) -> str:
        """A report of the source bucket as it is now, delivered the provider's way."""
        objects = self.listing()
        taken = time.time() if taken_at is None else taken_at
        if self.kind == "s3":
            return s3_inventory(
                self.dst, PREFIX["s3"], self.source.bucket, objects, taken_at=taken, **options
            )
        if self.kind == "gcs":
            return gcs_inventory(
                self.dst, PREFIX["gcs"], self.source.bucket, objects, taken_at=taken, **options
            )
        return azure_inventory(
            self.dst, self.source.bucket, RULE, objects, taken_at=taken, **options
        )

    def items(self, dataset: str) -> dict[str, tuple[Any, ...]]:
        catalog = open_catalog(self.catalog_url)
        try:
            return {
                i.key: (i.size, i.etag, i.version, i.content_type, i.media_kind, round(i.mtime, 3))
                for i in catalog.items(dataset)
            }
        finally:
            catalog.close()


@pytest.fixture
def setup_for(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    catalog_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], Setup]:
    # A PostgreSQL catalog's copies go to the user's cache: this test's own.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def make(kind: str) -> Setup:
        if kind == "s3":
            moto: Peer = request.getfixturevalue("moto")
            return Setup(
                kind, s3_bucket(moto, tmp_path), s3_bucket(moto, tmp_path), catalog_url, tmp_path
            )
        if kind == "gcs":
            peer: Peer = request.getfixturevalue("gcs_peer")
            return Setup(
                kind, gcs_bucket(peer, tmp_path), gcs_bucket(peer, tmp_path), catalog_url, tmp_path
            )
        peer = request.getfixturevalue("azurite_peer")
        return Setup(
            kind,
            azure_bucket(peer, tmp_path, monkeypatch),
            azure_bucket(peer, tmp_path, monkeypatch),
            catalog_url,
            tmp_path,
        )

    return make


def fill(store: Store, keys: list[str]) -> None:
    for n, key in enumerate(keys):
        content_type = "image/png" if key.endswith(".png") else None
        store.put(key, f"object {n} {key}".encode(), content_type)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [
        ("s3", "CSV"),
        ("s3", "Parquet"),
        ("s3", "ORC"),
        ("gcs", None),
        ("gcs", "parquet"),
        ("azure", None),
        ("azure", "parquet"),
    ],
    ids=["s3-csv", "s3-parquet", "s3-orc", "gcs-csv", "gcs-parquet", "azure-csv", "azure-parquet"],
)
def test_a_report_gives_the_items_a_listing_gives(
    setup_for: Callable[[str], Setup], kind: str, fmt: str | None
) -> None:
    setup = setup_for(kind)
    fill(setup.src, [*NASTY_KEYS, "photos/cat.jpg", "photos/dog.png", "notes.txt"])
    if kind == "s3":
        setup.deliver(fmt=fmt)
    else:
        setup.deliver(parquet=fmt == "parquet")
    listed = setup.sync("by-listing")
    from_report = setup.sync("by-inventory")
    assert listed.status == from_report.status == RunStatus.SUCCEEDED, from_report.reason
    assert from_report.counts.added == listed.counts.added == len(NASTY_KEYS) + 3
    assert setup.items("by-inventory") == setup.items("by-listing")
    again = setup.sync("by-inventory")
    assert (again.counts.added, again.counts.updated, again.counts.deleted) == (0, 0, 0)
    assert again.counts.unchanged == len(NASTY_KEYS) + 3


def test_no_list_call_reaches_the_source_bucket(
    setup_for: Callable[[str], Setup], moto: Peer
) -> None:
    setup = setup_for("s3")
    fill(setup.src, ["a.jpg", "b.jpg"])
    setup.deliver()
    with throttling_proxy(moto.url, every=0) as (url, seen):
        setup.endpoint = url
        result = setup.sync("by-inventory")
    assert result.status == RunStatus.SUCCEEDED and result.counts.added == 2
    assert seen.requests, "the reports were read through the proxy"
    assert [p for _, p in seen.requests if p.startswith(f"/{setup.source.bucket}")] == []


def apply_events(setup: Setup, events: list[ObjectEvent]) -> None:
    catalog = open_catalog(setup.catalog_url)
    try:
        result = EventApplier(catalog, setup.config()).apply([Message("m", "test", "{}", events)])
        assert result.applied, result
    finally:
        catalog.close()


@pytest.mark.parametrize("catalog_copy", [True, False], ids=["copy", "in-place"])
def test_events_newer_than_a_report_are_kept(
    setup_for: Callable[[str], Setup], catalog_copy: bool
) -> None:
    setup = setup_for("s3")
    setup.options = {"catalog_copy": catalog_copy}
    fill(setup.src, ["a.jpg", "b.jpg", "d.jpg"])
    setup.deliver(taken_at=time.time() - 7200)
    assert setup.sync("by-inventory", margin="0s").counts.added == 3
    # Taken before what happens next, delivered after it.
    taken = time.time()
    stale = setup.listing()
    time.sleep(0.05)
    setup.src.delete("b.jpg")  # type: ignore[attr-defined]
    fill(setup.src, ["c.jpg"])
    now = time.time()
    apply_events(
        setup,
        [
            ObjectEvent(EventKind.DELETED, "s3", setup.source.bucket, "b.jpg", now, "00A1"),
            ObjectEvent(EventKind.CREATED, "s3", setup.source.bucket, "c.jpg", now, "00A2", 8, "e"),
        ],
    )
    s3_inventory(setup.dst, PREFIX["s3"], setup.source.bucket, stale, taken_at=taken)
    old = setup.sync("by-inventory", margin="0s")
    assert old.status == RunStatus.SUCCEEDED
    # b.jpg is not brought back and c.jpg is not deleted: the events are newer.
    assert set(setup.items("by-inventory")) == {"a.jpg", "c.jpg", "d.jpg"}
    assert old.counts.deleted == 0 and old.counts.skipped == 1

    # A later report knows more: d.jpg went without an event; it is deleted now.
    setup.src.delete("d.jpg")  # type: ignore[attr-defined]
    setup.deliver(taken_at=time.time() + 60)
    newer = setup.sync("by-inventory", margin="0s", **{})
    assert newer.counts.deleted == 1
    assert set(setup.items("by-inventory")) == {"a.jpg", "c.jpg"}
    # With the default margin (an hour), a report this fresh deletes nothing yet.
    fill(setup.src, ["e.jpg"])
    setup.src.delete("a.jpg")  # type: ignore[attr-defined]
    setup.deliver(taken_at=time.time() + 120)
    cautious = setup.sync("by-inventory")
    assert cautious.counts.deleted == 0 and "a.jpg" in setup.items("by-inventory")
    assert cautious.counts.added == 1


@pytest.mark.parametrize(
    ("kind", "damage", "why"),
    [
        ("s3", {"checksum": "0" * 32}, "but the manifest's MD5 is"),
        ("s3", {"damage_data": True}, "the report is damaged"),
        ("gcs", {"drop_shard": True}, "is missing"),
        ("azure", {"status": "Failed"}, "status is 'Failed', not 'Succeeded'"),
        ("azure", {"checksum": False}, "is missing: the report is not complete"),
    ],
    ids=["s3-checksum", "s3-data-md5", "gcs-missing-shard", "azure-failed-run", "azure-unfinished"],
)
def test_a_report_that_cannot_be_trusted_writes_nothing(
    setup_for: Callable[[str], Setup], kind: str, damage: dict[str, Any], why: str
) -> None:
    setup = setup_for(kind)
    fill(setup.src, ["a.jpg", "b.jpg", "c.jpg"])
    setup.deliver(taken_at=time.time() - 7200)
    assert setup.sync("by-inventory", margin="0s").counts.added == 3
    before = setup.items("by-inventory")
    setup.src.delete("a.jpg")  # type: ignore[attr-defined]
    fill(setup.src, ["new.jpg"])
    setup.deliver(taken_at=time.time() + 60, **damage)
    result = setup.sync("by-inventory", margin="0s")
    assert result.status == RunStatus.ABORTED and why in (result.reason or "")
    assert "nothing written" in (result.reason or "") or "failed" in (result.reason or "")
    assert setup.items("by-inventory") == before


def test_an_older_report_than_the_last_applied_writes_nothing(
    setup_for: Callable[[str], Setup],
) -> None:
    setup = setup_for("s3")
    fill(setup.src, ["a.jpg", "b.jpg"])
    setup.deliver(taken_at=time.time() - 3600)
    assert setup.sync("by-inventory", margin="0s").status == RunStatus.SUCCEEDED
    setup.src.delete("a.jpg")  # type: ignore[attr-defined]
    # The driver now points at another configuration's reports, whose newest is older.
    weekly = "inventory/source/weekly/"
    s3_inventory(
        setup.dst, weekly, setup.source.bucket, setup.listing(), taken_at=time.time() - 86400
    )
    result = setup.sync("by-inventory", margin="0s", prefix=weekly)
    assert result.status == RunStatus.ABORTED
    assert "older than the report applied last" in (result.reason or "")
    assert set(setup.items("by-inventory")) == {"a.jpg", "b.jpg"}


def test_max_delete_and_dry_run_hold_for_reports(setup_for: Callable[[str], Setup]) -> None:
    setup = setup_for("s3")
    fill(setup.src, [f"k{n}.jpg" for n in range(10)])
    setup.deliver(taken_at=time.time() - 7200)
    assert setup.sync("by-inventory", margin="0s").counts.added == 10
    for n in range(6):
        setup.src.delete(f"k{n}.jpg")  # type: ignore[attr-defined]
    # New objects in the same report do not dilute the share deleted: 6 of the 10 live.
    fill(setup.src, [f"new{n}.jpg" for n in range(10)])
    setup.deliver(taken_at=time.time() + 60)
    stopped = setup.sync("by-inventory", margin="0s")
    assert stopped.status == RunStatus.ABORTED and "deleting nothing" in (stopped.reason or "")
    assert "6 " in (stopped.reason or "") and "10" in (stopped.reason or "")
    assert {k for k in setup.items("by-inventory") if k.startswith("k")} == {
        f"k{n}.jpg" for n in range(10)
    }
    project = Project(setup.config(margin="0s"))
    try:
        (planned,) = project.sync("by-inventory", dry_run=True, max_delete="100%").results
    finally:
        project.close()
    assert planned.counts.deleted == 6
    assert {p.key for p in planned.plan if p.op == "deleted"} == {f"k{n}.jpg" for n in range(6)}
    assert len(setup.items("by-inventory")) == 20


def test_the_daemon_reconciles_from_reports_on_its_schedule(
    setup_for: Callable[[str], Setup], daemons: Daemons
) -> None:
    setup = setup_for("s3")
    fill(setup.src, ["a.jpg", "b.jpg"])
    setup.deliver()
    data = setup.data()
    data["drivers"][1]["schedule"] = {"every": "1h"}
    data["datasets"] = [{"name": "by-inventory", "drivers": ["inv"]}]
    config = setup.base / "syncd.yaml"
    config.write_text(yaml.safe_dump(data))
    assert daemons.run_once(config) == 0
    assert set(setup.items("by-inventory")) == {"a.jpg", "b.jpg"}
    catalog = open_catalog(setup.catalog_url)
    try:
        (run,) = catalog.runs("by-inventory")
    finally:
        catalog.close()
    assert run.status == RunStatus.SUCCEEDED and run.counts.added == 2


def test_a_report_of_another_bucket_or_container_is_not_applied(
    setup_for: Callable[[str], Setup],
) -> None:
    s3 = setup_for("s3")
    fill(s3.src, ["a.jpg"])
    s3_inventory(s3.dst, PREFIX["s3"], "some-other-bucket", s3.listing(), taken_at=time.time())
    wrong = s3.sync("by-inventory")
    assert wrong.status == RunStatus.ABORTED
    assert "inventory of bucket 'some-other-bucket'" in (wrong.reason or "")
    assert s3.items("by-inventory") == {}


def test_an_account_wide_azure_rule_gives_only_this_containers_blobs(
    setup_for: Callable[[str], Setup],
) -> None:
    setup = setup_for("azure")
    fill(setup.src, ["a.jpg", "b.jpg"])
    setup.deliver(foreign=["backups/db.dump", "a.jpg"])
    assert setup.sync("by-listing").status == RunStatus.SUCCEEDED
    result = setup.sync("by-inventory")
    assert result.status == RunStatus.SUCCEEDED and result.counts.listed == 2
    assert setup.items("by-inventory") == setup.items("by-listing")


def test_a_postgres_catalog_reached_through_its_search_path(
    setup_for: Callable[[str], Setup],
) -> None:
    import uuid

    import psycopg

    from tests.conftest import PG_URL

    schema = f"inv_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        setup = setup_for("s3")
        setup.catalog_url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        fill(setup.src, ["a.jpg", "b.jpg"])
        setup.deliver()
        result = setup.sync("by-inventory")
        assert result.status == RunStatus.SUCCEEDED and result.counts.added == 2
        assert set(setup.items("by-inventory")) == {"a.jpg", "b.jpg"}
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_keys_a_changed_exclude_leaves_out_are_deleted_as_by_a_listing(
    setup_for: Callable[[str], Setup],
) -> None:
    setup = setup_for("s3")
    fill(setup.src, ["a.jpg", "b.raw", "c.jpg"])
    setup.deliver(taken_at=time.time() - 7200)
    assert setup.sync("by-inventory", margin="0s").counts.added == 3
    setup.deliver(taken_at=time.time() + 60)
    data = setup.data(margin="0s")
    data["drivers"][1]["exclude"] = ["*.raw"]
    project = Project(parse_config(yaml.safe_dump(data), base_dir=setup.base))
    try:
        (result,) = project.sync("by-inventory", max_delete="100%").results
        (again,) = project.sync("by-inventory").results
    finally:
        project.close()
    assert result.status == RunStatus.SUCCEEDED and result.counts.deleted == 1
    assert set(setup.items("by-inventory")) == {"a.jpg", "c.jpg"}
    assert (again.counts.deleted, again.counts.added) == (0, 0)


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_a_sharded_driver_reconciles_each_key_range_from_the_report(
    setup_for: Callable[[str], Setup], kind: str
) -> None:
    setup = setup_for(kind)
    keys = [*NASTY_KEYS, "photos/cat.jpg", "photos/dog.png", "notes.txt"]
    fill(setup.src, keys)
    setup.deliver(taken_at=time.time() - 7200)
    data = setup.data(margin="0s")
    data["drivers"][1]["shards"] = ["a0", "notes.txt", "émoji"]

    def sync_shards(**options: Any) -> list[SyncResult]:
        project = Project(parse_config(yaml.safe_dump(data), base_dir=setup.base))
        try:
            return project.sync("by-inventory", **options).results
        finally:
            project.close()

    listed = setup.sync("by-listing")
    first = sync_shards()
    assert [r.shard.label if r.shard else None for r in first] == ["1/4", "2/4", "3/4", "4/4"]
    assert {r.status for r in first} == {RunStatus.SUCCEEDED}, [r.reason for r in first]
    assert sum(r.counts.added for r in first) == listed.counts.added == len(keys)
    assert setup.items("by-inventory") == setup.items("by-listing")

    # Gone from the third shard only: that shard deletes it; the others change nothing.
    setup.src.delete("photos/cat.jpg")  # type: ignore[attr-defined]
    setup.deliver(taken_at=time.time() + 60)
    second = sync_shards()
    assert [r.counts.deleted for r in second] == [0, 0, 1, 0]
    listed_before = [r.counts.listed for r in first]
    listed_before[2] -= 1
    assert [r.counts.listed for r in second] == listed_before
    assert "photos/cat.jpg" not in setup.items("by-inventory")
    if kind != "s3":
        return
    # Each range keeps its own record of the report applied: an older report is refused by
    # every shard, not only by the one that ran last.
    weekly = "inventory/source/weekly/"
    s3_inventory(
        setup.dst, weekly, setup.source.bucket, setup.listing(), taken_at=time.time() - 86400
    )
    data["drivers"][1]["inventory"]["prefix"] = weekly
    stale = sync_shards()
    assert {r.status for r in stale} == {RunStatus.ABORTED}
    assert all("older than the report applied last" in (r.reason or "") for r in stale)


def test_a_catalog_copy_of_another_history_is_not_used(
    setup_for: Callable[[str], Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than 5 rows changed since the copy rebuild it, as 10,000 would in production.
    monkeypatch.setattr(snapshot, "PATCH_LEAST", 5)
    keys = [f"k{n}.jpg" for n in range(8)]
    setup = setup_for("s3")
    fill(setup.src, keys)
    setup.deliver(taken_at=time.time() - 7200)
    # Ids as events give them in a new catalog: the config's datasets in order.
    assert setup.sync("by-listing").counts.added == 8
    assert setup.sync("by-inventory", margin="0s").counts.added == 8
    # The first merge copied the rows it found (none); this one copies the 8 written since.
    assert setup.sync("by-inventory", margin="0s").counts.unchanged == 8
    catalog = open_catalog(setup.catalog_url)
    folder = snapshot.folder_of(catalog)
    catalog.close()
    assert len(list(folder.glob("*.parquet"))) == 1, "the merge kept a copy of the rows"
    # The catalog is recreated where it was; its ids and change ids start over, and events
    # move its counter past the copy's watermark. The copy says all 8 are there: believed,
    # nothing would be added.
    recreate(setup.catalog_url)
    now = time.time()
    apply_events(
        setup,
        [
            ObjectEvent(EventKind.CREATED, "s3", setup.source.bucket, f"x{n}.jpg", now, f"0{n}", 1)
            for n in range(10)
        ],
    )
    result = setup.sync("by-inventory", margin="0s")
    assert result.status == RunStatus.SUCCEEDED and result.counts.added == 8
    assert set(setup.items("by-inventory")) == set(keys) | {f"x{n}.jpg" for n in range(10)}


def recreate(url: str) -> None:
    """An empty catalog at the same URL."""
    if url.startswith("sqlite:///"):
        for path in Path(url[len("sqlite:///") :]).parent.glob("catalog.db*"):
            if path.is_file():
                path.unlink()
        return
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
