"""Servers that accept a connection and then do not really answer: one says nothing at all,
one trickles a byte at a time, so no single read ever times out."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hanging_server(mode: str) -> Iterator[str]:
    """An http://127.0.0.1:PORT endpoint; `mode` is "silent" or "trickle"."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    clients: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            if mode == "trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not stop.wait(0.2):
                if mode == "trickle":
                    conn.sendall(b" ")
        except OSError:
            pass

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            clients.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in clients:
            conn.close()
        listener.close()
        time.sleep(0.05)
