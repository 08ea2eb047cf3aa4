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
import time
from pathlib import Path

from tests.peers import AWS_TEST_ENV, free_port


def fill(port: int, bucket: str, objects: int) -> None:
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["aws"]
    backend.create_bucket(bucket, "us-east-1")
    for n in range(objects):
        backend.put_object(bucket, f"images/{n % 50:02d}/frame_{n:07d}.jpg", b"\xff\xd8\xff" * 10)


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
            f"drivers: [{{name: b, integration: aws, bucket: {bucket}, fan_out: {fan_out}}}]\n"
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


if __name__ == "__main__":
    main()
