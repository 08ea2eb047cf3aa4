"""Local folder benchmark: `syncd sync` of a folder of many files against `rclone lsf -R`
and `find` on the same folder, in the same run (warm cache; medians of --repeat runs).

    .venv/bin/python -m benchmarks.bench_local                  # 200,000 files
    .venv/bin/python -m benchmarks.bench_local --files 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_tree(root: Path, files: int) -> None:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(files):
        return
    shutil.rmtree(root, ignore_errors=True)
    per_folder = 1000
    for n in range(files):
        folder = root / f"scans/batch-{n // per_folder:04d}"
        if n % per_folder == 0:
            folder.mkdir(parents=True)
        (folder / f"frame_{n:08d}.jpg").write_bytes(b"\xff\xd8\xff")
    marker.write_text(str(files))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "syncd-bench-local"))
    args = parser.parse_args()
    root = Path(args.dir)
    make_tree(root / "data", args.files)
    config = root / "syncd.yaml"
    config.write_text(
        "catalog: sqlite:///catalog.db\n"
        "integrations: [{name: disk, provider: local}]\n"
        "drivers: [{name: files, integration: disk, bucket: data}]\n"
        "datasets: [{name: bench, drivers: [files]}]\n"
    )
    syncd = [sys.executable, "-m", "syncd", "--log-level", "warning", "--config", str(config)]
    rclone_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    rows: dict[str, list[float]] = {
        "find": [],
        "rclone lsf -R": [],
        "syncd first": [],
        "syncd no-op": [],
    }
    timed(["find", str(root / "data"), "-printf", "%P %s %T@\n"])  # warm the cache
    for _ in range(args.repeat):
        rows["find"].append(timed(["find", str(root / "data"), "-printf", "%P %s %T@\n"]))
        if shutil.which("rclone"):
            rows["rclone lsf -R"].append(
                timed(["rclone", "lsf", "-R", "--format", "pst", str(root / "data")], rclone_env)
            )
        for suffix in ("", "-wal", "-shm"):
            (root / f"catalog.db{suffix}").unlink(missing_ok=True)
        rows["syncd first"].append(timed([*syncd, "sync"]))
        rows["syncd no-op"].append(timed([*syncd, "sync"]))
    reference = statistics.median(rows["rclone lsf -R"]) if rows["rclone lsf -R"] else None
    print(f"{args.files:,} files, median of {args.repeat}")
    print(f"{'lister':<16} {'seconds':>8} {'files/s':>10} {'vs rclone':>10}")
    for name, times in rows.items():
        if not times:
            print(f"{name:<16} {'(not installed)':>8}")
            continue
        median = statistics.median(times)
        ratio = f"{median / reference:.2f}x" if reference else "-"
        print(f"{name:<16} {median:>8.2f} {args.files / median:>10,.0f} {ratio:>10}")


if __name__ == "__main__":
    main()
