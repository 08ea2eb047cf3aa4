"""Push benchmark against a real Label Studio server: a first push of N items, then a 1%
change (half changed, a quarter deleted, a quarter added), with tasks/s and the HTTP requests
each made; beside them, the same N tasks imported with Label Studio's own SDK in one call.

    .venv/bin/python -m benchmarks.bench_push
    .venv/bin/python -m benchmarks.bench_push --items 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from syncd import logs
from syncd.catalog import open_catalog
from syncd.config import load_config
from syncd.project import Project
from syncd.push.labelstudio import LabelStudio
from syncd.push.push import push
from tests.peers import PEERS, label_studio, label_studio_token
from tests.push.conftest import IMAGE_CONFIG, TOKEN_ENV, write_config

SDK_IMPORT = """
import json, sys, time
from label_studio_sdk import LabelStudio
url, token, project, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tasks = [{"data": {"image": f"s3://bucket/photos/{n:06d}.jpg"}} for n in range(count)]
client = LabelStudio(base_url=url, api_key=token)
start = time.perf_counter()
answer = client.projects.import_tasks(id=project, request=tasks, return_task_ids=True)
print(json.dumps({"seconds": time.perf_counter() - start, "tasks": len(answer.task_ids or [])}))
"""


def sync(root: Path) -> None:
    project = Project(load_config(str(root / "syncd.yaml")))
    try:
        project.sync()
    finally:
        project.close()


def change(photos: Path, first: int, count: int, round_: int) -> None:
    """Half of `count` files from `first` changed, a quarter deleted, a quarter added."""
    later = time.time() + 10
    for n in range(first, first + count // 2):
        path = photos / f"{n:06d}.jpg"
        path.write_bytes(b"changed")
        os.utime(path, (later, later))
    for n in range(first + count // 2, first + count // 2 + count // 4):
        (photos / f"{n:06d}.jpg").unlink()
    for n in range(count // 4):
        (photos / f"new-{round_}-{n:06d}.jpg").write_bytes(b"new")


def timed_push(root: Path, client: LabelStudio, verify: bool) -> tuple[float, dict[str, int]]:
    config = load_config(str(root / "syncd.yaml"))
    catalog = open_catalog(config.catalog_url())
    client.writes = client.requests = 0
    try:
        start = time.perf_counter()
        result = push(config, catalog, config.targets[0], verify=verify, client=client)
        seconds = time.perf_counter() - start
    finally:
        catalog.close()
    return seconds, result.counts.as_dict() | {"requests": client.requests}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    logs.configure("warning")
    count = args.items
    with tempfile.TemporaryDirectory(prefix="syncd-bench-push-") as tmp:
        base = Path(tmp)
        peer = label_studio(base / "ls", log_dir=base)
        try:
            token = label_studio_token(peer)
            os.environ[TOKEN_ENV] = token
            admin = LabelStudio(peer.url, token, 0)

            def new_project(title: str) -> int:
                made = admin.call(
                    "POST", "/api/projects", {"title": title, "label_config": IMAGE_CONFIG}
                )
                return int(made["id"])

            rows: list[tuple[str, str, float, int, int, int]] = []
            root = base / "syncd"
            photos = root / "photos"
            photos.mkdir(parents=True)
            for n in range(count):
                (photos / f"{n:06d}.jpg").write_bytes(b"x")
            project_id = new_project("syncd first push")
            write_config(root, peer.url, project_id)
            text = (root / "syncd.yaml").read_text().replace("batch: 50", "batch: 1000")
            (root / "syncd.yaml").write_text(text)
            sync(root)
            client = LabelStudio(peer.url, token, project_id)
            seconds, counts = timed_push(root, client, verify=True)
            rows.append(
                (
                    "syncd push, first",
                    f"{counts['imported']:,} imported",
                    seconds,
                    counts["imported"],
                    counts["requests"],
                    counts["writes"],
                )
            )

            changed = max(4, count // 100)
            for round_, verify in enumerate((False, True)):
                change(photos, round_ * changed, changed, round_)
                sync(root)
                seconds, counts = timed_push(root, client, verify=verify)
                touched = counts["imported"] + counts["updated"] + counts["deleted"]
                label = "1% change, " + ("with project check" if verify else "change feed")
                rows.append(
                    (
                        label,
                        f"+{counts['imported']} ~{counts['updated']} -{counts['deleted']}",
                        seconds,
                        touched,
                        counts["requests"],
                        counts["writes"],
                    )
                )
            seconds, counts = timed_push(root, client, verify=True)
            rows.append(("no-op push, project check", "nothing", seconds, 0, counts["requests"], 0))

            sdk_project = new_project("sdk import")
            python = PEERS / "labelstudio" / "bin" / "python"
            done = subprocess.run(
                [str(python), "-c", SDK_IMPORT, peer.url, token, str(sdk_project), str(count)],
                capture_output=True,
                text=True,
                check=True,
            )
            sdk = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                (
                    "label-studio-sdk import_tasks",
                    f"{sdk['tasks']:,} imported",
                    sdk["seconds"],
                    sdk["tasks"],
                    1,
                    1,
                )
            )
        finally:
            peer.stop()
    print(f"\nLabel Studio 1.23 push, {count:,} items (SQLite catalog, Label Studio on SQLite)\n")
    print(f"{'case':34} {'result':>18} {'seconds':>8} {'tasks/s':>9} {'requests':>9} {'writes':>7}")
    for case, result, secs, tasks, requests, writes in rows:
        rate = f"{tasks / secs:,.0f}" if tasks and secs else "-"
        print(f"{case:34} {result:>18} {secs:8.2f} {rate:>9} {requests:>9} {writes:>7}")


if __name__ == "__main__":
    main()
