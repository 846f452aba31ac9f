"""Claims and submissions: how a run that should start gets started exactly once.

A claim is a lease on the run's submission (``claimed_at``): the caller that creates the record,
or takes a free or expired claim on it, submits; everyone else leaves it to them. Any failure
after the claim gives it back before it propagates, so the host's retry, or the next sweep tick
at the latest, takes it at once; only a holder that died outright leaves a claim to expire.
Submission is idempotent at the backend (the job name comes from the run key), so a retry never
makes a second job. Under ``MAX_ACTIVE_RUNS`` a new run is created Queued, its data version kept,
and started by admission (``admission``), oldest first, when a slot is free.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .. import keys
from ..backends.base import BlobRef, DataAsset, LandingBatch, RunStatus, SubmitRequest
from ..clock import iso, parse_time
from ..errors import ConfigurationError, PermanentError, TransientError
from ..ledger.records import RunRecord
from ..ledger.runs import Ledger, Stored
from ..settings import Settings
from ..storage import BlobStore

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..models.delivery import ModelDesk

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=10)  # longer than any submission; a dead holder's claim expires


@dataclass
class Launcher:
    """Claims runs in the ledger and submits them through the backend."""

    settings: Settings
    ledger: Ledger
    store: BlobStore
    backend: Callable[[], Backend]
    clock: Callable[[], datetime]
    models: Callable[[], ModelDesk | None] = lambda: None

    def launch(self, record: RunRecord, *, stored: bool) -> tuple[RunRecord, bool]:
        """Claim the run (create its record, or take a free claim on the ``stored`` one) and
        submit it if we hold the claim. Returns (record, whether this call submitted)."""
        if record.terminal or record.submitted_at is not None:
            return record, False
        if self.settings.max_active_runs and not stored:
            queued = self._create_claim(replace(record, status=RunStatus.QUEUED))
            if queued is not None:
                return self._admit(queued.record), True
        elif not stored:
            created = self._create_claim(replace(record, claimed_at=iso(self.clock())))
            if created is not None:
                return self._submit(created), True
        if stored and record.status is RunStatus.QUEUED:
            return self._admit(record), False
        current, took = self.ledger.write(record.run_id, self._take_claim)
        if not took and current.record.status is RunStatus.QUEUED:
            return self._admit(current.record), False
        if not took:
            return current.record, False
        return self._submit(current), True

    def _admit(self, queued: RunRecord) -> RunRecord:
        """Keep a queued run's data version, then start queued runs oldest first while slots
        are free; this run's record as it then stands. Its own submission error propagates
        (the host retries); a retry finds it queued and admits again."""
        from .admission import admit_queued

        self._keep_data(queued)
        outcome = admit_queued(self).get(queued.run_id)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome or self.ledger.get(queued.run_id) or queued

    def _keep_data(self, record: RunRecord) -> None:
        """Snapshot a queued landing batch now (idempotent), so it runs on the content it was
        keyed on whatever lands in the folder while it waits."""
        if record.source.startswith("azureml:") or not record.blobs:
            return
        from ..backends.snapshot import snapshot_batch

        data = self._landing(record)
        try:
            snapshot_batch(self.store, self.settings, data, keys.data_version(self._key(record)))
        except Exception as exc:  # the submission snapshots again, and records what it finds
            log.warning("run %s: data version not kept yet: %s", record.run_id, exc)

    def _landing(self, record: RunRecord) -> LandingBatch:
        container, _, batch = record.source.partition("/")
        versions = [(b["name"], b["etag"]) for b in record.blobs]
        refs = tuple(BlobRef(n, self.store.url(container, n), e) for n, e in versions)
        return LandingBatch(container, batch, refs)

    @staticmethod
    def _key(record: RunRecord) -> str:
        return keys.run_key(record.source, [(b["name"], b["etag"]) for b in record.blobs])

    def _create_claim(self, claimed: RunRecord) -> Stored | None:
        """Create the record holding our claim; the record as stored if it is ours. A create
        whose answer was lost after storage applied it (or whose SDK retry then found it
        existing) is still ours: the record carries this call's token."""
        token = uuid.uuid4().hex
        try:
            created = self.ledger.claim(claimed, token=token)
            if created is not None:
                return created
        except TransientError:
            if self.ledger.read(claimed.run_id) is None:  # it was not applied: the host retries
                raise
        return self.ledger.created_with(claimed.run_id, token)

    def _take_claim(self, record: RunRecord) -> RunRecord | None:
        """The record with our claim on its submission, or None if it is not ours to take."""
        if record.terminal or record.submitted_at is not None or record.status is RunStatus.QUEUED:
            return None  # a queued run is started by admission, in order
        claimed = parse_time(record.claimed_at)
        now = self.clock()
        if claimed is not None and now - claimed < CLAIM_LEASE:
            return None
        return replace(record, claimed_at=iso(now))

    def submit_claimed(self, claimed: Stored) -> RunRecord:
        """``_submit``, for admission."""
        return self._submit(claimed)

    def _submit(self, claimed: Stored) -> RunRecord:
        """Submit a run we hold the claim on and record the result (guarded by the ETag the
        claim left, so no read first). Any failure gives the claim back before it propagates,
        so a retry or the next sweep takes it at once."""
        try:
            return self._submit_claimed(claimed)
        except Exception:
            self._release(claimed.run_id, claimed.record.claimed_at)
            raise

    def _submit_claimed(self, claimed: Stored) -> RunRecord:
        record = claimed.record
        try:
            submission = self.backend().submit(self._submit_request(record))
        except ConfigurationError:
            raise  # the app's fault, not the run's: the host retries, then parks it for replay
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

            return self.ledger.write(record.run_id, failed, current=claimed)[0].record
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

        done = self.ledger.write(record.run_id, submitted, current=claimed)[0].record
        log.info(
            "run %s submitted as %s%s",
            record.run_id,
            submission.job_name,
            " (it already existed)" if submission.already_existed else "",
        )
        return done

    def _release(self, run_id: str, claim: str | None) -> None:
        """Give the claim back after a failure so the host's retry (or the sweep) can take it."""

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
        if record.source.startswith("azureml:"):
            name, _, version = record.source.removeprefix("azureml:").partition(":")
            data: DataAsset | LandingBatch = DataAsset(name, version)
            data_version = version
        else:
            data = self._landing(record)
            data_version = keys.data_version(self._key(record))
        job_name = record.job_name or keys.job_name(record.run_id)
        pipeline = self.settings.pipeline_settings(
            **self._champion(),
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

    def _champion(self) -> dict[str, str]:
        """The champion to score the new model against, on the same test data (none: a
        first run, or a backend without a registry)."""
        desk = self.models()
        champion = desk.book.champion() if desk else None
        if desk is None or champion is None:
            return {}
        return {
            "champion_model": desk.registry.model_input(champion.model, champion.version),
            "champion_version": champion.version,
        }

    def resume(self, record: RunRecord) -> bool:
        """Submit a claimed-but-unsubmitted run whose claim is free or expired. True if it did."""
        current, took = self.ledger.write(record.run_id, self._take_claim)
        if took:
            self._submit(current)
        return took
