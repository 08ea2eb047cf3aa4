"""Engine benchmark: reconcile a generated listing (no provider I/O) into SQLite and PostgreSQL.

For each catalog and size: first ingest (every item added) and a no-op re-sync (nothing
changed, nothing written). Each case runs in its own process so peak RSS is its own.

For SQLite the same run also measures the floor syncd sits on: the same rows written straight
through `sqlite3` (each item is two rows, the item and its change-feed entry, in 5,000-item
transactions), and an ordered scan of them read back in Python. Figures on a shared machine
drift by tens of percent between runs; the ratios to these floors are what to compare.

    .venv/bin/python -m benchmarks.bench_engine                 # 100k and 1M, both catalogs
    .venv/bin/python -m benchmarks.bench_engine --sizes 100000 --catalogs sqlite
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Iterator

from benchmarks.cases import in_own_process
from benchmarks.catalogs import temporary_catalog_url
from syncd import logs
from syncd.catalog import open_catalog
from syncd.catalog.sqlite import SqliteCatalog
from syncd.config import Driver
from syncd.reconcile import reconcile
from syncd.storage.types import ObjectInfo


class GeneratedStore:
    """A listing of `count` objects in key order, made on the fly."""

    name = "generated"
    sorted_listing = True
    skipped_by_store: tuple[str, ...] = ()

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


def sqlite_floor(path: str, count: int) -> dict[str, float]:
    """Rows of the generated listing written and scanned through bare `sqlite3` calls."""
    catalog = SqliteCatalog(path)
    conn = catalog._conn
    items = (
        "INSERT INTO items (dataset_id, driver_id, key, size, mtime, etag, version, "
        "content_type, media_kind, order_token, observed_at, deleted, change_id) "
        "VALUES (1, 1, ?, ?, ?, ?, NULL, NULL, 'image', NULL, ?, 0, ?)"
    )
    changes = (
        "INSERT INTO changes (id, dataset_id, driver_id, key, op, size, etag, version, at, "
        "run_id) VALUES (?, 1, 1, ?, 'added', ?, ?, NULL, 0, 1)"
    )
    listing = GeneratedStore(count).list()
    started = time.perf_counter()
    change_id = 0
    while True:
        batch = [
            (o.key, o.size, o.mtime, o.etag, o.mtime, change_id + n + 1)
            for n, o in zip(range(5_000), listing, strict=False)
        ]
        if not batch:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(items, batch)
        conn.executemany(changes, [(r[5], r[0], r[1], r[3]) for r in batch])
        conn.execute("COMMIT")
        change_id += len(batch)
    out = {"floor_write_s": time.perf_counter() - started}
    started = time.perf_counter()
    for _ in catalog.scan(1, 1):
        pass
    out["floor_scan_s"] = time.perf_counter() - started
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
        if url.startswith("floor:"):
            print(json.dumps(sqlite_floor(url.removeprefix("floor:"), int(count))))
        else:
            print(json.dumps(run_case(url, int(count))))
        return

    rows = []
    for kind in args.catalogs.split(","):
        for count in (int(s) for s in args.sizes.split(",")):
            with temporary_catalog_url(kind) as url:
                figures = in_own_process("benchmarks.bench_engine", f"{url}|{count}")
            if kind == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    figures.update(
                        in_own_process("benchmarks.bench_engine", f"floor:{tmp}/floor.db|{count}")
                    )
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
    floors = [(count, f) for kind, count, f in rows if "floor_write_s" in f]
    if floors:
        print()
        print("the same rows through bare sqlite3 (listing generation included), same run")
        print(
            f"{'items':>9} {'write items/s':>14} {'syncd speed / floor':>20} "
            f"{'scan rows/s':>12} {'syncd speed / scan':>19}"
        )
        for count, f in floors:
            print(
                f"{count:>9,} {count / f['floor_write_s']:>14,.0f} "
                f"{f['floor_write_s'] / f['first_s']:>19.2f}x "
                f"{count / f['floor_scan_s']:>12,.0f} {f['floor_scan_s'] / f['noop_s']:>18.2f}x"
            )


if __name__ == "__main__":
    main()
