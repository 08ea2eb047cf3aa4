"""Property-based requests from the OpenAPI document (schemathesis): no 5xx, and every answer
is what the document says."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.api.conftest import Api


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    start_api: Callable[..., Api], tmp_path: Path
) -> None:
    api = start_api(files={"a.jpg": b"a", "scans/b.dcm": b"b"})
    binary = Path(sys.executable).with_name("schemathesis")
    # Real values where random ones only find 404s, and no long poll (it would wait its
    # whole `wait` on an idle dataset; the long poll has its own test).
    settings = tmp_path / "schemathesis.toml"
    settings.write_text('[parameters]\n"query.wait" = 0\n"path.dataset" = "images"\n')
    done = subprocess.run(
        [
            str(binary),
            "--config-file",
            str(settings),
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--request-timeout",
            "65",
            "--seed",
            "16",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:]
    assert api.daemon.alive()
