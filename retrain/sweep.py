"""The timer's sweep: read each active run's job state and record how it stands.

Only runs in the ledger's active index are visited, so a tick costs O(active runs), not O(history):
one read of the index's shards (whose entries say where each run stood), one job-state read per
run, and storage writes only for runs whose job moved. A run that moved is written with one
ETag-guarded PUT of the record copy its index entry carries; only when that copy is stale (412) or
missing is the record read first. The index itself is brought up to date at the end of the tick,
in one guarded write per shard touched, however many runs moved or ended. Runs are checked
concurrently (at most ``SWEEP_CONCURRENCY`` at a time); one run's error is logged and counted, and
that run is simply checked again on the next tick. Terminal statuses (Completed with the score
metrics, Failed with the reason, Canceled) are written once: the ledger never changes a terminal
record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .backends.base import JobState, RunStatus
from .errors import NotFoundError
from .ledger import (
    STALE_ENTRY,
    ActiveEntry,
    IndexChange,
    Ledger,
    RunRecord,
    iso,
    parse_time,
    utcnow,
)

if TYPE_CHECKING:
    from .backends.base import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSummary:
    """Counts of what one tick did."""

    active: int = 0
    unchanged: int = 0  # still where it was
    updated: int = 0  # moved on, not terminal (e.g. Submitted -> Running)
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    resubmitted: int = 0  # a claim whose holder died, submitted now
    pending: int = 0  # a submission in flight elsewhere
    cleaned: int = 0  # stale index entries dropped
    errors: int = 0  # checked again next tick

    @property
    def eventful(self) -> bool:
        """Whether the tick changed anything or hit an error (worth an info-level log line)."""
        return any((self.updated, self.completed, self.failed, self.canceled,
                    self.resubmitted, self.cleaned, self.errors))  # fmt: skip

    def __str__(self) -> str:
        shown = {k: v for k, v in self.__dict__.items() if v or k == "active"}
        return ", ".join(f"{k} {v}" for k, v in shown.items())


def apply_state(record: RunRecord, state: JobState, now: datetime) -> RunRecord | None:
    """``record`` brought up to ``state`` (pure), or None when nothing changes."""
    started = iso(state.started_at) or record.started_at
    if not state.status.terminal:
        if (state.status, state.raw_status, started) == (
            record.status,
            record.raw_status,
            record.started_at,
        ):
            return None
        return replace(record, status=state.status, raw_status=state.raw_status, started_at=started)
    ended = state.ended_at or now
    since = parse_time(started) or parse_time(record.submitted_at) or parse_time(record.created_at)
    duration = round((ended - since).total_seconds(), 3) if since else None
    reason = None
    if state.status is not RunStatus.COMPLETED:
        reason = state.error or f"the job ended {state.raw_status}"
    return replace(
        record,
        status=state.status,
        raw_status=state.raw_status,
        reason=reason,
        started_at=started,
        ended_at=iso(ended),
        duration_s=duration,
        metrics=dict(state.metrics) if state.metrics else record.metrics,
        claimed_at=None,
    )


def sweep(
    ledger: Ledger,
    backend: Callable[[], Backend],
    *,
    concurrency: int,
    resume: Callable[[RunRecord], bool],
    clock: Callable[[], datetime] = utcnow,
) -> SweepSummary:
    """One tick over the active runs. ``backend`` is called only if there is a run to check;
    ``resume`` submits a run whose claim holder died (True if it did)."""
    entries = ledger.active()
    if not entries:
        return SweepSummary()
    tick = _Tick(ledger, backend, resume, clock)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(entries)))) as pool:
        counts = Counter(pool.map(tick.check, entries))
    if tick.reindex:
        try:
            ledger.reindex(tick.reindex)
        except Exception as exc:  # stale entries cost a read next tick; ended ones are dropped then
            log.warning("sweep: could not update %d index entries: %s", len(tick.reindex), exc)
    return SweepSummary(active=len(entries), **counts)


@dataclass
class _Tick:
    """What one sweep needs while it checks runs concurrently."""

    ledger: Ledger
    backend: Callable[[], Backend]
    resume: Callable[[RunRecord], bool]
    clock: Callable[[], datetime]
    # The index changes of the tick, written at its end. list.append is atomic: no lock needed.
    reindex: list[IndexChange] = field(default_factory=list)

    def check(self, entry: ActiveEntry) -> str:
        """One run's outcome; an error is logged and counted, and the run is checked again on
        the next tick."""
        try:
            return self._check(entry)
        except Exception as exc:
            log.warning("sweep: run %s: %s: %s", entry.run_id, type(exc).__name__, exc)
            return "errors"

    def _check(self, entry: ActiveEntry) -> str:
        state, found = None, None
        if entry.submitted and entry.job_name and entry.status is not None:
            # Fast path: the entry says where the run stood at its last write; a job that has
            # not moved costs no storage request at all.
            state = self._job_state(entry.job_name)
            if not state.status.terminal and (state.status, state.raw_status) == (
                entry.status,
                entry.raw_status,
            ):
                return "unchanged"
            # The entry's copy of the record saves the read; if it is stale, the guarded write
            # loses (412) and the ledger reads the record and applies the change again.
            found = entry.found
        if found is None or found[0].terminal or found[0].submitted_at is None:
            found = self.ledger.read(entry.run_id)
        if found is None:  # a claim whose record was never written, or is being written now
            if self.clock() - entry.marked_at > STALE_ENTRY:
                self.reindex.append(IndexChange(entry, orphan=True))
                return "cleaned"
            return "pending"
        record = found[0]
        if record.terminal:  # turned terminal, but its entry outlived a crash
            self.reindex.append(IndexChange(entry))
            return "cleaned"
        if record.submitted_at is None:
            return "resubmitted" if self.resume(record) else "pending"
        assert record.job_name is not None
        if state is None or record.job_name != entry.job_name:
            state = self._job_state(record.job_name)
        return self._apply(entry, found, state)

    def _job_state(self, job_name: str) -> JobState:
        try:
            return self.backend().job_state(job_name)
        except NotFoundError as exc:
            return JobState(RunStatus.FAILED, "NotFound", error=f"the job is gone: {exc}")

    def _apply(self, entry: ActiveEntry, found: tuple[RunRecord, str], state: JobState) -> str:
        record = found[0]
        now = self.clock()
        if apply_state(record, state, now) is None:
            if not entry.matches(record):  # an entry left behind by a lost race: set it right
                self.reindex.append(IndexChange(entry, found))
            return "unchanged"
        stored, etag, changed = self.ledger.write(
            record.run_id, lambda r: apply_state(r, state, now), current=found
        )
        if stored.terminal:
            self.reindex.append(IndexChange(entry))
        elif changed or not entry.matches(stored):
            self.reindex.append(IndexChange(entry, (stored, etag)))
        if not changed:
            return "unchanged"
        if stored.terminal:
            log.info("run %s %s (%s)", stored.run_id, stored.status.value, stored.reason or "ok")
            return stored.status.value.lower()
        return "updated"
