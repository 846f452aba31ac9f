"""The service the triggers call: it decides (``decisions``), then acts.

Acting on a complete batch: validate it cheaply -> claim the run in the ledger (conditional
create) -> submit through the backend under the deterministic job name -> record Submitted.

- An invalid batch is recorded as Rejected, naming the file; nothing is submitted or raised.
- A TransientError propagates so the host retries. The claim is released first, so the retry
  (which derives the same run id from the same content) takes it and submits under the same job
  name; the backends return the existing job for a repeat name, so no retry makes a second job.
- A claim is a lease (``claimed_at``): concurrent deliveries that find a fresh claim leave the
  submission to its holder. A claim whose holder died expires, and the next delivery, webhook
  repeat or timer sweep completes the submission.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import keys
from .backends.base import (
    BlobRef,
    DataAsset,
    LandingBatch,
    RunStatus,
    SubmitRequest,
)
from .batches import Batch, select_files
from .decisions import (
    BatchData,
    Ignore,
    RetrainRequest,
    Wait,
    decide_batch,
    http_run_id,
    locate,
)
from .errors import (
    InvalidBatchError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from .ledger import Ledger, RunRecord, iso, parse_time, utcnow
from .settings import Settings
from .storage import BlobStore
from .sweep import SweepSummary, sweep

if TYPE_CHECKING:
    from .backends.base import Backend

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=10)  # longer than any submission; a dead holder's claim expires


class UnknownDataError(NotFoundError):
    """The webhook named a batch that is not in the landing container."""

    field = "data"
    http_status = 404


class UnknownRunError(NotFoundError):
    """No run has this id."""

    field = "run_id"
    http_status = 404


class IncompleteBatchError(InvalidRequestError):
    """The webhook named a batch that is still missing files."""

    http_status = 409


class IdempotencyConflictError(InvalidRequestError):
    """An Idempotency-Key reused for a different request."""

    http_status = 422


@dataclass(frozen=True)
class Outcome:
    """What one blob event led to (logged by the trigger)."""

    action: str  # ignored | waiting | rejected | submitted | duplicate | in_progress | failed
    reason: str
    run_id: str | None = None

    def __str__(self) -> str:
        return f"{self.action}: {self.reason}" + (f" (run {self.run_id})" if self.run_id else "")


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
        self.ledger = Ledger(self.store, settings.runs_container)
        self.clock = clock
        self._backend = backend
        self._lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        """The backend named by RETRAIN_BACKEND, built (and its SDK imported) on first use."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    from .backends import get_backend

                    self._backend = get_backend(self.settings)
        return self._backend

    # --- blob trigger ----------------------------------------------------------------------------

    def handle_blob(self, blob_path: str) -> Outcome:
        """One blob event (``container/batch/file``): ignore, wait, reject or submit, once."""
        located = locate(blob_path, self.settings.landing_container)
        if isinstance(located, Ignore):
            return Outcome("ignored", located.reason)
        listing = self.store.list(located.container, located.prefix)
        decision = decide_batch(located.container, located.batch, listing)
        if isinstance(decision, Wait):
            return Outcome("waiting", f"{decision.source}: missing {', '.join(decision.missing)}")
        batch = decision.batch
        existing = self.ledger.get(batch.key)
        if existing is None:
            record = self._new_record(batch.key, batch, "blob")
            rejected = self._reject_if_invalid(record, batch)
            if rejected is not None:
                return Outcome("rejected", rejected.reason or "invalid batch", batch.key)
            record, acted = self._launch(record, stored=False)
        else:
            record, acted = self._launch(existing, stored=True)
        return self._outcome(record, acted)

    def _outcome(self, record: RunRecord, acted: bool) -> Outcome:
        where = f"{record.source} -> {record.job_name}"
        if record.status is RunStatus.FAILED and record.submitted_at is None:
            return Outcome("failed", record.reason or "submission refused", record.run_id)
        if acted:
            return Outcome("submitted", where, record.run_id)
        if record.submitted_at is None and not record.terminal:
            reason = f"{where}: another invocation is submitting it"
            return Outcome("in_progress", reason, record.run_id)
        return Outcome("duplicate", f"{where}: already {record.status.value}", record.run_id)

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
            return self._launch(existing, stored=True)
        if isinstance(data, BatchData) and batch is None:
            batch = self._find_batch(data)
        record = self._new_record(run_id, batch or source, trigger, request)
        if batch is not None and (rejected := self._reject_if_invalid(record, batch)):
            return rejected, True
        return self._launch(record, stored=False)

    def _find_batch(self, data: BatchData) -> Batch:
        container = self.settings.landing_container
        listing = self.store.list(container, f"{data.name}/")
        files, missing = select_files(data.name, listing)
        if not files:
            raise UnknownDataError(f"no batch {data.name!r} in container {container!r}")
        if missing:
            raise IncompleteBatchError(
                "data", f"batch {data.name!r} is missing {', '.join(missing)}"
            )
        return Batch(container, data.name, files)

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

    def list_runs(self, limit: int) -> list[RunRecord]:
        return self.ledger.recent(limit)

    # --- timer -----------------------------------------------------------------------------------

    def sweep(self) -> SweepSummary:
        """Record how active runs stand; complete submissions whose claim holder died."""
        return sweep(
            self.ledger,
            lambda: self.backend,
            concurrency=self.settings.sweep_concurrency,
            resume=self.resume,
            clock=self.clock,
        )

    def resume(self, record: RunRecord) -> bool:
        """Submit a claimed-but-unsubmitted run whose claim is free or expired. True if it did."""
        current, took = self.ledger.update(record.run_id, self._take_claim)
        if took:
            self._submit(current)
        return took

    # --- acting ----------------------------------------------------------------------------------

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
        from .validation import validate_batch

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

    def _take_claim(self, record: RunRecord) -> RunRecord | None:
        """The record with our claim on its submission, or None if it is not ours to take."""
        if record.terminal or record.submitted_at is not None:
            return None
        claimed = parse_time(record.claimed_at)
        now = self.clock()
        if claimed is not None and now - claimed < CLAIM_LEASE:
            return None
        return replace(record, claimed_at=iso(now))

    def _launch(self, record: RunRecord, *, stored: bool) -> tuple[RunRecord, bool]:
        """Claim the run (create its record, or take a free claim on the ``stored`` one) and
        submit it if we hold the claim. Returns (record, whether this call submitted)."""
        if record.terminal or record.submitted_at is not None:
            return record, False
        if not stored:
            claimed = replace(record, claimed_at=iso(self.clock()))
            if self.ledger.create(claimed):
                return self._submit(claimed), True
        current, took = self.ledger.update(record.run_id, self._take_claim)
        if not took:
            return current, False
        return self._submit(current), True

    def _submit(self, record: RunRecord) -> RunRecord:
        """Submit a run we hold the claim on and record the result."""
        claim = record.claimed_at
        try:
            request = self._submit_request(record)
            submission = self.backend.submit(request)
        except TransientError:
            self._release(record.run_id, claim)
            raise
        except PermanentError as exc:
            log.error("run %s: submission failed: %s", record.run_id, exc)
            reason = str(exc)

            def failed(r: RunRecord) -> RunRecord:
                return replace(
                    r,
                    status=RunStatus.FAILED,
                    reason=reason,
                    claimed_at=None,
                    ended_at=iso(self.clock()),
                    attempts=r.attempts + 1,
                )

            return self.ledger.update(record.run_id, failed)[0]
        # A job that was already over is recorded by the next sweep, with its metrics.
        status = RunStatus.SUBMITTED if submission.status.terminal else submission.status

        def submitted(r: RunRecord) -> RunRecord:
            return replace(
                r,
                status=status,
                raw_status=submission.status.value,
                job_name=submission.job_name,
                data_asset=submission.data_asset or r.data_asset,
                studio_url=submission.studio_url,
                run_dir=submission.run_dir,
                claimed_at=None,
                submitted_at=iso(self.clock()),
                attempts=r.attempts + 1,
            )

        done, _ = self.ledger.update(record.run_id, submitted)
        log.info(
            "run %s submitted as %s%s",
            record.run_id,
            submission.job_name,
            " (it already existed)" if submission.already_existed else "",
        )
        return done

    def _release(self, run_id: str, claim: str | None) -> None:
        """Give the claim back after a transient failure so the host's retry can take it."""

        def release(r: RunRecord) -> RunRecord | None:
            if r.claimed_at != claim or r.submitted_at is not None:
                return None
            return replace(r, claimed_at=None, attempts=r.attempts + 1)

        try:
            self.ledger.update(run_id, release)
        except Exception as exc:  # the lease expires anyway; the original error matters more
            log.warning("run %s: could not release the claim (%s)", run_id, exc)

    def _submit_request(self, record: RunRecord) -> SubmitRequest:
        """Everything the backend needs, rebuilt from the record alone (so a retry or the sweep
        submits exactly what the first attempt would have)."""
        versions = [(b["name"], b["etag"]) for b in record.blobs]
        if record.source.startswith("azureml:"):
            name, _, version = record.source.removeprefix("azureml:").partition(":")
            data: DataAsset | LandingBatch = DataAsset(name, version)
            data_version = version
        else:
            container, _, batch = record.source.partition("/")
            refs = tuple(BlobRef(n, self.store.url(container, n), e) for n, e in versions)
            data = LandingBatch(container, batch, refs)
            data_version = keys.data_version(keys.run_key(record.source, versions))
        job_name = record.job_name or keys.job_name(record.run_id)
        pipeline = self.settings.pipeline_settings(
            job_name=job_name,
            epochs=record.params.get("epochs"),
            experiment_name=record.params.get("experiment"),
            tags=(
                ("run_id", record.run_id),
                ("source", record.source),
                ("trigger", record.trigger),
            ),
        )
        return SubmitRequest(
            run_id=record.run_id,
            job_name=job_name,
            data=data,
            data_version=data_version,
            pipeline=pipeline,
        )


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
