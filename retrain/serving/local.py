"""``python -m retrain serve``: the local registry's champion, served until Ctrl-C.

``LocalServing`` puts the parts of ``server`` together: the champion found in
``LOCAL_MODELS_DIR`` (``champion``), loaded, in a slot; the HTTP server; the watcher that swaps
in each new champion. Tests and the benchmark use it as a context manager (port 0: any free
port); the command line runs it in the foreground, where SIGINT and SIGTERM stop it cleanly:
no new connection is accepted, requests in flight finish, then it returns.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

from ..errors import ConfigurationError
from .champion import ChampionFolder, find_champion
from .payload import Limits
from .scoring import LoadedModel, ModelLoadError, load_model
from .server import ChampionWatcher, ModelSlot, ScoringServer
from .where import forget_serving, record_serving

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # loopback only: this server has no authentication


class LocalServing:
    """The champion of ``models_dir`` served on ``HOST:port``, following promotions."""

    def __init__(
        self,
        models_dir: Path,
        model_name: str,
        *,
        port: int = 8080,
        poll_seconds: float = 2.0,
        limits: Limits | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.model_name = model_name
        champion = self.find()
        if champion is None:
            raise ConfigurationError(
                f"LOCAL_MODELS_DIR: no champion of {model_name} in {self.models_dir}; models "
                "are registered and promoted by the Function App's sweep (local backend); after "
                "make demo, LOCAL_MODELS_DIR=.demo/models serves the demo's champion"
            )
        try:
            model = load_model(champion.folder, champion.name, champion.version)
        except ModelLoadError as exc:
            raise ConfigurationError(f"champion {model_name}:{champion.version}: {exc}") from None
        self.slot = ModelSlot(model)
        try:
            self.server = ScoringServer((HOST, port), self.slot, limits or Limits())
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ConfigurationError(f"--port {port}: cannot listen on {HOST} ({why})") from None
        self.watcher = ChampionWatcher(self.slot, self.find, poll_seconds, self._record)
        self._thread: threading.Thread | None = None

    def _record(self, model: LoadedModel) -> None:
        """Say where this server is and what it serves (``python -m retrain models`` reads it)."""
        record_serving(self.models_dir, self.model_name, model.version, self.url, self.server.port)

    def _forget(self) -> None:
        forget_serving(self.models_dir, self.model_name, self.server.port)

    def find(self) -> ChampionFolder | None:
        return find_champion(self.models_dir, self.model_name)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}"

    def banner(self) -> str:
        return (
            f"serving {self.slot.model.label} on {self.url} (POST /score, GET /healthz, GET /); "
            f"following the champion in {self.models_dir}"
        )

    # --- in the background (tests, benchmark, the demo's sample) --------------------------------

    def start(self) -> LocalServing:
        self._record(self.slot.model)
        self.watcher.start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let the requests in flight finish, release the port."""
        self.watcher.stop()
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()  # joins the request threads (block_on_close)
        self._forget()

    def __enter__(self) -> LocalServing:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # --- in the foreground (the command line) ---------------------------------------------------

    def serve_until_signal(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM, then stop cleanly."""

        def on_signal(number: int, frame: FrameType | None) -> None:
            log.info("serve: %s: stopping", signal.Signals(number).name)
            # shutdown() waits for serve_forever(), which runs in this very thread: ask from
            # another one
            threading.Thread(target=self.server.shutdown, daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._record(self.slot.model)
        self.watcher.start()
        try:
            self.server.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.watcher.stop()
            self.server.server_close()
            self._forget()
        log.info("serve: stopped")
