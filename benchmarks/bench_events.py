"""Event benchmark: events applied per second on SQLite and PostgreSQL for batches of 10, 100
and 1000 messages; and each serverless handler's cold import time (a fresh interpreter).

    .venv/bin/python -m benchmarks.bench_events
    .venv/bin/python -m benchmarks.bench_events --events 20000 --catalogs sqlite
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.catalogs import temporary_catalog_url
from syncd import logs
from syncd.catalog import open_catalog
from syncd.config import parse_config
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token

ROUTES = """\
integrations: [{name: aws, provider: s3}]
drivers: [{name: raw, integration: aws, bucket: media}]
datasets: [{name: train, drivers: [raw]}]
"""
HANDLERS = {
    "aws": "handlers.aws_lambda",
    "gcp": "handlers.gcp_function.main",
    "azure": "handlers.azure_function.function_app",
}


def messages(count: int, first: int = 0) -> list[Message]:
    out = []
    for n in range(first, first + count):
        kind = EventKind.DELETED if n % 5 == 4 else EventKind.CREATED
        key = f"raw/{n % (count // 2 or 1):08d}.jpg"  # every key changes about twice
        event = ObjectEvent(
            kind,
            "s3",
            "media",
            key,
            1_700_000_000.0 + n,
            s3_token(f"{n:016X}"),
            size=n,
            etag=f"{n:032x}",
        )
        out.append(Message(str(n), "bench", "{}", [event]))
    return out


def apply_rate(url: str, count: int, batch: int) -> float:
    """Events/s in steady state: the catalog already holds the keys and has statistics,
    as after a first sync (which refreshes them) or autovacuum."""
    catalog = open_catalog(url)
    applier = EventApplier(catalog, parse_config(ROUTES, "bench.yaml", base_dir=Path.cwd()))
    warm = messages(count, 0)
    for start in range(0, count, 1000):
        applier.apply(warm[start : start + 1000])
    catalog._analyze()  # type: ignore[attr-defined]
    batch_messages = messages(count, count)
    started = time.perf_counter()
    for start in range(0, count, batch):
        applier.apply(batch_messages[start : start + batch])
    elapsed = time.perf_counter() - started
    catalog.close()
    return count / elapsed


def cold_import(module: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        code = (
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        times.append(float(done.stdout.strip()))
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--catalogs", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logs.configure("warning")
    print(f"{'catalog':<10} {'batch':>6} {'events/s':>10}")
    for kind in args.catalogs.split(","):
        for batch in (10, 100, 1000):
            with temporary_catalog_url(kind) as url:
                rate = apply_rate(url, args.events, batch)
            print(f"{kind:<10} {batch:>6} {rate:>10,.0f}")
    print()
    print(f"{'handler':<8} {'cold import (ms, median of ' + str(args.repeat) + ')':>34}")
    for cloud, module in HANDLERS.items():
        print(f"{cloud:<8} {cold_import(module, args.repeat):>34.0f}")


if __name__ == "__main__":
    main()
