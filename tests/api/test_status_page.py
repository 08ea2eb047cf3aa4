"""The status page: its summary (from the catalog and the daemon's state), every value
escaped, and the page itself as headless Chromium renders it from a real `syncd run`."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from syncd.api.status_page import render_page
from syncd.catalog import Catalog, open_catalog
from syncd.catalog.types import RunStatus
from syncd.daemon.consumer import ConsumerStats
from syncd.daemon.leases import LeaseStats
from syncd.daemon.runner import DaemonState, PairState
from syncd.daemon.schedule import Cron, Every
from syncd.shards import shards_of
from syncd.status import percentile, status_summary
from tests.api.conftest import Api
from tests.daemon.conftest import wait_until

HTML_KEY = "<b>x</b>.jpg"
EVIL = "<script>alert(1)</script>"


class Page(HTMLParser):
    """The text of a page, and its tables by the heading above them (`h2` text, up to a
    parenthesis): a list of rows, each a list of cell texts."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.elements: list[str] = []
        self._heading: str | None = None
        self._in_heading = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(tag)
        if tag == "h2":
            self._in_heading = True
            self._heading = ""
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_heading = False
            assert self._heading is not None
            self._heading = self._heading.split("(")[0].strip()
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables.setdefault(self._heading or "", []).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_heading:
            self._heading = (self._heading or "") + data
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, heading: str) -> list[dict[str, str]]:
        """The table under `heading`, each row keyed by the header cells."""
        head, *body = self.tables[heading]
        return [dict(zip(head, row, strict=True)) for row in body]


# -- the summary and its HTML, without a daemon process ----------------------------------


def daemon_state(replica: str = "replica-a") -> DaemonState:
    state = DaemonState(replica, started_at=time.time() - 3725)
    state.pairs["pets/photos"] = PairState(
        "pets", "photos", Every(60.0, 0.1), next_due=time.time() + 30
    )
    state.pairs["fresh/scans"] = PairState(
        "fresh", "scans", Cron.parse("*/5 * * * *"), running=True, next_due=time.time() + 60
    )
    state.sources["photos"] = ConsumerStats(
        batches=4,
        applied=90,
        dead_lettered=2,
        errors=1,
        failing=True,
        last_error="queue https://user:hunter2@example.com/q refused",
        latencies=[n / 100 for n in range(100, 0, -1)],
    )
    return state


def test_the_summary_joins_the_catalog_and_the_daemons_state(catalog: Catalog) -> None:
    dataset_id = catalog.dataset_id("pets")
    driver_id = catalog.driver_id("photos", "local", "/data", "")
    first = catalog.begin_run(dataset_id, driver_id, watermark=0)
    catalog.finish_run(first, RunStatus.FAILED, None, (), "boom")
    catalog.claim_lease("sync:pets/photos", "replica-a", 60)
    catalog.claim_lease("sync:other/x", "replica-b", 60)
    with catalog.transaction() as tx:
        tx.dead_letter("sqs:raw", f"cannot parse {HTML_KEY}", '{"payload": "secret"}')

    summary = status_summary(catalog, daemon_state(), LeaseStats(held=1, renewals=3))
    daemon = summary["daemon"]
    assert daemon["replica"] == "replica-a" and 3700 < daemon["uptime_seconds"] < 3800
    (source,) = daemon["sources"]
    assert (source["batches"], source["applied"], source["dead_lettered"]) == (4, 90, 2)
    assert (source["lag_p50_seconds"], source["lag_p99_seconds"]) == (0.5, 0.99)
    assert "hunter2" not in source["last_error"] and source["failing"] is True
    assert daemon["leases"]["held"] == 1 and daemon["leases"]["renewals"] == 3

    pets, fresh = summary["datasets"]
    (photos,) = pets["drivers"]
    assert photos["last_run"]["status"] == "failed" and photos["failing"]
    assert photos["schedule"] == "every 1m" and photos["next_due"] is not None
    # Configured but never run: shown, empty.
    assert fresh["name"] == "fresh" and fresh["items"] == 0
    assert fresh["drivers"][0]["schedule"] == "cron */5 * * * *"
    assert fresh["drivers"][0]["running"] is True and fresh["drivers"][0]["last_run"] is None
    assert [f["reason"] for f in summary["failing"]] == ["boom"]
    assert summary["dead_letters"]["count"] == 1
    assert "secret" not in str(summary["dead_letters"])
    mine = {lease["name"]: lease["mine"] for lease in summary["leases"]}
    assert mine == {"sync:other/x": False, "sync:pets/photos": True}

    page = Page(render_page(summary))
    (source_row,) = page.rows("Event sources")
    assert source_row["lag p99"] == "990 ms" and source_row["source"] == "photos failing"
    assert page.rows("Drivers")[0]["last run"] == "failed"
    assert {r["owner"] for r in page.rows("Leases")} == {"replica-a (this replica)", "replica-b"}


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([2.0], 0.99) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0


def _poison(value: Any) -> Any:
    """Every string of a summary with markup appended."""
    if isinstance(value, str):
        return value + EVIL
    if isinstance(value, dict):
        return {k: _poison(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v) for v in value]
    return value


