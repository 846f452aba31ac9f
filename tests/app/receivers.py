"""A loopback HTTP(S) receiver for notification tests: records every POST, checks the webhook
signature, and answers what the test tells it to (a receiver that is down answers 503); and
receivers that hold a send (trickling, silent, never accepting)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

from retrain.notify import HEADER, verify


@dataclass
class Delivery:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes
    verified: bool | None  # the webhook receiver's verdict; None when it has no secret


@dataclass
class Receiver:
    """Records every POST; answers ``status`` (with ``headers``) after ``delay`` seconds."""

    secret: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    url: str = ""

    def record(self, path: str, headers: dict[str, str], raw: bytes) -> None:
        parts = urlsplit(path)
        verified = None
        if self.secret is not None:
            verified = verify(raw, self.secret, headers.get(HEADER))
        self.deliveries.append(Delivery(parts.path, parse_qs(parts.query), headers, raw, verified))

    @contextmanager
    def serve(self, ca: trustme.CA | None = None) -> Iterator[Receiver]:
        """Run on 127.0.0.1 (HTTPS when ``ca`` is given) until the block exits."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.record(self.path, dict(self.headers.items()), raw)
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    for name, value in receiver.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ca is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


TRICKLED = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Stalling:
    """A loopback receiver that holds every send: ``trickle`` answers 200 one byte every
    ``every`` seconds, ``silent`` reads the request and never answers, ``closed`` never accepts
    a connection (its backlog is full, so a connect waits). Each connection ends when the client
    leaves, or after ``bound_s`` at the most; ``most_at_once`` counts sends held together."""

    mode: str
    every: float = 0.25
    bound_s: float = 20.0
    url: str = ""
    requests: int = 0
    most_at_once: int = 0
    _open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def serve(self) -> Iterator[Stalling]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0 if self.mode == "closed" else 16)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        stop = threading.Event()
        held: list[socket.socket] = []
        if self.mode == "closed":  # one connection fills the backlog: later SYNs are dropped
            held.append(socket.create_connection(listener.getsockname()))
        else:
            listener.settimeout(0.05)
            threading.Thread(target=self._accept, args=(listener, stop), daemon=True).start()
        try:
            yield self
        finally:
            stop.set()
            for sock in held:
                sock.close()
            listener.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._hold, args=(conn, stop), daemon=True).start()

    def _hold(self, conn: socket.socket, stop: threading.Event) -> None:
        until = time.monotonic() + self.bound_s
        with self._lock:
            self.requests += 1
            self._open += 1
            self.most_at_once = max(self.most_at_once, self._open)
        conn.settimeout(0.05)
        try:
            sent = 0
            while not stop.is_set() and time.monotonic() < until:
                try:
                    if not conn.recv(65536):
                        return  # the client left
                except TimeoutError:
                    pass
                if self.mode == "trickle" and sent < len(TRICKLED):
                    conn.sendall(TRICKLED[sent : sent + 1])
                    sent += 1
                    time.sleep(self.every)
        except OSError:  # the client shut the connection
            return
        finally:
            with self._lock:
                self._open -= 1
            conn.close()
