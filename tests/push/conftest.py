"""A real Label Studio server for the session, a fresh project per test, and a project folder
whose config targets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import open_catalog
from syncd.catalog.types import Catalog
from syncd.config import Config, load_config
from syncd.project import Project
from syncd.push.labelstudio import LabelStudio, Task
from tests.peers import Peer, label_studio, label_studio_token

TOKEN_ENV = "SYNCD_TEST_LABEL_STUDIO_TOKEN"
IMAGE_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="choice" toName="image"><Choice value="cat"/><Choice value="dog"/></Choices>'
    "</View>"
)
ANSWER = [
    {"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": ["cat"]}}
]


@dataclass
class LabelStudioServer:
    peer: Peer
    token: str

    @property
    def url(self) -> str:
        return self.peer.url

    def client(self, project: int = 0) -> LabelStudio:
        return LabelStudio(self.url, self.token, project)


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    data = tmp_path_factory.mktemp("label-studio")
    # Pages smaller than the 1,000 tasks syncd asks for: every test that checks a project
    # of more than 100 tasks reads it over several short pages.
    peer = label_studio(data / "data", log_dir=data, page_size_max=100)
    try:
        yield LabelStudioServer(peer, label_studio_token(peer))
    finally:
        peer.stop()


class LsProject:
    """One Label Studio project, read and annotated as a labeler would."""

    def __init__(self, server: LabelStudioServer, project_id: int) -> None:
        self.server = server
        self.id = project_id
        self.api = server.client(project_id)

    def tasks(self) -> list[Task]:
        return list(self.api.tasks())

    def by_key(self) -> dict[str, Task]:
        out: dict[str, Task] = {}
        for task in self.tasks():
            key = task.meta["syncd"]["key"]
            assert key not in out, f"two tasks for {key}"
            out[key] = task
        return out

    def annotate(self, task_id: int) -> None:
        self.api.call("POST", f"/api/tasks/{task_id}/annotations", {"result": ANSWER})

    def draft(self, task_id: int) -> None:
        self.api.call("POST", f"/api/tasks/{task_id}/drafts", {"result": ANSWER})

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        found = self.api.call("GET", f"/api/tasks/{task_id}/annotations")
        assert isinstance(found, list)
        return found

    def delete_task(self, task_id: int) -> None:
        self.api.call("DELETE", f"/api/tasks/{task_id}")


@pytest.fixture
def ls_project(label_studio_server: LabelStudioServer, request: pytest.FixtureRequest) -> LsProject:
    created = label_studio_server.client().call(
        "POST",
        "/api/projects",
        {"title": f"syncd {request.node.name}"[:50], "label_config": IMAGE_CONFIG},
    )
    return LsProject(label_studio_server, int(created["id"]))


@dataclass
class PushProject:
    """A folder with syncd.yaml: a dataset `pets` from ./photos, a target `ls`."""

    root: Path
    photos: Path
    ls: LsProject
    env: dict[str, str]

    def config(self) -> Config:
        return load_config(str(self.root / "syncd.yaml"))

    def catalog(self) -> Catalog:
        return open_catalog(self.config().catalog_url())

    def sync(self) -> None:
        project = Project(self.config())
        try:
            report = project.sync()
        finally:
            project.close()
        assert all(r.status == "succeeded" for r in report.results), report

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncd", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=timeout,
        )

    def push_json(self, *args: str) -> dict[str, Any]:
        done = self.cli("push", "--json", *args)
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer


def write_config(
    root: Path, url: str, project: int, *, extra: str = "", drivers: str = "[photos]"
) -> None:
    (root / "syncd.yaml").write_text(
        f"""\
catalog: sqlite:///.syncd/catalog.db
integrations:
  - {{name: disk, provider: local}}
{extra}drivers:
  - {{name: photos, integration: disk, bucket: ./photos}}
datasets:
  - {{name: pets, drivers: {drivers}}}
targets:
  - {{name: ls, kind: labelstudio, url: "{url}", token: "env:{TOKEN_ENV}", project: {project},
      dataset: pets, batch: 50}}
"""
    )


@pytest.fixture
def push_project(
    tmp_path: Path, ls_project: LsProject, monkeypatch: pytest.MonkeyPatch
) -> PushProject:
    monkeypatch.setenv(TOKEN_ENV, ls_project.server.token)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c", "d", "e", "f"):
        (photos / f"{name}.jpg").write_bytes(f"image {name}".encode())
    write_config(tmp_path, ls_project.server.url, ls_project.id)
    return PushProject(tmp_path, photos, ls_project, {TOKEN_ENV: ls_project.server.token})
