"""S3 listing benchmark: `syncd sync` (first and no-op, one stream and fan-out) against
`s5cmd ls` and `rclone lsf -R` of the same moto bucket, in one run.

The bucket is filled through moto's backend inside this process (ENVIRONMENT.md: HTTP puts
run at 100-300/s), then served over HTTP by a ThreadedMotoServer; every lister, syncd
included, runs as its own process against it.

    .venv/bin/python -m benchmarks.bench_stores                    # 50,000 objects
    .venv/bin/python -m benchmarks.bench_stores --objects 5000 --repeat 1
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.peers import AWS_TEST_ENV, free_port


def fill(port: int, bucket: str, objects: int) -> None:
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for n in range(objects):
        backend.put_object(bucket, f"images/{n % 50:02d}/frame_{n:07d}.jpg", b"\xff\xd8\xff" * 10)


def near_free_server(objects: int, latency: float = 0.0) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server answering ListObjectsV2 (prefix, delimiter, pages of 1000) from keys held
    in memory: what a listing costs a client when the server costs almost nothing. With
    `latency`, each request waits that long first, as a real S3 page request does."""
    ns = "http://s3.amazonaws.com/doc/2006-03-01/"
    keys = sorted(f"images/{n % 50:02d}/frame_{n:07d}.jpg" for n in range(objects))

    def page(prefix: str, delimiter: str, start: int) -> bytes:
        matching = [k for k in keys if k.startswith(prefix)] if prefix else keys
        common: list[str] = []
        if delimiter:
            direct = []
            for key in matching:
                head, sep, _ = key[len(prefix) :].partition(delimiter)
                if sep:
                    if not common or common[-1] != prefix + head + sep:
                        common.append(prefix + head + sep)
                else:
                    direct.append(key)
            matching = direct
        chunk = matching[start : start + 1000]
        truncated = start + 1000 < len(matching)
        body = "".join(
            f"<Contents><Key>{key}</Key><LastModified>2026-11-23T08:00:00.000Z</LastModified>"
            f"<ETag>&quot;{hash(key) & 0xFFFFFFFF:032x}&quot;</ETag><Size>30</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for key in chunk
        )
        body += "".join(f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in common)
        token = (
            f"<NextContinuationToken>{start + 1000}</NextContinuationToken>" if truncated else ""
        )
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{ns}">'
            f"<Name>bench</Name><Prefix>{prefix}</Prefix><KeyCount>{len(chunk)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>{str(truncated).lower()}</IsTruncated>"
            f"{token}{body}</ListBucketResult>"
        ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            if latency:
                time.sleep(latency)
            data = page(
                query.get("prefix", [""])[0],
                query.get("delimiter", [""])[0],
                int(query.get("continuation-token", ["0"])[0]),
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


_OPEN = (
    "from pathlib import Path\n"
    "from syncd.storage import open_store\n"
    "from syncd.storage.fanout import fan_out_listing\n"
    "from syncd.config import Driver, Integration\n"
    "i = Integration(name='a', provider='s3', endpoint_url=URL, region='us-east-1')\n"
    "s = open_store(Driver(name='d', integration='a', bucket='bench'), i, Path())\n"
)
LIST_WITH = {
    "syncd S3Store (lean)": _OPEN + "print(sum(1 for _ in s.list('images/')))",
    "syncd fan-out 8": _OPEN
    + "print(sum(1 for _ in fan_out_listing(s, 'images/', concurrency=8)))",
    "boto3 paginator": "import boto3\n"
    "c = boto3.client('s3', endpoint_url=URL, region_name='us-east-1')\n"
    "print(sum(len(p.get('Contents', [])) for p in "
    "c.get_paginator('list_objects_v2').paginate(Bucket='bench', Prefix='images/')))",
}


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fan-out", type=int, default=8)
    args = parser.parse_args()
    os.environ.update(AWS_TEST_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = "bench"
    fill(port, bucket, args.objects)
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-s3-"))
    env = {**os.environ, "AWS_REGION": "us-east-1", "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""}
    rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    (work / "rclone.conf").write_text(
        "[moto]\ntype = s3\nprovider = Other\n"
        f"endpoint = {endpoint}\nforce_path_style = true\naccess_key_id = testing\n"
        "secret_access_key = testing\nregion = us-east-1\n"
    )
    for fan_out in (1, args.fan_out):
        (work / f"fan{fan_out}.yaml").write_text(
            f"catalog: sqlite:///fan{fan_out}.db\n"
            "integrations:\n"
            f"  - {{name: aws, provider: s3, endpoint_url: '{endpoint}', region: us-east-1,\n"
            "     access_key_id: env:AWS_ACCESS_KEY_ID, secret_access_key: env:AWS_SECRET_ACCESS_KEY}\n"
            f"drivers: [{{name: b, integration: aws, bucket: {bucket}, prefix: images/,"
            f" fan_out: {fan_out}}}]\n"
            "datasets: [{name: bench, drivers: [b]}]\n"
        )
    s5cmd = str(Path(sys.executable).parent / "s5cmd")
    syncd = [sys.executable, "-m", "syncd", "--log-level", "warning"]
    rows: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        rows.setdefault(name, []).append(seconds)

    try:
        for _ in range(args.repeat):
            record(
                "s5cmd ls",
                timed([s5cmd, "--endpoint-url", endpoint, "ls", f"s3://{bucket}/*"], env),
            )
            if shutil.which("rclone"):
                record(
                    "rclone lsf -R",
                    timed(
                        [
                            "rclone",
                            "--config",
                            str(work / "rclone.conf"),
                            "lsf",
                            "-R",
                            f"moto:{bucket}",
                        ],
                        rclone_env,
                    ),
                )
            for fan_out in (1, args.fan_out):
                label = "one stream" if fan_out == 1 else f"fan-out {fan_out}"
                for suffix in ("", "-wal", "-shm"):
                    (work / f"fan{fan_out}.db{suffix}").unlink(missing_ok=True)
                config = ["--config", str(work / f"fan{fan_out}.yaml"), "sync"]
                record(f"syncd first, {label}", timed([*syncd, *config], env, work))
                record(f"syncd no-op, {label}", timed([*syncd, *config], env, work))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    fastest = min(statistics.median(v) for k, v in rows.items() if not k.startswith("syncd"))
    print(f"moto bucket of {args.objects:,} objects, median of {args.repeat}")
    print(f"{'lister':<26} {'seconds':>8} {'objects/s':>10} {'vs fastest outside':>19}")
    for name, times in rows.items():
        median = statistics.median(times)
        print(
            f"{name:<26} {median:>8.2f} {args.objects / median:>10,.0f} {median / fastest:>18.2f}x"
        )

    for latency in (0.0, 0.05):
        listing_server, url = near_free_server(args.objects, latency)
        client: dict[str, list[float]] = {}
        try:
            for _ in range(max(args.repeat, 3)):
                client.setdefault("s5cmd ls", []).append(
                    timed([s5cmd, "--endpoint-url", url, "ls", "s3://bench/images/*"], env)
                )
                for name, code in LIST_WITH.items():
                    client.setdefault(name, []).append(
                        timed([sys.executable, "-c", f"URL = {url!r}\n{code}"], env)
                    )
        finally:
            listing_server.shutdown()
        reference = statistics.median(client["s5cmd ls"])
        print(
            f"\n{args.objects:,} keys from a server that answers from memory, "
            f"{latency * 1000:.0f} ms per page"
        )
        print(f"{'lister':<26} {'seconds':>8} {'vs s5cmd':>9}")
        for name, times in client.items():
            median = statistics.median(times)
            print(f"{name:<26} {median:>8.2f} {median / reference:>8.2f}x")


if __name__ == "__main__":
    main()
