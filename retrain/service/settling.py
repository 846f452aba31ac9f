"""Blob events and settle re-checks: a complete batch runs once none of its files changed for
``BATCH_SETTLE_SECONDS``, and no storage outage on the way loses it.

- **One re-check per settling batch.** A batch still changing is looked at again through the
  settle queue (a message with a visibility delay). The ledger's settle row names the live
  re-check (``ledger/settle_rows.py``): a blob event that finds one only touches the row, and a
  re-check whose token is not the row's drops; the live one re-queues itself until the batch
  has settled, then releases the row and acts. Its guarded writes fail if an event touched the
  row after it looked, so it looks again and never acts on content older than the last event.
- **A table outage loses no batch.** The settle queue and the blobs still work when the runs
  table does not, so a blob event or re-check that meets a ``TransientError`` goes back on the
  settle queue (``deferred``), after 2 s, doubling up to 5 minutes, carrying when the trouble
  began. Only after ``MAX_DEFER`` does it raise, for the host to retry and then park in
  ``<queue>-poison``, or if the queue fails too. Once the run's record exists, trouble is
  raised as before: the host retries, and the sweep finds the record at the latest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..backends.base import RunStatus
from ..errors import TransientError
from ..landing.decisions import Ignore, Settle, Wait, decide_batch, locate
from ..landing.recheck import Recheck, new_token, parse_settle_message, settle_message
from ..ledger.settle_rows import Hold, SettleRows
from .outcome import Outcome

if TYPE_CHECKING:
    from ..landing.batches import Batch
    from ..ledger.records import RunRecord
    from .core import RetrainService

GRACE = timedelta(minutes=2)  # past its delay: the host's polling and its retries of a failure
RETRY_MAX_S = 300  # the longest wait between deferred looks
MAX_DEFER = timedelta(hours=24)  # deferred this long: raise, for the poison queue
LOOKS = 4  # races lost to other writers of the settle row before deferring


class _Recorded(Exception):
    """Carries a TransientError past the deferral: the run's record exists already."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(str(error))
        self.error = error


