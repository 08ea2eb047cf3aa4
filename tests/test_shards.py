"""Key-range shards: a sharded driver reconciles to what the whole driver would, each shard
its own run with its own delete budget, on real catalogs, folders and moto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.catalog import Catalog, RunConflict, RunStatus, open_catalog
from syncd.config import parse_config
from syncd.errors import ConfigError
from syncd.project import Project
from syncd.reconcile import reconcile
from syncd.shards import shards_of
from syncd.sync import SyncReport
from tests.conftest import NASTY_KEYS
from tests.peers import Peer
from tests.storage.conftest import s3_bucket
from tests.storage.throttle_proxy import throttling_proxy

#: Boundaries that fall between, and exactly on, nasty keys: "a0" starts shard 3 itself.
BOUNDARIES = ["A", "a0", "deep/", "with space.jpg"]
KEYS = [*NASTY_KEYS, "0.jpg", "a00.jpg", "Z.png", "z.png"]


def config_for(folder: Path, catalog_url: str, **driver: Any) -> dict[str, Any]:
    return {
        "catalog": catalog_url,
        "integrations": [{"name": "disk", "provider": "local"}],
        "drivers": [
            {"name": "whole", "integration": "disk", "bucket": str(folder)},
            {"name": "parts", "integration": "disk", "bucket": str(folder), **driver},
        ],
        "datasets": [
            {"name": "whole", "drivers": ["whole"]},
            {"name": "parts", "drivers": ["parts"]},
        ],
    }


def fill(folder: Path, keys: list[str]) -> None:
    for key in keys:
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


def run(folder: Path, catalog_url: str, dataset: str, **driver: Any) -> SyncReport:
    config = parse_config(yaml.safe_dump(config_for(folder, catalog_url, **driver)))
    project = Project(config)
    try:
        return project.sync(dataset)
    finally:
        project.close()


def items(catalog_url: str, dataset: str) -> dict[str, tuple[int, str | None]]:
    catalog = open_catalog(catalog_url)
    try:
        return {i.key: (i.size, i.etag) for i in catalog.items(dataset)}
    finally:
        catalog.close()


def test_every_key_falls_in_exactly_one_shard_in_byte_order() -> None:
    shards = shards_of(BOUNDARIES)
    assert [s.label for s in shards] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    for key in KEYS:
        (owner,) = [s for s in shards if s.covers(key)]
        # UTF-8 byte order: the owner's start is the greatest boundary at or below the key.
        encoded = key.encode()
        below = [b for b in ["", *BOUNDARIES] if b.encode() <= encoded]
        assert owner.start == below[-1], key
        # A listing of the shard may begin after `list_after`: no key of it sorts before.
        assert owner.list_after is None or key > owner.list_after
    assert shards_of([]) == []
    (_, after_surrogates) = shards_of(["\ue000"])
    assert after_surrogates.list_after == "\ud7ff"


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        (["b", "a"], "shards[1] 'a' does not sort after 'b'"),
        (["a", "a"], "shards[1] 'a' does not sort after 'a'"),
        (["", "a"], "shards[0] is empty"),
    ],
)
def test_boundaries_out_of_order_are_a_config_error(
    tmp_path: Path, shards: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(config_for(tmp_path, "sqlite:///x.db", shards=shards)))
    assert message in str(caught.value) and "drivers[1].shards" in str(caught.value)


def test_a_sharded_driver_gives_the_items_of_the_whole_one(
    tmp_path: Path, catalog_url: str
) -> None:
    folder = tmp_path / "data"
    fill(folder, KEYS)
    whole = run(folder, catalog_url, "whole")
    parts = run(folder, catalog_url, "parts", shards=BOUNDARIES)
    assert [r.shard.label if r.shard else None for r in parts.results] == [
        "1/5",
        "2/5",
        "3/5",
        "4/5",
        "5/5",
    ]
    assert {r.status for r in parts.results} == {RunStatus.SUCCEEDED}
    assert sum(r.counts.added for r in parts.results) == whole.results[0].counts.added
    assert items(catalog_url, "parts") == items(catalog_url, "whole")
    assert len(items(catalog_url, "parts")) == len(KEYS)

    # Each shard's run is in the history with its range.
    catalog = open_catalog(catalog_url)
    try:
        runs = catalog.runs("parts")
    finally:
        catalog.close()
    ranges = sorted((r.shard.start, r.shard.end) for r in runs if r.shard is not None)
    assert ranges == [
        ("", "A"),
        ("A", "a0"),
        ("a0", "deep/"),
        ("deep/", "with space.jpg"),
        ("with space.jpg", None),
    ]

    again = run(folder, catalog_url, "parts", shards=BOUNDARIES)
    assert sum(r.counts.unchanged for r in again.results) == len(KEYS)
    assert sum(r.counts.added + r.counts.updated + r.counts.deleted for r in again.results) == 0


def test_each_shard_deletes_only_its_keys_within_its_own_max_delete(
    tmp_path: Path, catalog_url: str
) -> None:
    folder = tmp_path / "data"
    low = [f"a/{n:02d}.jpg" for n in range(10)]
    high = [f"m/{n:02d}.jpg" for n in range(10)]
    fill(folder, low + high)
    sharded = {"shards": ["m"], "max_delete": "50%"}
    assert {r.status for r in run(folder, catalog_url, "parts", **sharded).results} == {
        RunStatus.SUCCEEDED
    }
    # 8 of the first shard's 10 go (80%: over its limit); 2 of the second's (20%).
    for key in low[:8] + high[:2]:
        (folder / key).unlink()
    first, second = run(folder, catalog_url, "parts", **sharded).results
    assert first.status is RunStatus.ABORTED and "deleting nothing" in (first.reason or "")
    assert second.status is RunStatus.SUCCEEDED and second.counts.deleted == 2
    assert set(items(catalog_url, "parts")) == set(low) | set(high[2:])
    # Whole, the same deletes are 10 of 20: within the limit.
    whole = run(folder, catalog_url, "parts", max_delete="50%")
    assert whole.results[0].shard is None and whole.results[0].counts.deleted == 8


def test_runs_of_disjoint_shards_proceed_and_overlapping_ones_conflict(catalog: Catalog) -> None:
    one, two = shards_of(["m"])
    dataset_id = catalog.dataset_id("ds")
    driver_id = catalog.driver_id("d", "local", "b", "")
    first = catalog.begin_run(dataset_id, driver_id, watermark=0, shard=one)
    catalog.begin_run(dataset_id, driver_id, watermark=0, shard=two)
    with pytest.raises(RunConflict, match=f"sync run {first} "):
        catalog.begin_run(dataset_id, driver_id, watermark=0, shard=one)
    with pytest.raises(RunConflict):
        catalog.begin_run(dataset_id, driver_id, watermark=0)
    # Boundaries moved while a run was live: an overlapping range waits for it, even under
    # a lease (the lease is the old range's).
    (moved, _) = shards_of(["t"])
    with pytest.raises(RunConflict):
        catalog.begin_run(dataset_id, driver_id, watermark=0, shard=moved, takeover=True)
    # The same range under its lease takes the run over.
    catalog.begin_run(dataset_id, driver_id, watermark=0, shard=one, takeover=True)
    (taken,) = [r for r in catalog.runs("ds") if r.id == first]
    assert taken.status is RunStatus.INTERRUPTED


def test_a_shard_of_an_s3_driver_lists_from_its_start(tmp_path: Path, moto: Peer) -> None:
    bucket = s3_bucket(moto, tmp_path)
    store = bucket.open()
    keys = [f"{c}/{n}.jpg" for c in "abcdef" for n in range(3)]
    for key in keys:
        store.put(key, key.encode())  # type: ignore[attr-defined]
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        _, middle, _ = shards_of(["c", "e"])
        driver = bucket.driver(shards=("c", "e"))
        with throttling_proxy(moto.url, every=0) as (url, seen):
            through = bucket.open(endpoint_url=url)
            result = reconcile(
                catalog, through, dataset="ds", driver=driver, provider="s3", shard=middle
            )
        assert result.status is RunStatus.SUCCEEDED and result.counts.added == 6
        assert sorted(i.key for i in catalog.items("ds")) == [k for k in keys if k[0] in "cd"]
    finally:
        catalog.close()
    listings = [p for _, p in seen.requests if "list-type=2" in p]
    assert listings and all("start-after=" in p for p in listings), listings


def test_sync_shard_runs_one_shard_and_names_bad_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    fill(folder, ["a.jpg", "n.jpg", "z.jpg"])
    config = tmp_path / "syncd.yaml"
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    config.write_text(yaml.safe_dump(config_for(folder, url, shards=["m", "y"])))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(config), "sync", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("--driver", "parts", "--shard", "2", "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["shard"] == {"index": 2, "of": 3, "from": "m", "to": "y"}
    assert set(items(url, "parts")) == {"n.jpg"}

    table = cli("--driver", "parts")
    assert table.returncode == 0 and "parts [shard 3/3]" in table.stdout
    assert set(items(url, "parts")) == {"a.jpg", "n.jpg", "z.jpg"}

    too_big = cli("--driver", "parts", "--shard", "4")
    assert too_big.returncode == 2
    assert "driver parts has 3 shards: --shard takes 1 to 3" in too_big.stderr
    unsharded = cli("--driver", "whole", "--shard", "1")
    assert unsharded.returncode == 2 and "driver whole has no shards" in unsharded.stderr
    alone = cli("--shard", "1")
    assert alone.returncode == 2 and "--shard needs --driver" in alone.stderr
