"""Inventory benchmark: a generated N-row Parquet report in S3 Inventory's layout (manifest,
checksum, data file) against an N-item catalog, on SQLite and PostgreSQL: first ingest, a
no-op and a 1% change, rows/s and peak RSS of each (every case in its own process); the
listing reconcile of the same objects beside it.

    .venv/bin/python -m benchmarks.bench_inventory
    .venv/bin/python -m benchmarks.bench_inventory --items 1000000 --catalogs sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.catalogs import temporary_catalog_url

KEY = (
    "'images/' || lpad((n // 1000)::VARCHAR, 4, '0') || '/frame_' || lpad(n::VARCHAR, 8, '0') "
    "|| '.jpg'"
)


def write_report(folder: Path, items: int, version: int, taken_at: float) -> None:
    """S3 Inventory's layout under folder/inv/: version 2 changes every 100th object."""
    import duckdb

    run = folder / "inv" / time.strftime("%Y-%m-%dT%H-%MZ", time.gmtime(taken_at))
    run.mkdir(parents=True, exist_ok=True)
    data = folder / "inv" / "data" / f"report-{version}.parquet"
    data.parent.mkdir(exist_ok=True)
    etag = "lower(lpad(hex(n), 32, '0'))"
    if version == 2:
        etag = f"CASE WHEN n % 100 = 0 THEN 'changed' || n ELSE {etag} END"
    duckdb.sql(
        f"COPY (SELECT 'bench' AS bucket, {KEY} AS key, 100000 + n AS size, "
        "make_timestamp(((1700000000 + n) * 1000000)::BIGINT) AS last_modified_date, "
        f"{etag} AS e_tag, 'STANDARD' AS storage_class FROM range({items}) t(n)) "
        f"TO '{data}' (FORMAT parquet, COMPRESSION snappy)"
    )
    digest = hashlib.md5()
    with open(data, "rb") as handle:
        while chunk := handle.read(2**24):
            digest.update(chunk)
    manifest = {
        "sourceBucket": "bench",
        "destinationBucket": "arn:aws:s3:::inventory",
        "version": "2016-11-30",
        "creationTimestamp": str(int(taken_at * 1000)),
        "fileFormat": "Parquet",
        "fileSchema": "message s3.inventory { ... }",
        "files": [
            {
                "key": f"inv/data/{data.name}",
                "size": data.stat().st_size,
                "MD5checksum": digest.hexdigest(),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    (run / "manifest.json").write_bytes(body)
    (run / "manifest.checksum").write_text(hashlib.md5(body).hexdigest() + "\n")


def child(args: argparse.Namespace) -> None:
    """One case in this process; prints its figures as JSON."""
    from benchmarks.bench_engine import GeneratedStore
    from syncd import logs
    from syncd.catalog import open_catalog
    from syncd.config import parse_config
    from syncd.inventory.reconcile import reconcile_inventory
    from syncd.reconcile import reconcile
    from syncd.storage.local import LocalStore

    logs.configure("warning")
    folder = Path(args.folder)
    config = parse_config(
        f"""
integrations:
  - {{name: aws, provider: s3, region: us-east-1}}
drivers:
  - {{name: gen, integration: aws, bucket: bench, max_delete: 100%, listing: inventory,
      inventory: {{bucket: inventory, prefix: inv/, margin: 0s, memory_limit: {args.memory},
                   catalog_copy: {"false" if args.in_place else "true"}}}}}
datasets:
  - {{name: bench, drivers: [gen]}}
""",
        base_dir=folder,
    )
    driver = config.driver("gen")
    catalog = open_catalog(args.catalog)
    started = time.perf_counter()
    if args.path == "inventory":
        reports = LocalStore(folder, name="inventory")
        result = reconcile_inventory(
            catalog, config, dataset="bench", driver=driver, provider="s3", reports=reports
        )
    else:
        result = reconcile(
            catalog,
            GeneratedStore(args.items),
            dataset="bench",
            driver=driver.model_copy(update={"listing": "list"}),
            provider="s3",
        )
    seconds = time.perf_counter() - started
    catalog.close()
    assert result.status == "succeeded", result.reason
    print(
        json.dumps(
            {
                "seconds": seconds,
                "counts": result.counts.as_dict(),
                "rss_mb": peak_rss_mb(),
            }
        )
    )


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(
    path: str, url: str, folder: Path, items: int, memory: str, *, in_place: bool = False
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.bench_inventory", "--child", path]
    argv += ["--catalog", url, "--folder", str(folder), "--items", str(items), "--memory", memory]
    if in_place:
        argv.append("--in-place")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{path} case failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--catalogs", default="sqlite,postgres")
    parser.add_argument("--memory", default="512MB", help="DuckDB's memory_limit")
    parser.add_argument("--paths", default="inventory,listing")
    parser.add_argument("--child", choices=("inventory", "listing"))
    parser.add_argument("--catalog")
    parser.add_argument("--in-place", action="store_true", help="catalog_copy: false")
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        args.path = args.child
        child(args)
        return
    rows: list[tuple[str, str, str, float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-inventory-") as tmp:
        for kind in args.catalogs.split(","):
            folder = Path(tmp) / kind
            made = time.perf_counter()
            write_report(folder, args.items, 1, time.time() + 5)
            print(f"report of {args.items:,} rows written in {time.perf_counter() - made:.1f}s")
            with temporary_catalog_url(kind) as url:
                # The first no-op copies the catalog's rows (the ingest's writes are the
                # change feed since the copy it began with); the next reads the copy.
                for case in ("first ingest", "no-op, copying", "no-op"):
                    got = run("inventory", url, folder, args.items, args.memory)
                    rows.append(
                        (kind, "inventory", case, got["seconds"], args.items, got["rss_mb"])
                    )
                got = run("inventory", url, folder, args.items, args.memory, in_place=True)
                rows.append(
                    (
                        kind,
                        "inventory",
                        "no-op, in place",
                        got["seconds"],
                        args.items,
                        got["rss_mb"],
                    )
                )
                # Taken after the catalog's writes (a delivery in the same minute replaces
                # the folder's manifest, as S3 does).
                write_report(folder, args.items, 2, time.time() + 5)
                got = run("inventory", url, folder, args.items, args.memory)
                assert got["counts"]["updated"] == args.items // 100, got
                rows.append(
                    (kind, "inventory", "1% change", got["seconds"], args.items, got["rss_mb"])
                )
            if "listing" not in args.paths:
                continue
            with temporary_catalog_url(kind) as url:
                for case in ("first ingest", "no-op"):
                    got = run("listing", url, folder, args.items, args.memory)
                    rows.append((kind, "listing", case, got["seconds"], args.items, got["rss_mb"]))
    print(f"\nInventory reconcile, {args.items:,} objects, DuckDB memory_limit {args.memory}\n")
    print(
        f"{'catalog':9} {'path':10} {'case':15} {'seconds':>8} {'rows/s':>11} {'peak RSS MB':>12}"
    )
    for kind, path, case, seconds, items, rss in rows:
        print(f"{kind:9} {path:10} {case:15} {seconds:8.1f} {items / seconds:11,.0f} {rss:12.0f}")


if __name__ == "__main__":
    main()
