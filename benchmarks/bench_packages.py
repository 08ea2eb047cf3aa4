"""Function packages: archive sizes, and each handler's cold import from its archive as
shipped (bytecode compiled) beside the same archive without bytecode. A function's
filesystem is read-only, so `-B` (write no bytecode) keeps every run as cold as the first:
without shipped bytecode, every start compiles every module.

    .venv/bin/python -m benchmarks.bench_packages
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from deploy.package import ARCHIVES, build

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
MODULES = {"aws": "handlers.aws_lambda", "gcp": "main", "azure": "function_app"}
ENV = {
    "SYNCD_CONFIG_YAML": "{}",
    "SYNCD_CATALOG_URL": "sqlite:///:memory:",
}


def unpack(archive: Path, folder: Path, *, bytecode: bool) -> Path:
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            if bytecode or "__pycache__/" not in name:
                bundle.extract(name, folder)
    return folder


def cold_import(cloud: str, folder: Path, repeat: int) -> float:
    paths = [str(folder)]
    if cloud == "azure":
        paths.append(str(folder / ".python_packages/lib/site-packages"))
    # GCP installs its requirements at deploy time: they come from this venv here, the
    # package's own code from the archive.
    python = sys.executable if cloud == "gcp" else BASE_PYTHON
    isolation = ["-B"] if cloud == "gcp" else ["-B", "-I", "-S"]
    code = (
        "import sys, time; sys.path[:0] = sys.argv[1:]; t = time.perf_counter(); "
        f"import {MODULES[cloud]}; print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(repeat):
        done = subprocess.run(
            [python, *isolation, "-c", code, *paths],
            capture_output=True,
            text=True,
            check=True,
            env=ENV,
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'cloud':<6} {'archive':>12} {'files':>6} {'compiled ms':>12} {'source ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for cloud in ARCHIVES:
            archive = build(cloud, root / "out")
            with zipfile.ZipFile(archive) as bundle:
                files = len(bundle.namelist())
            compiled = cold_import(
                cloud, unpack(archive, root / f"{cloud}-pyc", bytecode=True), args.repeat
            )
            source = cold_import(
                cloud, unpack(archive, root / f"{cloud}-src", bytecode=False), args.repeat
            )
            size = archive.stat().st_size
            print(f"{cloud:<6} {size:>12,} {files:>6} {compiled:>12.0f} {source:>10.0f}")


if __name__ == "__main__":
    main()