def test_every_value_on_the_page_is_escaped(catalog: Catalog) -> None:
    dataset_id = catalog.dataset_id("pets")
    driver_id = catalog.driver_id("photos", "local", "/data", "")
    run = catalog.begin_run(dataset_id, driver_id, watermark=0)
    catalog.finish_run(run, RunStatus.ABORTED, None, ("e",), "r")
    catalog.claim_lease("sync:pets/photos", "replica-a", 60)
    with catalog.transaction() as tx:
        tx.dead_letter("sqs:raw", "why", "{}")
    summary = _poison(status_summary(catalog, daemon_state(), LeaseStats(held=1)))
    markup = render_page(summary)
    assert "<script" not in markup
    page = Page(markup)
    assert "script" not in page.elements
    assert markup.count("&lt;script&gt;") >= 20
    # The text a person reads still says it.
    assert EVIL in "".join(page.text)


# -- the page from a real daemon, in headless Chromium ------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed: the status page test renders the page with Debian's "
            "chromium (`apt-get install chromium`, or run scripts/setup)"
        )
    return found


def browse(url: str, profile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            *options,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """(width, height, decompressed scanlines) of a PNG; fails if it is not one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))


def test_the_page_in_headless_chromium(start_api: Callable[..., Api], tmp_path: Path) -> None:
    browser = chromium()  # fail first, before starting a daemon, when it is missing
    missing = tmp_path / "<i>missing</i>"

    def add_failing_driver(config: dict[str, Any]) -> None:
        config["drivers"].append(
            {
                "name": "gone",
                "integration": "disk",
                "bucket": str(missing),
                "schedule": {"every": "2s"},
            }
        )
        config["datasets"][0]["drivers"].append("gone")

    api = start_api(
        files={HTML_KEY: b"abc", "a.jpg": b"aaaa", "b.jpg": b"bbbbb"}, edit=add_failing_driver
    )

    def both_ran() -> bool:
        runs = api.get("/v1/runs?dataset=images").json()["runs"]
        return {r["driver"] for r in runs if r["status"] != "running"} == {"photos", "gone"}

    wait_until(both_ran, 30, "a run of each driver")
    catalog = open_catalog(api.catalog)
    try:
        with catalog.transaction() as tx:
            tx.dead_letter("sqs:raw", f"cannot parse {HTML_KEY}", '{"payload": "not shown"}')
    finally:
        catalog.close()

    answer = api.get("/")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<meta http-equiv="refresh" content="5">' in answer.body

    shot = tmp_path / "status.png"
    done = browse(api.url + "/", tmp_path / "profile", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.exists(), f"{browser}: {done.stderr[-2000:]}"
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1280, 900)
    assert shot.stat().st_size > 10_000, "the screenshot is nearly empty"
    assert len(set(pixels)) > 32, "the screenshot is one flat colour"

    done = browse(api.url + "/", tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    page = Page(dom)
    text = "".join(page.text)
    assert "syncd status" in text
    (dataset,) = page.rows("Datasets")
    assert (dataset["dataset"], dataset["items"], dataset["size"]) == ("images", "3", "12 B")
    drivers = {row["driver"]: row for row in page.rows("Drivers")}
    # A new run may be under way at the moment of the snapshot (every 2 s).
    assert "succeeded" in drivers["photos"]["last run"]
    assert drivers["photos"]["counts"].startswith("listed 3 ")
    assert "aborted" in drivers["gone"]["last run"]
    assert "every 2s" in drivers["photos"]["next run"]
    # User data is text, never markup: the key with HTML in it, in a reason and a dead letter.
    assert "<i>missing</i>" in drivers["gone"]["reason"]
    assert "<i>missing</i>" in page.rows("Recent failures")[0]["reason"]
    (letter,) = page.rows("Dead letters")
    assert (letter["source"], letter["reason"]) == ("sqs:raw", f"cannot parse {HTML_KEY}")
    assert "not shown" not in dom
    assert "&lt;b&gt;x&lt;/b&gt;.jpg" in dom and HTML_KEY not in dom
    assert "&lt;i&gt;missing&lt;/i&gt;" in dom and "<i>missing</i>" not in dom
    assert "b" not in page.elements and "i" not in page.elements
    assert "replica" in text and "up " in text


def test_the_page_needs_a_read_token(start_api: Callable[..., Api]) -> None:
    api = start_api(
        env={"READ_TOKEN": "r-secret"},
        api={"tokens": [{"name": "reader", "token": "env:READ_TOKEN", "scopes": ["read"]}]},
    )
    assert api.get("/").status == 401
    answer = api.get("/", token="r-secret")
    assert answer.status == 200 and b"images" in answer.body


def test_a_sharded_driver_is_failing_while_any_shard_is(catalog: Catalog) -> None:
    one, two = shards_of(["m"])
    dataset_id = catalog.dataset_id("pets")
    driver_id = catalog.driver_id("photos", "local", "/data", "")
    failed = catalog.begin_run(dataset_id, driver_id, watermark=0, shard=two)
    catalog.finish_run(failed, RunStatus.ABORTED, None, (), "too many deletes in m..")
    # The other shard's later success does not hide it.
    fine = catalog.begin_run(dataset_id, driver_id, watermark=0, shard=one)
    catalog.finish_run(fine, RunStatus.SUCCEEDED, None)
    (pets,) = status_summary(catalog, None, None)["datasets"]
    (photos,) = pets["drivers"]
    assert photos["failing"] and photos["last_finished"]["shard"]["index"] == 2
    assert photos["last_run"]["id"] == fine
    # Once that shard succeeds again, the driver is well.
    again = catalog.begin_run(dataset_id, driver_id, watermark=0, shard=two)
    catalog.finish_run(again, RunStatus.SUCCEEDED, None)
    (pets,) = status_summary(catalog, None, None)["datasets"]
    assert not pets["drivers"][0]["failing"]
