"""Benchmark cases run in a process of their own, so that each peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def in_own_process(module: str, case: str) -> dict[str, Any]:
    """Run `python -m module --case case`; its last stdout line is the case's JSON figures."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--case", case],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures
