"""`syncd run` as a real subprocess: start it on a config, read its JSON log, stop it by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.catalog import Catalog, open_catalog

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line the daemon logged so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def send(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.send(signum)
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None


class Daemons:
    """Every daemon a test starts, killed at its end whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[DaemonProcess] = []

    def write_config(self, config: dict[str, Any], name: str = "syncd.yaml") -> Path:
        path = self.tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(
        self,
        config: Path,
        *args: str,
        env: dict[str, str] | None = None,
        name: str = "daemon",
    ) -> DaemonProcess:
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        handle = open(log, "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "run", *args],
            cwd=self.tmp_path,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        daemon = DaemonProcess(process, log)
        self.started.append(daemon)
        return daemon

    def run_once(
        self, config: Path, env: dict[str, str] | None = None, timeout: float = 120
    ) -> int:
        daemon = self.start(config, "--once", env=env, name="once")
        return daemon.process.wait(timeout=timeout)

    def run_sync(self, config: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """`syncd sync --json` on the same config: the backfill, run by hand. The counts of
        each result."""
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(config), "sync", "--json"],
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return [r["counts"] for r in json.loads(done.stdout)["results"]]

    def close(self) -> None:
        for daemon in self.started:
            if daemon.process.poll() is None:
                with_signal(daemon, signal.SIGCONT)
                daemon.process.kill()
                daemon.process.wait()


def with_signal(daemon: DaemonProcess, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        daemon.send(signum)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    yield started
    started.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds until `check()` held; fails naming `what` after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(every)
    return time.monotonic() - start


def live_keys(url: str, dataset: str) -> dict[str, str | None]:
    """key -> etag of the dataset's live items."""
    catalog: Catalog = open_catalog(url)
    try:
        if catalog.find_id("dataset", dataset) is None:
            return {}
        return {item.key: item.etag for item in catalog.items(dataset)}
    finally:
        catalog.close()
