"""Daemon benchmark: freshness (put -> visible in the catalog) through moto S3 -> SQS and
through the folder watcher, with syncd's own share (receive -> commit); sustained events/s
from SQS on moto and from an in-memory queue (syncd's ceiling); lease claim + renew cycles/s
with 3 replicas on PostgreSQL; peak RSS of a daemon over a soak.

    .venv/bin/python -m benchmarks.bench_daemon
    .venv/bin/python -m benchmarks.bench_daemon --only ceiling,leases
    .venv/bin/python -m benchmarks.bench_daemon --only soak --soak 600
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from benchmarks.catalogs import temporary_catalog_url
from syncd import logs
from syncd.catalog import open_catalog
from syncd.config import Config
from syncd.daemon.consumer import ConsumerStats, Received, consume
from syncd.events.apply import EventApplier
from syncd.events.types import EventKind, Message, ObjectEvent, s3_token

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import AWS_TEST_ENV, Peer, moto_server  # noqa: E402


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(*cells: object) -> None:
    print("  ".join(f"{c!s:<42}" if i == 0 else f"{c!s:>14}" for i, c in enumerate(cells)))


# -- a daemon subprocess ---------------------------------------------------------------------


@contextmanager
def daemon(config: dict[str, Any], folder: Path, env: dict[str, str]) -> Iterator[Path]:
    path = folder / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    log = folder / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(path), "--log-level", "debug", "run"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            while "sync finished" not in log.read_text(errors="replace"):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the daemon did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield log
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def batch_seconds(log: Path) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"batch applied"' in line:
            record = json.loads(line)
            out.extend([record["seconds"]] * int(record["messages"]))
    return out


def commit_times(url: str, dataset: str) -> dict[str, float]:
    """key -> when its first change was committed."""
    catalog = open_catalog(url)
    try:
        out: dict[str, float] = {}
        for change in catalog.changes(dataset):
            out.setdefault(change.key, change.at)
        return out
    finally:
        catalog.close()


def wait_for(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.2)


# -- freshness -------------------------------------------------------------------------------


def s3_config(moto: Peer, url: str, bucket: str, queue_url: str) -> dict[str, Any]:
    from tests.daemon.test_sources import s3_config as config_for

    config = config_for(Path("."), moto.url, bucket, queue_url)
    config["catalog"] = url
    config["drivers"][0]["source"]["wait"] = 20
    return config


def s3_queue(moto: Peer) -> tuple[Any, Any, str, str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")
    bucket = f"b{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"q{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return s3, sqs, bucket, queue_url


def freshness_s3(moto: Peer, count: int, rate: float) -> None:
    s3, _, bucket, queue_url = s3_queue(moto)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/catalog.db"
        with daemon(s3_config(moto, url, bucket, queue_url), Path(tmp), AWS_TEST_ENV) as log:
            put_at: dict[str, float] = {}
            for n in range(count):
                key = f"fresh/{n:05d}.jpg"
                # moto notifies while the PUT is answered: time it from the request.
                put_at[key] = time.time()
                s3.put_object(Bucket=bucket, Key=key, Body=b"x")
                time.sleep(1 / rate)
            wait_for(lambda: len(commit_times(url, "inbox")) >= count, 120)
            seen = commit_times(url, "inbox")
            shares = batch_seconds(log)
    total = [seen[k] - t for k, t in put_at.items()]
    row(
        "S3 -> SQS (moto), put->commit",
        f"{pct(total, 0.5) * 1000:.0f} ms",
        f"{pct(total, 0.99) * 1000:.0f} ms",
        count,
    )
    row(
        "  syncd's share, receive->commit",
        f"{pct(shares, 0.5) * 1000:.0f} ms",
        f"{pct(shares, 0.99) * 1000:.0f} ms",
        len(shares),
    )


def freshness_watch(count: int, rate: float, settle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "inbox"
        folder.mkdir()
        url = f"sqlite:///{tmp}/catalog.db"
        config = {
            "catalog": url,
            "integrations": [{"name": "disk", "provider": "local"}],
            "drivers": [
                {
                    "name": "inbox",
                    "integration": "disk",
                    "bucket": str(folder),
                    "source": {"kind": "watch", "settle": settle},
                }
            ],
            "datasets": [{"name": "inbox", "drivers": ["inbox"]}],
        }
        with daemon(config, Path(tmp), {}):
            closed_at: dict[str, float] = {}
            for n in range(count):
                key = f"{n:05d}.jpg"
                (folder / key).write_bytes(b"pixels")
                closed_at[key] = time.time()
                time.sleep(1 / rate)
            wait_for(lambda: len(commit_times(url, "inbox")) >= count, 120)
            seen = commit_times(url, "inbox")
    total = [seen[k] - t for k, t in closed_at.items()]
    row(
        f"watch (settle {settle:g}s), close->commit",
        f"{pct(total, 0.5) * 1000:.0f} ms",
        f"{pct(total, 0.99) * 1000:.0f} ms",
        count,
    )


# -- throughput ------------------------------------------------------------------------------


def sqs_throughput(moto: Peer, messages: int, records: int) -> None:
    """A queue filled first, then drained by one daemon: records (events) applied per second."""
    from tests.daemon.test_sources import s3_record

    _, sqs, bucket, queue_url = s3_queue(moto)
    bodies = [
        json.dumps(
            {
                "Records": [
                    s3_record(bucket, f"t/{m:05d}-{r}.jpg", m * records + r) for r in range(records)
                ]
            }
        )
        for m in range(messages)
    ]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + 10])
            ],
        )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/catalog.db"
        with daemon(s3_config(moto, url, bucket, queue_url), Path(tmp), AWS_TEST_ENV):
            wait_for(lambda: len(commit_times(url, "inbox")) >= messages * records, 600)
            seen = commit_times(url, "inbox")
    first, last = min(seen.values()), max(seen.values())
    rate = len(seen) / (last - first)
    row(
        f"SQS (moto), {records} records/message",
        f"{rate:,.0f} ev/s",
        f"{messages / (last - first):,.0f} msg/s",
        len(seen),
    )


class MemoryQueue:
    """A queue in this process: the ceiling of syncd's own loop and catalog."""

    name = "memory"

    def __init__(self, messages: list[Message], batch: int) -> None:
        self.messages = messages
        self.batch = batch
        self.position = 0
        self.acked = 0

    def receive(self, wait: float) -> list[Received]:
        part = self.messages[self.position : self.position + self.batch]
        self.position += len(part)
        now = time.time()
        return [Received(m, m.id, now) for m in part]

    def ack(self, handles: Sequence[Any]) -> None:
        self.acked += len(handles)

    def release(self, handles: Sequence[Any]) -> None:
        raise AssertionError("nothing fails here")

    def extend(self, handles: Sequence[Any], seconds: float) -> list[Any]:
        return list(handles)


