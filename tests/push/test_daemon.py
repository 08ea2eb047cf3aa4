"""`syncd run` keeps a Label Studio project in step by itself: a file dropped into a watched
folder becomes a task, a deleted one takes its untouched task away."""

from __future__ import annotations

from tests.daemon.conftest import Daemons, daemons, wait_until
from tests.push.conftest import TOKEN_ENV, PushProject

__all__ = ["daemons"]


def test_the_daemon_pushes_after_commits(daemons: Daemons, push_project: PushProject) -> None:
    project, ls = push_project, push_project.ls
    config = project.root / "syncd.yaml"
    text = config.read_text().replace(
        "bucket: ./photos}", "bucket: ./photos, source: {kind: watch, settle: 0.5s}}"
    )
    config.write_text(text.replace("dataset: pets, batch: 50}", "dataset: pets, every: 1h}"))
    daemon = daemons.start(config, env={TOKEN_ENV: ls.server.token})

    def keys() -> set[str]:
        return {t.meta["syncd"]["key"] for t in ls.tasks()}

    every = {f"{n}.jpg" for n in "abcdef"}
    wait_until(lambda: keys() == every, 60, "the first push")
    (project.photos / "new.jpg").write_bytes(b"new")
    (project.photos / "a.jpg").unlink()
    wait_until(lambda: keys() == every - {"a.jpg"} | {"new.jpg"}, 60, "a push after commits")
    assert daemon.process.poll() is None

    def pushed() -> list[dict[str, object]]:
        return [line for line in daemon.lines() if line.get("event") == "push finished"]

    # The run is logged after its last request: the tasks may show a moment before.
    wait_until(lambda: len(pushed()) >= 2, 30, "two pushes logged")
    assert all(line["status"] == "succeeded" for line in pushed())


def test_run_once_pushes_too(daemons: Daemons, push_project: PushProject) -> None:
    project = push_project
    project.sync()
    assert daemons.run_once(project.root / "syncd.yaml", env=project.env) == 0
    assert {t.meta["syncd"]["key"] for t in project.ls.tasks()} == {f"{n}.jpg" for n in "abcdef"}
