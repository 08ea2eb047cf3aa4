"""`syncd push` into a real Label Studio server: adds, changes and deletes arrive, human work
is never deleted, and crashes, reruns and hand edits converge with no duplicate task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from syncd.catalog.types import RunStatus
from tests.peers import Peer
from tests.push.conftest import LsProject, PushProject, write_config
from tests.push.stall_proxy import refusing_proxy, stalling_proxy
from tests.storage.throttle_proxy import throttling_proxy


def live_keys(project: PushProject) -> set[str]:
    catalog = project.catalog()
    try:
        return {i.key for i in catalog.items("pets")}
    finally:
        catalog.close()


@pytest.mark.parametrize("flags", [(), ("--no-verify",)], ids=["verify", "change-feed"])
def test_first_push_then_adds_changes_and_deletes_converge(
    push_project: PushProject, flags: tuple[str, ...]
) -> None:
    project, ls = push_project, push_project.ls
    project.sync()
    first = project.push_json(*flags)
    (result,) = first["results"]
    assert result["status"] == "succeeded" and result["counts"]["imported"] == 6
    tasks = ls.by_key()
    assert set(tasks) == {f"{n}.jpg" for n in "abcdef"}
    a = tasks["a.jpg"]
    # The data key comes from the label config; meta says which item the task shows.
    assert set(a.data) == {"image"} and a.data["image"].endswith("/photos/a.jpg")
    assert a.meta["syncd"]["dataset"] == "pets" and a.meta["syncd"]["driver"] == "photos"
    assert a.meta["syncd"]["change_id"] >= 1

    ls.annotate(tasks["a.jpg"].id)
    ls.annotate(tasks["b.jpg"].id)
    ls.draft(tasks["c.jpg"].id)
    (project.photos / "a.jpg").write_bytes(b"a new picture of a")
    os.utime(project.photos / "a.jpg", (time.time() + 5, time.time() + 5))
    for name in ("b", "c", "d"):
        (project.photos / f"{name}.jpg").unlink()
    (project.photos / "g.jpg").write_bytes(b"image g")
    project.sync()

    second = project.push_json(*flags)["results"][0]
    # Checking the whole project sees the two untouched tasks; the change feed skips them.
    assert second["counts"] | {"writes": 0} == {
        "imported": 1,
        "updated": 1,
        "deleted": 1,
        "kept": 2,
        "unchanged": 0 if flags else 2,
        "writes": 0,
    }
    after = ls.by_key()
    # The untouched task of a deleted file is gone; the ones holding an annotation or a
    # draft stay, marked.
    assert set(after) == {"a.jpg", "b.jpg", "c.jpg", "e.jpg", "f.jpg", "g.jpg"}
    assert after["b.jpg"].meta["source_deleted"] is True
    assert after["c.jpg"].meta["source_deleted"] is True and after["c.jpg"].drafts
    assert len(ls.annotations(after["b.jpg"].id)) == 1
    # The changed file's task is the same task, with its annotation, marked changed.
    assert after["a.jpg"].id == tasks["a.jpg"].id
    assert after["a.jpg"].meta["source_changed"] is True
    assert after["a.jpg"].meta["syncd"]["change_id"] > a.meta["syncd"]["change_id"]
    assert len(ls.annotations(after["a.jpg"].id)) == 1
    unmarked = {k for k, t in after.items() if not t.meta.get("source_deleted")}
    assert unmarked == live_keys(project)

    # A deleted file that comes back gets its kept task back, unmarked.
    (project.photos / "b.jpg").write_bytes(b"b is back")
    project.sync()
    project.push_json(*flags)
    back = ls.by_key()["b.jpg"]
    assert back.id == tasks["b.jpg"].id and not back.meta.get("source_deleted")

    listed = project.cli("runs", "ls", "--pushes", "--json")
    runs = json.loads(listed.stdout)
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    assert runs[1]["counts"]["kept"] == 2 and runs[2]["counts"]["imported"] == 6
    table = project.cli("runs", "ls")
    assert "Pushes" in table.stdout and "ls" in table.stdout


def test_a_noop_push_makes_no_write_request(push_project: PushProject) -> None:
    project = push_project
    project.sync()
    with throttling_proxy(project.ls.server.url, every=0) as (url, seen):
        write_config(project.root, url, project.ls.id)
        project.push_json()
        first = len(seen.requests)
        again = project.push_json()["results"][0]
        calls = seen.requests[first:]
    writes = [(m, p) for m, p in calls if m != "GET" and not p.startswith("/api/token/refresh")]
    assert writes == [] and again["counts"]["writes"] == 0
    assert any(p.startswith("/api/tasks") for _, p in calls), "the push checked the project"
    assert again["counts"]["unchanged"] == 6


def test_tasks_deleted_by_hand_come_back_and_duplicates_go(push_project: PushProject) -> None:
    project, ls = push_project, push_project.ls
    project.sync()
    project.push_json()
    tasks = ls.by_key()
    ls.delete_task(tasks["a.jpg"].id)
    # A task someone imported again by hand, with syncd's meta: a duplicate.
    ls.api.import_tasks([{"data": tasks["e.jpg"].data, "meta": dict(tasks["e.jpg"].meta)}])
    assert len(ls.tasks()) == 6
    # The change feed has nothing new, so only checking the project finds both.
    assert project.push_json("--no-verify")["results"][0]["counts"]["imported"] == 0
    fixed = project.push_json()["results"][0]
    assert fixed["counts"]["imported"] == 1 and fixed["counts"]["deleted"] == 1
    after = ls.by_key()
    assert set(after) == live_keys(project) and after["e.jpg"].id == tasks["e.jpg"].id
    # The link still names the original: a change through the feed updates it, no new task.
    (project.photos / "e.jpg").write_bytes(b"e, edited")
    project.sync()
    changed = project.push_json("--no-verify")["results"][0]["counts"]
    assert (changed["updated"], changed["imported"]) == (1, 0)
    assert ls.by_key()["e.jpg"].id == tasks["e.jpg"].id


def test_an_annotated_copy_is_left_alone_and_other_meta_is_kept(
    push_project: PushProject,
) -> None:
    project, ls = push_project, push_project.ls
    project.sync()
    project.push_json()
    tasks = ls.by_key()
    (copy,) = ls.api.import_tasks(
        [{"data": tasks["f.jpg"].data, "meta": dict(tasks["f.jpg"].meta)}]
    )
    ls.annotate(copy)
    ls.api.update_meta(tasks["a.jpg"].id, {**tasks["a.jpg"].meta, "priority": 5})
    (project.photos / "a.jpg").write_bytes(b"a, edited")
    project.sync()
    for _ in range(2):
        result = project.push_json()["results"][0]
    # Neither copy of f.jpg is marked or rewritten, and the second push writes nothing.
    assert result["counts"]["writes"] == 0
    f_tasks = {t.id: t for t in ls.tasks() if t.meta["syncd"]["key"] == "f.jpg"}
    assert set(f_tasks) == {tasks["f.jpg"].id, copy}
    assert not any(t.meta.get("source_deleted") for t in f_tasks.values())
    a = next(t for t in ls.tasks() if t.meta["syncd"]["key"] == "a.jpg")
    assert a.meta["priority"] == 5 and a.meta["source_changed"] is True


def test_sigkill_after_an_import_then_rerun_leaves_no_duplicate(push_project: PushProject) -> None:
    project, ls = push_project, push_project.ls
    for n in range(300):
        (project.photos / f"many-{n:03d}.jpg").write_bytes(b"x" * n)
    project.sync()
    stalled = threading.Event()
    with stalling_proxy(ls.server.url, stall_on=3, stalled=stalled) as url:
        write_config(project.root, url, ls.id)
        child = subprocess.Popen(
            [sys.executable, "-m", "syncd", "push"],
            cwd=project.root,
            env={**os.environ, **project.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # The third import reached the server and was stored; its answer never comes.
            assert stalled.wait(120), "the push never sent a third import"
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(30)
    assert len(ls.tasks()) == 150, "three batches of 50 were stored"
    write_config(project.root, ls.server.url, ls.id)
    rerun = project.push_json()["results"][0]
    # The stalled batch is adopted, not imported twice.
    assert rerun["counts"]["imported"] == 306 - 150
    assert set(ls.by_key()) == live_keys(project) and len(ls.tasks()) == 306
    runs = json.loads(project.cli("runs", "ls", "--pushes", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "interrupted"]


def test_transient_server_failures_are_retried_without_duplicates(
    push_project: PushProject,
) -> None:
    project, ls = push_project, push_project.ls
    for n in range(120):
        (project.photos / f"more-{n:03d}.jpg").write_bytes(b"y" * n)
    project.sync()
    with throttling_proxy(ls.server.url, every=4) as (url, faults):
        write_config(project.root, url, ls.id)
        result = project.push_json()["results"][0]
    assert faults.injected >= 2 and result["status"] == "succeeded"
    assert set(ls.by_key()) == live_keys(project) and len(ls.tasks()) == 126


def test_dry_run_shows_the_plan_and_writes_nothing(push_project: PushProject) -> None:
    project = push_project
    project.sync()
    planned = project.push_json("--dry-run")["results"][0]
    assert planned["dry_run"] and planned["counts"]["imported"] == 6
    assert project.ls.tasks() == []
    text = project.cli("push", "--dry-run")
    assert text.returncode == 0 and "import" in text.stdout and "a.jpg" in text.stdout
    catalog = project.catalog()
    try:
        assert catalog.push_state("ls") is None and catalog.push_runs() == []
    finally:
        catalog.close()


def test_wrong_token_and_missing_project_fail_clearly_and_push_nothing(
    push_project: PushProject,
) -> None:
    project, ls = push_project, push_project.ls
    project.sync()
    project.env[TOKEN] = ls.server.token[:-4] + "AAAA"
    done = project.cli("push")
    assert done.returncode == 1
    assert "refused the personal access token (401)" in done.stderr
    assert "Traceback" not in done.stderr and ls.server.token not in done.stderr
    project.env[TOKEN] = "0123456789abcdef"
    legacy = project.cli("push")
    assert legacy.returncode == 1 and "legacy token" in legacy.stderr
    project.env[TOKEN] = ls.server.token
    write_config(project.root, ls.server.url, 999_999)
    missing = project.cli("push")
    assert missing.returncode == 1 and "project 999999 does not exist (404)" in missing.stderr
    assert ls.tasks() == []
    catalog = project.catalog()
    try:
        assert catalog.push_state("ls") is None
        assert [r.status for r in catalog.push_runs()] == [RunStatus.FAILED] * 3
    finally:
        catalog.close()


def test_a_request_too_large_fails_clearly_and_marks_nothing_pushed(
    push_project: PushProject,
) -> None:
    project, ls = push_project, push_project.ls
    project.sync()
    page = b"<html><body><h1>413 Request Entity Too Large</h1></body></html>"
    with refusing_proxy(ls.server.url, 413, page) as url:
        write_config(project.root, url, ls.id)
        done = project.cli("push")
    assert done.returncode == 1
    assert "too large (413); lower the target's `batch`" in done.stderr
    assert ls.tasks() == []
    catalog = project.catalog()
    try:
        state = catalog.push_state("ls")
        assert state is None or state.pushed_through == 0
        (run,) = catalog.push_runs()
        assert run.status is RunStatus.FAILED and run.counts.imported == 0
    finally:
        catalog.close()
    # Nothing was stored, so the next push (a smaller batch, or no proxy) imports it all.
    write_config(project.root, ls.server.url, ls.id)
    assert project.push_json()["results"][0]["counts"]["imported"] == 6


def test_an_s3_dataset_gets_storage_urls_label_studio_resolves(
    tmp_path: Path, ls_project: LsProject, moto_clean: Peer
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_clean.url)
    s3.create_bucket(Bucket="scans")
    for name in ("one", "two", "three"):
        s3.put_object(Bucket="scans", Key=f"cats/{name}.png", Body=name.encode())
    ls_project.api.call(
        "POST",
        "/api/storages/s3",
        {
            "project": ls_project.id,
            "title": "scans",
            "bucket": "scans",
            "s3_endpoint": moto_clean.url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
            "use_blob_urls": True,
            "presign": True,
        },
    )
    extra = f"  - {{name: aws, provider: s3, endpoint_url: '{moto_clean.url}'}}\n"
    write_config(tmp_path, ls_project.server.url, ls_project.id, extra=extra, drivers="[raw]")
    text = (tmp_path / "syncd.yaml").read_text()
    text = text.replace(
        "drivers:\n", "drivers:\n  - {name: raw, integration: aws, bucket: scans}\n", 1
    )
    (tmp_path / "syncd.yaml").write_text(text)
    env = {TOKEN: ls_project.server.token}
    project = PushProject(tmp_path, tmp_path / "photos", ls_project, env)
    project.sync()
    project.push_json()
    tasks = ls_project.by_key()
    assert {k: t.data["image"] for k, t in tasks.items()} == {
        f"cats/{n}.png": f"s3://scans/cats/{n}.png" for n in ("one", "two", "three")
    }
    # Label Studio resolves them through its storage (a presigned or proxied URL).
    resolved = ls_project.api.call(
        "GET", f"/api/tasks/{tasks['cats/one.png'].id}", query={"resolve_uri": "true"}
    )
    assert not resolved["data"]["image"].startswith("s3://")

    s3.delete_object(Bucket="scans", Key="cats/two.png")
    s3.put_object(Bucket="scans", Key="cats/one.png", Body=b"new bytes")
    project.sync()
    counts = project.push_json()["results"][0]["counts"]
    assert (counts["updated"], counts["deleted"], counts["imported"]) == (1, 1, 0)
    assert set(ls_project.by_key()) == {"cats/one.png", "cats/three.png"}


TOKEN = "SYNCD_TEST_LABEL_STUDIO_TOKEN"