ROUTES = {
    "integrations": [{"name": "aws", "provider": "s3"}],
    "drivers": [{"name": "raw", "integration": "aws", "bucket": "media"}],
    "datasets": [{"name": "train", "drivers": ["raw"]}],
}


def synthetic(count: int) -> list[Message]:
    out = []
    for n in range(count):
        event = ObjectEvent(
            EventKind.CREATED,
            "s3",
            "media",
            f"raw/{n:08d}.jpg",
            1_700_000_000.0 + n,
            s3_token(f"{n:016X}"),
            size=n,
            etag=f"{n:032x}",
        )
        out.append(Message(str(n), "bench", "{}", [event]))
    return out


def ceiling(kind: str, count: int, batch: int) -> None:
    with temporary_catalog_url(kind) as url:
        catalog = open_catalog(url)
        applier = EventApplier(catalog, Config.model_validate(ROUTES))
        queue = MemoryQueue(synthetic(count), batch)
        stats = ConsumerStats(latencies=[])
        start = time.perf_counter()
        consume(
            queue, applier, stop=threading.Event(), once=True, wait=0, visibility=60, stats=stats
        )
        seconds = time.perf_counter() - start
        catalog.close()
    assert queue.acked == count
    assert stats.latencies is not None
    row(
        f"in-memory queue, {kind}, batch {batch}",
        f"{count / seconds:,.0f} ev/s",
        f"p99 {pct(stats.latencies, 0.99) * 1000:.1f} ms",
        count,
    )


