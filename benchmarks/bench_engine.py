"""Engine benchmark: reconcile a generated listing (no provider I/O) into SQLite and PostgreSQL.

For each catalog and size: first ingest (every item added) and a no-op re-sync (nothing
changed, nothing written). Each case runs in its own process so peak RSS is its own.

    .venv/bin/python -m benchmarks.bench_engine                 # 100k and 1M, both catalogs
    .venv/bin/python -m benchmarks.bench_engine --sizes 100000 --catalogs sqlite
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

from benchmarks.catalogs import temporary_catalog_url
from syncd import logs
from syncd.catalog import open_catalog
from syncd.config import Driver
from syncd.reconcile import reconcile
from syncd.storage.types import ObjectInfo


class GeneratedStore:
    """A listing of `count` objects in key order, made on the fly."""

    name = "generated"
    sorted_listing = True

    def __init__(self, count: int) -> None:
        self.count = count

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        for n in range(self.count):
            yield ObjectInfo(
                key=f"images/{n // 1000:04d}/frame_{n:08d}.jpg",
                size=100_000 + n,
                mtime=1_700_000_000.0 + n,
                etag=f"{n:032x}",
            )


def run_case(url: str, count: int) -> dict[str, float]:
    """Two syncs in this process: first ingest, then no-op; returns timings and peak RSS."""
    logs.configure("warning")
    catalog = open_catalog(url)
    driver = Driver(name="gen", integration="x", bucket="bench")
    out: dict[str, float] = {}
    for phase in ("first", "noop"):
        started = time.perf_counter()
        result = reconcile(
            catalog, GeneratedStore(count), dataset="bench", driver=driver, provider="memory"
        )
        elapsed = time.perf_counter() - started
        expected = count if phase == "first" else 0
        assert result.counts.added == expected, result.counts
        out[f"{phase}_s"] = elapsed
    started = time.perf_counter()
    for _ in GeneratedStore(count).list():
        pass
    out["listing_s"] = time.perf_counter() - started
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    catalog.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--catalogs", default="sqlite,postgres")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        url, count = args.case.rsplit("|", 1)
        print(json.dumps(run_case(url, int(count))))
        return

    rows = []
    for kind in args.catalogs.split(","):
        for count in (int(s) for s in args.sizes.split(",")):
            with temporary_catalog_url(kind) as url:
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_engine", "--case", f"{url}|{count}"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((kind, count, figures))
    # "engine" excludes the time the generated listing itself takes to produce its records,
    # which a real store replaces with its own (larger) listing cost.
    print(
        f"{'catalog':<9} {'items':>9} {'first ingest':>13} {'items/s':>9} {'no-op':>7} "
        f"{'items/s':>9} {'listing':>8} {'no-op engine/s':>15} {'peak RSS':>9}"
    )
    for kind, count, f in rows:
        print(
            f"{kind:<9} {count:>9,} {f['first_s']:>12.2f}s {count / f['first_s']:>9,.0f} "
            f"{f['noop_s']:>6.2f}s {count / f['noop_s']:>9,.0f} {f['listing_s']:>7.2f}s "
            f"{count / (f['noop_s'] - f['listing_s']):>15,.0f} {f['rss_mb']:>7.0f}MB"
        )


if __name__ == "__main__":
    main()
