"""The API served by a real `syncd run` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.openapi_check import check
from tests.daemon.conftest import DaemonProcess, Daemons, daemons, wait_until
from tests.peers import free_port

__all__ = ["daemons"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    url: str
    daemon: DaemonProcess
    config: Path
    catalog: str
    folder: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        validate: bool = True,
        timeout: float = 70,
    ) -> Answer:
        """One request; the answer is checked against the OpenAPI document."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json"} if data is not None else {}
        sent.update(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            answer = Answer(error.code, dict(error.headers), error.read())
        if validate:
            check(method, path, answer.status, answer.headers.get("Content-Type", ""), answer.body)
        return answer

    def get(self, path: str, **options: Any) -> Answer:
        return self.request("GET", path, **options)

    def post(self, path: str, body: Any = None, **options: Any) -> Answer:
        return self.request("POST", path, body, **options)


def api_config(catalog: str, folder: Path, port: int, **sections: Any) -> dict[str, Any]:
    """A local-folder dataset `images` (driver `photos`), reconciled every 2 s."""
    api = {"listen": f"127.0.0.1:{port}", **sections.pop("api", {})}
    return {
        "catalog": catalog,
        "api": api,
        "integrations": [{"name": "disk", "provider": "local"}],
        "drivers": [
            {
                "name": "photos",
                "integration": "disk",
                "bucket": str(folder),
                "schedule": {"every": "2s"},
            }
        ],
        "datasets": [{"name": "images", "drivers": ["photos"]}],
        **sections,
    }


@pytest.fixture
def start_api(daemons: Daemons, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Start a daemon serving the API: `start_api(files={...}, catalog=URL, **sections)`."""

    def start(
        files: dict[str, bytes] | None = None,
        catalog: str | None = None,
        env: dict[str, str] | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        **sections: Any,
    ) -> Api:
        folder = tmp_path / "photos"
        folder.mkdir(exist_ok=True)
        for name, content in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        port = free_port()
        url = catalog or f"sqlite:///{tmp_path / 'catalog.db'}"
        config = api_config(url, folder, port, **sections)
        if edit is not None:
            edit(config)
        path = daemons.write_config(config)
        daemon = daemons.start(path, env={**os.environ, **(env or {})})
        api = Api(f"http://127.0.0.1:{port}", daemon, path, url, folder)

        def up() -> bool:
            assert daemon.alive(), daemon.log.read_text()[-2000:]
            try:
                urllib.request.urlopen(api.url + "/healthz", timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(up, 30, "the API to answer")
        wait_until(lambda: bool(daemon.events("sync finished")), 30, "the first sync")
        return api

    yield start
