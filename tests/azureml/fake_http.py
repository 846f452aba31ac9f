"""The transport under the Azure ML fake: an HTTPS server on 127.0.0.1 that records every
request, injects faults, relays storage requests to Azurite, and a token the SDK accepts.

Kept apart from ``fake_azureml`` (the service's routes and state) so each reads on its own.
A fault answers as its service would: Azure Resource Manager's JSON error for the REST API,
the storage service's XML error and ``x-ms-error-code`` header for a relayed storage request.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import trustme
from azure.core.credentials import AccessToken

TENANT = "11111111-1111-1111-1111-111111111111"
STORAGE_PREFIX = "/devstoreaccount1/"  # requests under it are the workspace's storage
FAULT_CODES = {  # the error codes Azure Resource Manager answers with
    401: "InvalidAuthenticationToken",
    403: "AuthorizationFailed",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
STORAGE_FAULTS = {  # the storage service's (code, message) for a status
    409: ("BlobAlreadyExists", "The specified blob already exists."),
    500: ("InternalError", "The server encountered an internal error. Please retry the request."),
    503: ("ServerBusy", "The server is currently unable to receive requests. Please retry."),
}


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it (path without the query; body parsed when JSON), with
    the bytes of its body and of the answer's (headers not counted)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    workspace_path: str = ""
    sent: int = 0
    received: int = 0

    @property
    def tail(self) -> str:
        """The path after the workspace prefix, e.g. ``/jobs/fashion-retrain-x``."""
        return self.path.removeprefix(self.workspace_path)


@dataclass
class Fault:
    """Answer the next ``remaining`` requests whose path matches with ``status``."""

    pattern: re.Pattern[str]
    method: str | None
    status: int
    remaining: int

    def takes(self, method: str, path: str) -> bool:
        if self.remaining and self.method in (None, method) and self.pattern.search(path):
            self.remaining -= 1
            return True
        return False


class Service(Protocol):
    """What the handler needs of the fake service behind it."""

    requests: list[Recorded]
    storage_endpoint: str
    workspace_path: str

    def take_fault(self, method: str, path: str) -> Fault | None: ...

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]: ...


class FakeCredential:
    """A TokenCredential whose token is an unsigned JWT for Azure ML (``aud`` is checked)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        expires = int(time.time()) + 3600
        claims = {"aud": "https://ml.azure.com", "tid": TENANT, "oid": "fake-oid", "exp": expires}
        token = ".".join(_b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims)) + "."
        return AccessToken(token, expires)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def error(code: str, message: str, *inner: str) -> dict[str, Any]:
    """Azure's JSON error body; ``inner`` codes nest as ``innerError``, outermost first."""
    body: dict[str, Any] = {"code": code, "message": message}
    node = body
    for inner_code in inner:
        node["innerError"] = {"code": inner_code}
        node = node["innerError"]
    return {"error": body}


def not_found(method: str, path: str) -> tuple[int, Any]:
    return 404, error("NotFound", f"fake Azure ML: no such resource or route: {method} {path}")


@contextmanager
def serve(service: Service, ca: trustme.CA) -> Iterator[str]:
    """Serve ``service`` over HTTPS on 127.0.0.1 (cert from ``ca``); yields its base URL."""
    handler = type("Handler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    service: Service
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm meets the
        # client's delayed ACK and every answer waits ~40 ms, which no real service does.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith(STORAGE_PREFIX):
            return self._storage(url.path, raw)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        fault = self.service.take_fault(self.command, url.path)
        if fault is not None:
            code = FAULT_CODES.get(fault.status, "FakeFault")
            status, payload = fault.status, error(code, f"fake fault {fault.status} ({code})")
        else:
            try:
                status, payload = self.service.handle(self.command, url.path, query, body)
            except Exception as exc:  # a bug in the fake: say so, loudly, as a 500
                status, payload = 500, error("FakeBug", f"{type(exc).__name__}: {exc}")
        data = json.dumps(payload).encode()
        self._record(url.path, query, body, status, len(raw), len(data))
        self._answer(status, data, {"Content-Type": "application/json"})

    def _storage(self, path: str, body: bytes) -> None:
        """Relay a storage request to Azurite byte for byte, unless a fault answers it."""
        fault = self.service.take_fault(self.command, path)
        if fault is not None:
            code, message = STORAGE_FAULTS.get(fault.status, ("FakeFault", "fake fault"))
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><Error>'
                f"<Code>{code}</Code><Message>{message}</Message></Error>"
            )
            self._record(path, {}, None, fault.status, len(body), len(xml))
            headers = {"Content-Type": "application/xml", "x-ms-error-code": code}
            return self._answer(fault.status, xml.encode(), headers)
        target = urlsplit(self.service.storage_endpoint)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self._record(path, {}, None, response.status, len(body), len(data))
        passed = {
            key: value
            for key, value in response.getheaders()
            if key.lower() not in ("transfer-encoding", "connection", "content-length")
        }
        self._answer(response.status, data, passed)

    def _record(
        self, path: str, query: dict[str, str], body: Any, status: int, sent: int, received: int
    ) -> None:
        workspace = self.service.workspace_path
        recorded = Recorded(self.command, path, query, body, status, workspace, sent, received)
        self.service.requests.append(recorded)

    def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
        pass
