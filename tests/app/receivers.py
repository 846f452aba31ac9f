"""A loopback HTTP(S) receiver for notification tests: records every POST, checks the webhook
signature, and answers what the test tells it to (a receiver that is down answers 503)."""

from __future__ import annotations

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
