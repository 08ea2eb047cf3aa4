"""A small HTTP proxy for tests: every request goes to the upstream server unless a hook
answers it first (`before`) or keeps the upstream's answer back (`after`)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Upstream:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


#: Told the request (its handler and body); True when it answered it (or dropped it).
Before = Callable[["ProxyHandler", bytes | None], bool]
#: Told the upstream's answer; True when it is not to be relayed.
After = Callable[["ProxyHandler", Upstream], bool]


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    host = "127.0.0.1"
    port: int | None = None
    hooks: tuple[Before | None, After | None] = (None, None)

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drop(self) -> None:
        self.close_connection = True
        self.connection.close()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        before, after = self.hooks
        if before is not None and before(self, body):
            return
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        got = Upstream(response.status, response.getheaders(), response.read())
        conn.close()
        if after is not None and after(self, got):
            return
        self.send_response(got.status)
        sent = str(len(got.body))
        for name, value in got.headers:
            if name.lower() == "content-length" and self.command == "HEAD":
                sent = value  # a HEAD tells the object's size, with no body
            elif name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", sent)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(got.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _proxy


@contextmanager
def proxy(upstream: str, before: Before | None = None, after: After | None = None) -> Iterator[str]:
    """A proxy to `upstream` on a free loopback port, for the duration; its URL."""
    target = urlsplit(upstream)
    handler = type(
        "Handler",
        (ProxyHandler,),
        {"host": target.hostname or "127.0.0.1", "port": target.port, "hooks": (before, after)},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
