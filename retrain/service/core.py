"""The service the triggers call: it decides (``decisions``), then acts.

Acting on a complete batch: wait until it has settled -> validate it cheaply -> claim the run in
the ledger (one conditional transaction) -> submit through the backend under the deterministic
job name -> record Submitted.

- A batch that changed less than ``BATCH_SETTLE_SECONDS`` ago is re-checked later through the
  settle queue (a message with a visibility delay), so a file-by-file re-upload runs once, on
  its final content; a table outage on the way defers the look through the same queue
  (``settling``).
- An invalid batch is recorded as Rejected, naming the file; nothing is submitted or raised.
- Any failure after the claim releases it before it propagates (TransientError: the host
  retries), so the retry, or the next sweep tick at the latest, takes it at once and submits
  under the same job name; the backends return the existing job for a repeat name, so no retry
  makes a second job. A claim is a lease (``claimed_at``): only a holder that died outright
  leaves one to expire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import keys
from ..backends.base import DataAsset, RunStatus, registry_of
from ..clock import iso, utcnow
from ..errors import InvalidBatchError, InvalidRequestError, NotFoundError
from ..landing.batches import FILE_NAMES, Batch
from ..landing.decisions import (
    BatchData,
    RetrainRequest,
    Settle,
    Wait,
    decide_batch,
    http_run_id,
)
from ..ledger.records import RunRecord
from ..ledger.runs import DamagedRun, Ledger
from ..models.delivery import ModelBook, ModelDesk
from ..notify.outbox import announcer, deliver, limits, sink_names
from ..serving.rollout import advance_rollouts, rollout_state
from ..settings import Settings
from ..storage import BlobStore, MessageQueue
from .admission import admit_queued, queue_positions
from .outcome import Outcome
from .settling import Settling
from .submission import Launcher
from .sweep import SweepSummary, sweep

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..notify.sinks import Sink

log = logging.getLogger(__name__)


class UnknownDataError(NotFoundError):
    """The webhook named a batch that is not in the landing container."""

    field = "data"
    http_status = 404


class UnknownRunError(NotFoundError):
    """No run has this id."""

    field = "run_id"
    http_status = 404


class IncompleteBatchError(InvalidRequestError):
    """The webhook named a batch that is still missing files, or still settling."""

    http_status = 409


class IdempotencyConflictError(InvalidRequestError):
    """An Idempotency-Key reused for a different request."""

    http_status = 422


class RetrainService:
    """Blob events, webhook calls and the sweep, over one store, ledger and backend."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: BlobStore | None = None,
        backend: Backend | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store or BlobStore(settings)
        self.ledger = Ledger(self.store.account, settings.runs_table, announcer(settings))
        self._sinks: dict[str, Sink] | None = None
        self.settle_queue = MessageQueue(self.store.account, settings.settle_queue)
        self.launcher = Launcher(
            settings, self.ledger, self.store, lambda: self.backend, clock, lambda: self.models
        )
        self.book = ModelBook(self.ledger, settings.model_name)
        self.clock = clock
        self._backend = backend
        self._lock = threading.Lock()
        self.settling = Settling(self)

    @property
    def backend(self) -> Backend:
        """The backend named by RETRAIN_BACKEND, built (and its SDK imported) on first use."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    from ..backends import get_backend

                    self._backend = get_backend(self.settings)
        return self._backend

    @property
    def models(self) -> ModelDesk | None:
        """Model delivery through the backend's registry (None: the backend has none)."""
        registry = registry_of(self.backend)
        if registry is None:
            return None
        return ModelDesk(registry, self.book, self.settings.promote_min_gain)

    # --- blob trigger ----------------------------------------------------------------------------

    def handle_blob(self, blob_path: str) -> Outcome:
        """One blob event (``container/batch/file``): ignore, wait, settle, reject or submit."""
        return self.settling.blob(blob_path)

    def handle_settle(self, message: str) -> Outcome:
        """A settle queue message: the delayed re-check of a batch that was still changing."""
        return self.settling.message(message)

    # --- webhook -------------------------------------------------------------------------------

    def start_run(self, request: RetrainRequest, trigger: str = "http") -> tuple[RunRecord, bool]:
        """Start (or find) the run a webhook call asks for. Returns (record, whether this call
        started it). A bad batch gives a Rejected record; unknown data raises UnknownDataError."""
        data = request.data
        if isinstance(data, DataAsset):
            source = data.uri
        else:
            source = f"{self.settings.landing_container}/{data.name}"
        batch = None
        if isinstance(data, BatchData) and request.idempotency_key is None:
            batch = self._find_batch(data)  # the content is part of the run key
        run_id = http_run_id(request, source, batch.versions if batch else [])
        existing = self.ledger.get(run_id)
        if existing is not None:  # a repeat: even if the batch has changed or gone since
            self._check_same_request(existing, request, source)
            return self.launcher.launch(existing, stored=True)
        if isinstance(data, BatchData) and batch is None:
            batch = self._find_batch(data)
        record = self._new_record(run_id, batch or source, trigger, request)
        if batch is not None and (rejected := self._reject_if_invalid(record, batch)):
            return rejected, True
        return self.launcher.launch(record, stored=False)

    def _find_batch(self, data: BatchData) -> Batch:
        container = self.settings.landing_container
        listing = self.store.list(container, f"{data.name}/")
        decision = decide_batch(
            container, data.name, listing, now=self.clock(), settle_s=self.settings.settle_seconds
        )
        if isinstance(decision, Wait) and len(decision.missing) == len(FILE_NAMES):
            raise UnknownDataError(f"no batch {data.name!r} in container {container!r}")
        if isinstance(decision, Wait):
            missing = ", ".join(decision.missing)
            raise IncompleteBatchError("data", f"batch {data.name!r} is missing {missing}")
        if isinstance(decision, Settle):
            raise IncompleteBatchError(
                "data",
                f"batch {data.name!r} changed {decision.age_s:.0f} s ago and runs only once "
                f"unchanged for {self.settings.settle_seconds} s: retry in {decision.delay_s} s",
            )
        return decision.batch

    @staticmethod
    def _check_same_request(record: RunRecord, request: RetrainRequest, source: str) -> None:
        if request.idempotency_key is None:
            return
        if record.source != source or record.params != request.params:
            raise IdempotencyConflictError(
                "Idempotency-Key", f"already used for a different request (run {record.run_id})"
            )

    def get_run(self, run_id: str) -> RunRecord:
        record = self.ledger.get(run_id)
        if record is None:
            raise UnknownRunError(f"no run {run_id}")
        return record

    def list_runs(self, limit: int) -> list[RunRecord | DamagedRun]:
        """The newest runs; one whose record is damaged is listed as such."""
        return self.ledger.recent(limit)

    def queue_positions(self) -> dict[str, int]:
        """Each queued run's place in the queue (1: the next to start): one range query."""
        return queue_positions(self.ledger.active())

    def list_models(self, limit: int) -> dict[str, Any]:
        """The registered versions of ``MODEL_NAME``, newest first, and the champion."""
        listing = self.book.listing(limit)
        if self.settings.serve_endpoint:  # where the champion is served, and its rollout
            listing["rollout"] = rollout_state(self.ledger.table, self.settings.serve_endpoint)
        return listing

    # --- timer -----------------------------------------------------------------------------------

    def sweep(self) -> SweepSummary:
        """Record how active runs stand; complete submissions whose claim holder died; then
        deliver the announcements that are due."""
        summary = sweep(
            self.ledger,
            lambda: self.backend,
            concurrency=self.settings.sweep_concurrency,
            resume=self.launcher.resume,
            clock=self.clock,
            models=lambda: self.models,
            budget_s=self.settings.sweep_budget_s,
            admit=lambda: admit_queued(self.launcher),
        )
        return self.follow_up(summary)

    def follow_up(self, summary: SweepSummary) -> SweepSummary:
        """After runs were recorded: the registry's champion tag, the champion's rollout onto
        SERVE_ENDPOINT (its events go out this tick), then the due announcements."""
        summary = self._sync_champion_tag(summary)
        rolled = advance_rollouts(self)
        summary = replace(summary, deployed=rolled.deployed, deploy_failed=rolled.failed)
        if not sink_names(self.settings):
            return summary
        delivery = deliver(self.ledger, self.sinks, self.clock(), limits(self.settings))
        for level, line in delivery.lines:
            log.log(level, "%s", line)
        return replace(
            summary,
            notified=delivery.sent,
            notify_retrying=delivery.retrying,
            notify_dead=delivery.dead,
            notify_deferred=delivery.deferred,
        )

    def _sync_champion_tag(self, summary: SweepSummary) -> SweepSummary:
        """Bring the registry's champion tag up to the ledger's champion (it may have failed
        right after a promotion). A tick with no active run reads the champion row first, so an
        idle tick builds no backend."""
        if summary.active == 0:
            champion = self.book.champion()
            if champion is None or not champion.needs_tag:
                return summary
        desk = self.models
        if desk is None:
            return summary
        try:
            done = desk.sync()
        except Exception as exc:  # the next tick tries again
            log.warning("sweep: models: champion tag: %s: %s", type(exc).__name__, exc)
            return replace(summary, errors=summary.errors + 1)
        if done is None:
            return summary
        level, line = done
        log.log(level, "sweep: %s", line)
        return replace(summary, errors=summary.errors + 1) if level >= logging.ERROR else summary

    @property
    def sinks(self) -> dict[str, Sink]:
        """The notification sinks the settings configure, built on first use."""
        if self._sinks is None:
            from ..notify.sinks import sinks_from_settings

            self._sinks = {sink.name: sink for sink in sinks_from_settings(self.settings)}
        return self._sinks

    # --- records ----------------------------------------------------------------------------------

    def _new_record(
        self,
        run_id: str,
        data: Batch | str,
        trigger: str,
        request: RetrainRequest | None = None,
    ) -> RunRecord:
        blobs, data_asset = [], None
        if isinstance(data, Batch):
            source = data.source
            blobs = [{"name": name, "etag": etag} for name, etag in data.versions]
        else:
            source = data
            data_asset = data.removeprefix("azureml:")
        return RunRecord(
            run_id=run_id,
            source=source,
            trigger=trigger,
            status=RunStatus.SUBMITTED,
            created_at=iso(self.clock()),
            job_name=keys.job_name(run_id),
            data_asset=data_asset,
            blobs=blobs,
            params=request.params if request else {},
            idempotency_key=request.idempotency_key if request else None,
        )

    def _reject_if_invalid(self, record: RunRecord, batch: Batch) -> RunRecord | None:
        """Validate ``batch`` cheaply; if it is bad, the Rejected record (written once)."""
        from ..landing.validation import validate_batch

        try:
            validate_batch(self.store, batch)
        except InvalidBatchError as exc:
            return self._reject(record, exc)
        return None

    def _reject(self, record: RunRecord, error: InvalidBatchError) -> RunRecord:
        """Record the batch as Rejected (once), naming the file."""
        now = iso(self.clock())
        rejected = replace(
            record, status=RunStatus.REJECTED, reason=str(error), job_name=None, ended_at=now
        )
        if not self.ledger.create(rejected):
            return self.ledger.get(record.run_id) or rejected
        log.warning("run %s rejected: %s", record.run_id, error)
        return rejected


# --- the process-wide service the Function App uses -----------------------------------------------

_service: RetrainService | None = None
_service_lock = threading.Lock()


def get_service() -> RetrainService:
    """The service for this process, built from app settings on first use."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = RetrainService(Settings.from_env())
    return _service


def set_service(service: RetrainService | None) -> None:
    """Replace the process-wide service (tests, the demo); None rebuilds it from settings."""
    global _service
    with _service_lock:
        _service = service
