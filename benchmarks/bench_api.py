"""API benchmark: latency of a 1,000-item page and of `changes?since=` over a catalog of N
items (SQLite and PostgreSQL), requests/s of /metrics and /readyz, served by a real
`syncd run` subprocess.

    .venv/bin/python -m benchmarks.bench_api
    .venv/bin/python -m benchmarks.bench_api --items 100000 --catalogs sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_engine import GeneratedStore
from benchmarks.catalogs import temporary_catalog_url
from syncd import logs
from syncd.catalog import open_catalog
from syncd.reconcile import reconcile
from tests.conftest import make_driver
from tests.peers import free_port

ROOT = Path(__file__).resolve().parent.parent


def fill(url: str, folder: Path, count: int) -> None:
    catalog = open_catalog(url)
    try:
        result = reconcile(
            catalog,
            GeneratedStore(count),
            dataset="ct",
            driver=make_driver(folder, name="scans"),
            provider="local",
        )
        assert result.counts.added == count, result
    finally:
        catalog.close()


@contextmanager
def serving(url: str, folder: Path, webhooks: list[dict[str, Any]] | None = None) -> Iterator[str]:
    port = free_port()
    config = {
        "catalog": url,
        "api": {"listen": f"127.0.0.1:{port}"},
        "integrations": [{"name": "disk", "provider": "local"}],
        # Never due in a benchmark: the API reads what `fill` wrote.
        "drivers": [
            {
                "name": "scans",
                "integration": "disk",
                "bucket": str(folder),
                "schedule": {"cron": "0 0 29 2 *"},
            }
        ],
        "datasets": [{"name": "ct", "drivers": ["scans"]}],
        "webhooks": webhooks or [],
    }
    path = folder.parent / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(path), "--log-level", "warning", "run"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
        return body


def latencies(urls: Sequence[str]) -> list[float]:
    out = []
    for url in urls:
        start = time.perf_counter()
        get(url)
        out.append(time.perf_counter() - start)
    return out


def rate(url: str, seconds: float, clients: int) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        while time.monotonic() < stop:
            get(url)
            done[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(*cells: object) -> None:
    print("  ".join(f"{c!s:<40}" if i == 0 else f"{c!s:>12}" for i, c in enumerate(cells)))


def bench(kind: str, count: int, samples: int) -> None:
    with temporary_catalog_url(kind) as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        started = time.perf_counter()
        fill(url, folder, count)
        filled = time.perf_counter() - started
        with serving(url, folder) as base:
            rng = random.Random(18)
            # Cursors spread over the whole dataset: walk pages of 10,000 and keep some.
            cursors: list[str] = []
            cursor: str | None = None
            while True:
                page = json.loads(
                    get(
                        f"{base}/v1/datasets/ct/items?limit=10000"
                        + (f"&cursor={cursor}" if cursor else "")
                    )
                )
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                cursors.append(cursor)
            picks = [rng.choice(cursors) for _ in range(samples)] if cursors else [""] * samples
            pages = latencies([f"{base}/v1/datasets/ct/items?limit=1000&cursor={c}" for c in picks])
            since = latencies(
                [
                    f"{base}/v1/datasets/ct/changes?since={rng.randrange(count)}&limit=1000"
                    for _ in range(samples)
                ]
            )
            metrics = rate(f"{base}/metrics", 5.0, 4)
            ready = rate(f"{base}/readyz", 5.0, 4)
    label = f"{kind}, {count:,} items"
    row(f"{label}: fill by sync", f"{filled:.1f} s", "")
    row(
        f"{label}: items page of 1,000",
        f"p50 {pct(pages, 0.5) * 1000:.1f} ms",
        f"p99 {pct(pages, 0.99) * 1000:.1f} ms",
    )
    row(
        f"{label}: changes?since= 1,000",
        f"p50 {pct(since, 0.5) * 1000:.1f} ms",
        f"p99 {pct(since, 0.99) * 1000:.1f} ms",
    )
    row(f"{label}: /metrics (4 clients)", f"{metrics:,.0f} req/s", "")
    row(f"{label}: /readyz (4 clients)", f"{ready:,.0f} req/s", "")


def webhook_delay(samples: int) -> None:
    """Run end (its `finished_at`) -> the webhook received, through the outbox."""
    from datetime import datetime
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: dict[int, float] = {}

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["type"] == "sync.completed":
                received[body["data"]["run_id"]] = (
                    time.time() - datetime.fromisoformat(body["data"]["finished_at"]).timestamp()
                )
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["BENCH_WEBHOOK_SECRET"] = "bench-secret"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scans"
        folder.mkdir()
        (folder / "a.dcm").write_bytes(b"x")
        hook: dict[str, Any] = {
            "name": "bench",
            "url": f"http://127.0.0.1:{server.server_address[1]}/hook",
            "secret": "env:BENCH_WEBHOOK_SECRET",
            "events": ["sync.completed"],
        }
        with serving(f"sqlite:///{tmp}/catalog.db", folder, webhooks=[hook]) as base:
            for _ in range(samples):
                request = urllib.request.Request(
                    f"{base}/v1/sync",
                    data=json.dumps({"dataset": "ct"}).encode(),
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=30) as answer:
                    run_id = json.loads(answer.read())["started"][0]["run_id"]
                deadline = time.monotonic() + 30
                while run_id not in received and time.monotonic() < deadline:
                    time.sleep(0.01)
    server.shutdown()
    delays = list(received.values())
    row(
        "webhook delivery after a run ends",
        f"p50 {pct(delays, 0.5) * 1000:.0f} ms",
        f"p99 {pct(delays, 0.99) * 1000:.0f} ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--catalogs", default="sqlite,postgres")
    args = parser.parse_args()
    logs.configure("warning")
    row("case", "", "")
    for kind in args.catalogs.split(","):
        bench(kind, args.items, args.samples)
    webhook_delay(30)


if __name__ == "__main__":
    main()