class Settling:
    """The blob trigger's and the settle queue's side of the service."""

    retry_base_s = 2  # the first deferred look's wait; doubled for each one after

    def __init__(self, service: RetrainService) -> None:
        self.svc = service
        self.rows = SettleRows(service.ledger.table)

    def blob(self, blob_path: str) -> Outcome:
        """One blob event (``container/batch/file``): ignore, wait, settle, reject or submit."""
        located = locate(blob_path, self.svc.settings.landing_container)
        if isinstance(located, Ignore):
            return Outcome("ignored", located.reason)
        return self._deferring(Recheck(located.container, located.batch), event=True)

    def message(self, text: str) -> Outcome:
        """A settle queue message: the delayed re-check of a batch."""
        recheck = parse_settle_message(text, self.svc.settings.landing_container)
        return self._deferring(recheck, event=False)

    def _deferring(self, recheck: Recheck, *, event: bool) -> Outcome:
        try:
            for _ in range(LOOKS):
                outcome = self._look(recheck, event)
                if outcome is not None:
                    return outcome
            raise TransientError(f"{recheck.source}: its settle row kept changing")
        except _Recorded as recorded:
            raise recorded.error from None
        except TransientError as exc:
            return self._later(recheck, exc)

    def _look(self, recheck: Recheck, event: bool) -> Outcome | None:
        """Look at the batch once; None: a guarded write lost a race, look again."""
        svc = self.svc
        hold = None if event else self.rows.get(recheck.source)  # read before the listing
        if hold is not None and hold.token != recheck.token and hold.live(svc.clock()):
            return Outcome("superseded", f"{recheck.source}: another re-check of it is pending")
        listing = svc.store.list(recheck.container, f"{recheck.batch}/")
        decision = decide_batch(
            recheck.container,
            recheck.batch,
            listing,
            now=svc.clock(),
            settle_s=svc.settings.settle_seconds,
        )
        existing = None
        if not isinstance(decision, Wait):
            existing = svc.ledger.get(decision.batch.key)
            if existing is None and isinstance(decision, Settle):
                return self._settling(recheck, decision, hold, event)
        if hold is not None and not self.rows.release(hold):
            return None  # an event touched the row after this look
        if isinstance(decision, Wait):
            return Outcome("waiting", f"{decision.source}: missing {', '.join(decision.missing)}")
        if existing is not None:
            return self._launch(existing, stored=True)
        return self._start(decision.batch)

    def _settling(
        self, recheck: Recheck, decision: Settle, hold: Hold | None, event: bool
    ) -> Outcome | None:
        """Keep one live re-check for a batch still changing."""
        batch, now = decision.batch, self.svc.clock()
        changed = f"{batch.source}: changed {decision.age_s:.0f} s ago"
        until = now + timedelta(seconds=decision.delay_s) + GRACE
        if event:
            hold = self.rows.get(batch.source)
            if hold is not None and hold.live(now):
                if not self.rows.bump(hold, now):
                    return None
                pending = f"{changed}; the pending re-check looks again"
                return Outcome("settling", pending, batch.key)
            token = new_token()  # sent first: a row names only a re-check that exists
            self._send(batch.source, token, decision.delay_s)
            self.rows.hold(batch.source, token, until, over=hold)  # lost: another one is live
        else:
            token = recheck.token or new_token()
            if not self.rows.hold(batch.source, token, until, over=hold):
                return None
            self._send(batch.source, token, decision.delay_s)
        return Outcome("settling", f"{changed}; re-checking in {decision.delay_s} s", batch.key)

    def _send(self, source: str, token: str, delay_s: int) -> None:
        self.svc.settle_queue.send(settle_message(source, token), delay_s)

    def _later(self, recheck: Recheck, error: TransientError) -> Outcome:
        """Look again later through the settle queue, which works while the table does not."""
        now: datetime = self.svc.clock()
        since = recheck.since or now
        if now - since > MAX_DEFER:
            raise error
        tries = recheck.tries + 1
        delay = min(RETRY_MAX_S, self.retry_base_s * 2 ** min(tries - 1, 16))
        token = recheck.token or new_token()
        try:
            self.svc.settle_queue.send(settle_message(recheck.source, token, tries, since), delay)
        except TransientError:
            raise error from None
        return Outcome(
            "deferred", f"{recheck.source}: {error}; looking again in {delay} s (attempt {tries})"
        )

    def _start(self, batch: Batch) -> Outcome:
        svc = self.svc
        record = svc._new_record(batch.key, batch, "blob")
        rejected = svc._reject_if_invalid(record, batch)
        if rejected is not None:
            return Outcome("rejected", rejected.reason or "invalid batch", batch.key)
        return self._launch(record, stored=False)

    def _launch(self, record: RunRecord, *, stored: bool) -> Outcome:
        """Claim and submit; a TransientError once the record exists is raised, not deferred:
        the host's retry, or the sweep at the latest, takes the run from its record."""
        try:
            return self._outcome(*self.svc.launcher.launch(record, stored=stored))
        except TransientError as exc:
            try:
                recorded = stored or self.svc.ledger.get(record.run_id) is not None
            except TransientError:
                recorded = False  # no telling: defer, a repeat look is harmless
            if recorded:
                raise _Recorded(exc) from None
            raise

    @staticmethod
    def _outcome(record: RunRecord, acted: bool) -> Outcome:
        where = f"{record.source} -> {record.job_name}"
        if record.status is RunStatus.FAILED and record.submitted_at is None:
            return Outcome("failed", record.reason or "submission refused", record.run_id)
        if record.status is RunStatus.QUEUED:  # MAX_ACTIVE_RUNS are running: it starts in turn
            return Outcome("queued", f"{where}: waiting for a free slot", record.run_id)
        if acted:
            return Outcome("submitted", where, record.run_id)
        if record.submitted_at is None and not record.terminal:
            reason = f"{where}: another invocation is submitting it"
            return Outcome("in_progress", reason, record.run_id)
        return Outcome("duplicate", f"{where}: already {record.status.value}", record.run_id)