# -- leases ----------------------------------------------------------------------------------


def lease_worker(url: str, replica: str, seconds: float, names: int, out: Any) -> None:
    catalog = open_catalog(url)
    cycles = 0
    held: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        name = f"sync:bench/{n % names}"
        n += 1
        if name in held:
            if catalog.renew_lease(name, replica, held[name], 30):
                cycles += 1
            catalog.release_lease(name, replica, held.pop(name))
            continue
        epoch = catalog.claim_lease(name, replica, 30)
        if epoch is not None:
            held[name] = epoch
    catalog.close()
    out.put(cycles)


def leases(seconds: float, replicas: int = 3) -> None:
    with temporary_catalog_url("postgres") as url:
        open_catalog(url).close()
        results: Any = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=lease_worker, args=(url, f"r{n}", seconds, 50, results))
            for n in range(replicas)
        ]
        for worker in workers:
            worker.start()
        counts = [results.get(timeout=seconds + 60) for _ in workers]
        for worker in workers:
            worker.join()
    row(
        f"leases, {replicas} replicas, PostgreSQL",
        f"{sum(counts) / seconds:,.0f} cyc/s",
        "claim+renew",
        sum(counts),
    )


# -- soak ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak(moto: Peer, seconds: float, rate: float) -> None:
    """A daemon fed S3 notifications and reconciling every 30 s: its RSS, per tenth of the run."""
    s3, _, bucket, queue_url = s3_queue(moto)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/catalog.db"
        config = s3_config(moto, url, bucket, queue_url)
        config["drivers"][0]["schedule"] = {"every": "30s"}
        config["drivers"][0]["source"]["wait"] = 1
        with daemon(config, Path(tmp), AWS_TEST_ENV) as log:
            pid = int(
                next(json.loads(x) for x in log.read_text().splitlines() if "daemon started" in x)[
                    "replica"
                ].rsplit(":", 1)[1]
            )
            samples: list[tuple[float, int]] = []
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < seconds:
                s3.put_object(Bucket=bucket, Key=f"soak/{n % 2000:05d}.jpg", Body=str(n).encode())
                n += 1
                samples.append((time.monotonic() - start, rss_kib(pid)))
                time.sleep(1 / rate)
    tenths = [
        max(r for t, r in samples if k * seconds / 10 <= t < (k + 1) * seconds / 10)
        for k in range(10)
    ]
    row(
        f"soak {seconds:.0f}s, RSS per tenth (MiB)",
        " ".join(f"{r / 1024:.0f}" for r in tenths),
        f"peak {max(tenths) / 1024:.0f}",
        n,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="fresh,throughput,ceiling,leases,soak")
    parser.add_argument("--soak", type=float, default=600.0, help="soak seconds")
    args = parser.parse_args()
    only = set(args.only.split(","))
    logs.configure("warning")
    os.environ.update(AWS_TEST_ENV)
    moto = moto_server() if only & {"fresh", "throughput", "soak"} else None
    try:
        row("case", "p50 / rate", "p99 / other", "n")
        if "fresh" in only and moto is not None:
            freshness_s3(moto, 200, 20)
            freshness_watch(200, 20, 2.0)
            freshness_watch(200, 20, 0.5)
        if "throughput" in only and moto is not None:
            sqs_throughput(moto, 200, 1)
            sqs_throughput(moto, 200, 10)
        if "ceiling" in only:
            for kind in ("sqlite", "postgres"):
                for batch in (10, 100):
                    ceiling(kind, 20_000, batch)
        if "leases" in only:
            leases(10.0)
        if "soak" in only and moto is not None:
            soak(moto, args.soak, 20)
    finally:
        if moto is not None:
            moto.stop()


if __name__ == "__main__":
    main()
