"""An HTTP proxy in front of an emulator that answers some requests with 503 SlowDown, or
drops the connection, the way S3 does under load; it also records every request it saw."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Faults:
    """Every `every`-th request fails (0: none): alternately a 503 SlowDown and a dropped
    connection. `requests` holds (method, path) of every request, in arrival order."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.seen = 0
        self.injected = 0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def next_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            self.seen += 1
            self.requests.append((method, path))
            if not self.every or self.seen % self.every:
                return None
            self.injected += 1
            return "503" if self.injected % 2 else "reset"


@contextmanager
def throttling_proxy(upstream: str, every: int = 3) -> Iterator[tuple[str, Faults]]:
    target = urlsplit(upstream)
    faults = Faults(every)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = faults.next_fault(self.command, self.path)
            if fault == "503":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            if fault == "reset":
                self.close_connection = True
                self.connection.close()
                return
            conn = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=30
            )
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status)
            sent = str(len(data))
            for name, value in response.getheaders():
                if name.lower() == "content-length" and self.command == "HEAD":
                    sent = value  # a HEAD tells the object's size, with no body
                elif name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", sent)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()
