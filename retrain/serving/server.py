"""The local scoring server: the champion of the local registry, on 127.0.0.1.

::

    POST /score    a batch of images (JSON) or one PNG/JPEG -> predictions (answer.py)
    GET  /healthz  {"status": "ok", "model": {name, version}, ...}: the version it serves
    GET  /         a short usage page (text)

``http.server.ThreadingHTTPServer`` answers each connection in its own thread. Each request
reads the served model once, from one reference, and uses that model to the end, so a swap can
never hand a request half of one model and half of another. A watcher thread polls the
registry's champion tag; a new champion is loaded *beside* the old one (the old one answers
meanwhile), then the reference is replaced, in one assignment, and the swap is logged. A
request in flight finishes on the model it started with; none fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .answer import answer
from .champion import ChampionFolder
from .payload import Limits, body_too_large
from .scoring import LoadedModel, ModelLoadError, load_model

log = logging.getLogger(__name__)

DRAIN_LIMIT = 64 * 1024 * 1024  # a too-large body up to this is read and dropped, so the
# client gets its 400 rather than a reset connection; a larger one is cut off

USAGE = """\
Fashion-MNIST classifier: {label} (the champion of the local registry)

POST /score    Content-Type: application/json  {{"images": [IMAGE, ...]}}
               each IMAGE 28 rows of 28 integers, or 784 integers, 0-255 (light on black);
               at most {max_images} images (SERVE_MAX_IMAGES), {max_body} bytes a body
               or Content-Type: image/png | image/jpeg, one picture of any size: made 28x28
               gray as `python -m retrain data pack` does (convert("L"), LANCZOS resize)
               -> {{"model": {{"name", "version"}}, "count", "predictions": [{{"label",
                   "class", "probabilities"}}]}}; a bad request gets 400 {{"error": "..."}}
GET  /healthz  the model version served
GET  /         this page

curl -s localhost:{port}/score -H 'Content-Type: image/png' --data-binary @shirt.png
"""


class ModelSlot:
    """The model being served: one reference, read once per request, replaced whole."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self.swaps = 0

    @property
    def model(self) -> LoadedModel:
        return self._model

    def swap(self, model: LoadedModel) -> LoadedModel:
        """Serve ``model`` from now on; return the one it replaced (requests that hold it finish
        on it)."""
        old, self._model = self._model, model  # one assignment: atomic for every reader
        self.swaps += 1
        return old


class ScoringServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its model slot and limits."""

    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True

    def __init__(self, address: tuple[str, int], slot: ModelSlot, limits: Limits) -> None:
        self.slot = slot
        self.limits = limits
        super().__init__(address, ScoringHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class ScoringHandler(BaseHTTPRequestHandler):
    server: ScoringServer
    server_version = "retrain-serve"
    timeout = 30  # seconds a client may take to send its request

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        model = self.server.slot.model
        if path == "/healthz":
            self._json(
                200,
                {
                    "status": "ok",
                    "model": {"name": model.name, "version": model.version},
                    "swaps": self.server.slot.swaps,
                },
            )
        elif path == "/":
            limits = self.server.limits
            page = USAGE.format(
                label=model.label,
                max_images=limits.max_images,
                max_body=limits.max_body,
                port=self.server.port,
            )
            self._send(200, page.encode(), "text/plain; charset=utf-8")
        else:
            self._json(404, {"error": f"no such page: GET {path} (see GET /)"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/score":
            self._discard_body()
            self._json(404, {"error": f"no such route: POST {path} (POST /score; see GET /)"})
            return
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            self._json(400, {"error": "send the body with a Content-Length, not chunked"})
            return
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self._json(400, {"error": "Content-Length: required, a number of bytes"})
            return
        if length > limits.max_body:
            self._discard(length)
            self._json(400, {"error": body_too_large(length, limits)})
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self._json(400, {"error": f"body: {len(body)} bytes arrived of {length} announced"})
            return
        model = self.server.slot.model  # read once: this request ends on this model
        status, document = answer(model, body, self.headers.get("Content-Type"), limits)
        if status == 400:
            log.info("serve: 400 POST /score: %s", document["error"])
        self._json(status, document)

    def do_PUT(self) -> None:
        self._method_not_allowed()

    do_DELETE = do_PATCH = do_PUT

    def _method_not_allowed(self) -> None:
        self._discard_body()
        self._json(405, {"error": f"{self.command} is not served: POST /score, GET /healthz"})

    def _discard_body(self) -> None:
        try:
            self._discard(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self.close_connection = True

    def _discard(self, length: int) -> None:
        """Read and drop a body we refuse, so the client reads our answer instead of a reset."""
        self.close_connection = True
        left = min(length, DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    def _json(self, status: int, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, a header too long) as the
        same one-line JSON errors, never its HTML page."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # a request line it could not parse: answer with a
        # status line and headers all the same
        why = message or HTTPStatus(code).phrase
        with contextlib.suppress(OSError):  # the client has gone
            self._json(code, {"error": f"{why}".splitlines()[0][:200]})

    def log_message(self, format: str, *args: Any) -> None:
        """The access log, at DEBUG: one line per request would drown the swaps."""
        log.debug("serve: %s %s", self.address_string(), format % args)


Finder = Callable[[], ChampionFolder | None]  # the champion now, or None


class ChampionWatcher(threading.Thread):
    """Polls ``find`` every ``interval`` seconds; loads a new champion beside the served one and
    swaps it in. A version that fails to load is logged once and not retried until another
    version is champion (the served model goes on answering)."""

    def __init__(
        self,
        slot: ModelSlot,
        find: Finder,
        interval: float,
        on_swap: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        super().__init__(name="champion-watcher", daemon=True)
        self.slot = slot
        self.on_swap = on_swap
        self.find = find
        self.interval = interval
        self.stopped = threading.Event()
        self.failed: str | None = None
        self.last_swap_seconds: float | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.check()
            except Exception:  # a bug must not stop the server from following promotions
                log.exception("serve: checking the champion failed; trying again")

    def check(self) -> bool:
        """One poll; True if it swapped."""
        found = self.find()
        current = self.slot.model
        if found is None or found.version in (current.version, self.failed):
            return False
        name, version, folder = found.name, found.version, found.folder
        started = time.perf_counter()
        try:
            model = load_model(folder, name, version)
        except ModelLoadError as exc:
            self.failed = version
            log.error("serve: champion %s:%s cannot be served (%s); still serving %s",
                      name, version, exc, current.label)  # fmt: skip
            return False
        old = self.slot.swap(model)
        self.last_swap_seconds = time.perf_counter() - started
        self.failed = None
        if self.on_swap is not None:
            self.on_swap(model)
        log.info("serve: swapped %s -> %s (loaded in %.2f s; requests in flight finish on %s)",
                 old.label, model.label, self.last_swap_seconds, old.version)  # fmt: skip
        return True

    def stop(self) -> None:
        self.stopped.set()
