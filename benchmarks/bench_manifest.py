"""Manifest benchmark: N catalog items to Encord JSON and Encord CSV (items/s, peak RSS, each
case in its own process), and the cost of probing a DICOM header by ranged reads.

    .venv/bin/python -m benchmarks.bench_manifest                 # 100k and 1M items
    .venv/bin/python -m benchmarks.bench_manifest --items 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.cases import in_own_process
from syncd import logs
from syncd.catalog import ItemState, ItemWrite, Op, open_catalog
from syncd.config import parse_config
from syncd.manifest.build import build_manifest

CONFIG = """\
catalog: sqlite:///catalog.db
integrations: [{name: aws, provider: s3, region: eu-west-1}]
drivers: [{name: raw, integration: aws, bucket: labeling-data}]
datasets: [{name: bench, drivers: [raw]}]
manifest:
  image_sequences: ["drives/*"]
  url_template: "https://{bucket}.s3.{region}.amazonaws.com/{key}"
"""


def fill(folder: Path, count: int) -> None:
    catalog = open_catalog(f"sqlite:///{folder / 'catalog.db'}")
    ds, dr = catalog.dataset_id("bench"), catalog.driver_id("raw", "s3", "labeling-data", "")
    batch: list[ItemWrite] = []
    for n in range(count):
        # One item in ten is a frame of a 100-frame drive (an image sequence).
        key = (
            f"drives/{n // 1000:05d}/frame{(n // 10) % 100}.jpg"
            if n % 10 == 0
            else f"images/{n // 1000:05d}/img {n:08d}.jpg"
        )
        batch.append(
            ItemWrite(
                Op.ADDED,
                ItemState(
                    key, 100_000 + n, 1.7e9, f"{n:032x}", None, "image/jpeg", "image", None, 1.7e9
                ),
            )
        )
        if len(batch) == 10_000:
            with catalog.transaction() as tx:
                tx.write(ds, dr, batch)
            batch = []
    if batch:
        with catalog.transaction() as tx:
            tx.write(ds, dr, batch)
    catalog.close()


def run_case(folder: Path, fmt: str) -> dict[str, float]:
    logs.configure("warning")
    config = parse_config(CONFIG, "bench.yaml", base_dir=folder)
    catalog = open_catalog(config.catalog_url())
    started = time.perf_counter()
    summary = build_manifest(catalog, config, "bench", fmt, str(folder / f"out.{fmt}"))
    elapsed = time.perf_counter() - started
    items = sum(1 for _ in catalog.items("bench"))
    return {
        "seconds": elapsed,
        "items": items,
        "entries": sum(summary["entries"].values()),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes": (folder / f"out.{fmt}").stat().st_size,
    }


def probe_cost(files: int = 20) -> tuple[float, float, int]:
    """Mean ms and bytes to read one DICOM header; and the file size."""
    from syncd.manifest.dicom import read_header
    from syncd.storage.local import LocalStore
    from tests.manifest.conftest import dicom_file

    with tempfile.TemporaryDirectory() as tmp:
        for n in range(files):
            (Path(tmp) / f"{n}.dcm").write_bytes(dicom_file("1.2.3", n, "Bench", pixels=2_000_000))
        store = LocalStore(tmp)
        started = time.perf_counter()
        read = sum(read_header(store, f"{n}.dcm").bytes_read for n in range(files))
        elapsed = time.perf_counter() - started
        size = (Path(tmp) / "0.dcm").stat().st_size
    return elapsed / files * 1000, read / files, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", default="100000,1000000")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        folder, fmt = args.case.split("|")
        print(json.dumps(run_case(Path(folder), fmt)))
        return
    print(
        f"{'items':>9} {'format':<11} {'seconds':>8} {'items/s':>9} {'entries':>8} "
        f"{'output':>9} {'peak RSS':>9}"
    )
    for count in (int(n) for n in args.items.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            fill(Path(tmp), count)
            for fmt in ("encord-json", "encord-csv"):
                f = in_own_process("benchmarks.bench_manifest", f"{tmp}|{fmt}")
                print(
                    f"{count:>9,} {fmt:<11} {f['seconds']:>8.2f} {count / f['seconds']:>9,.0f} "
                    f"{f['entries']:>8,.0f} {f['bytes'] / 1e6:>7.0f}MB {f['rss_mb']:>7.0f}MB"
                )
    ms, read, size = probe_cost()
    print(
        f"\nDICOM header probe: {ms:.2f} ms and {read:,.0f} bytes per file "
        f"(files of {size:,} bytes: {read / size:.2%} read)"
    )


if __name__ == "__main__":
    main()
