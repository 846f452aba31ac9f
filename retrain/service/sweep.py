"""The timer's sweep: read each active run's job state and record how it stands.

A tick costs O(active runs), not O(history): one range query of the ledger's active rows (each
carries the whole record), one job-state read per run, and for the runs whose job moved, their
guarded writes, up to 33 runs to a transaction. Job states are read concurrently (at most
``SWEEP_CONCURRENCY`` at a time), and each run's result is written as its read returns (the reads
that end within ``WAVE_S`` of each other share transactions), so one slow read delays no other
run's record. A tick stops reading after ``SWEEP_BUDGET_SECONDS`` (below host.json's 10-minute
``functionTimeout``): the runs whose reads are still out are counted ``carried`` and checked again
on the next tick. One run's error is counted, and that run is simply checked again on the next
tick. Terminal statuses (Completed with the score metrics, Failed with the reason, Canceled) are
written once: the ledger never changes a terminal record.

The worker threads only return what they did; every log line is written from the invocation's own
thread, because the Functions host drops log lines that carry no invocation id.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..backends.base import JobState, NoModelError, RunStatus
from ..clock import iso, parse_time, utcnow
from ..errors import CorruptDocumentError, NotFoundError
from ..ledger.encoding import clean_metrics
from ..ledger.records import RunRecord
from ..ledger.runs import DamagedRun, Ledger, Stored

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..models.delivery import Completion, ModelDesk

log = logging.getLogger(__name__)

WAVE_S = 0.1  # reads ending this close together are written together (fewer transactions)


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
    damaged: int = 0  # a run whose record cannot be read (skipped; logged)
    errors: int = 0  # checked again next tick
    queued: int = 0  # waiting for a MAX_ACTIVE_RUNS slot
    admitted: int = 0  # queued runs started this tick (oldest first)
    carried: int = 0  # job-state reads still out when the tick's budget ran out: next tick
    promoted: int = 0  # completed runs whose model became champion
    notified: int = 0  # announcements delivered
    notify_retrying: int = 0  # announcements whose sink failed: kept for a later try
    notify_dead: int = 0  # announcements dead-lettered (refused for good, unsendable, too old)
    notify_deferred: int = 0  # due announcements not started before NOTIFY_TICK_SECONDS: next tick
    deployed: int = 0  # rollouts onto SERVE_ENDPOINT that moved all traffic to a new champion
    deploy_failed: int = 0  # rollouts that failed (the traffic stayed where it was)

    @property
    def eventful(self) -> bool:
        """Whether the tick changed anything or hit an error (worth an info-level log line)."""
        return any((self.updated, self.completed, self.failed, self.canceled, self.promoted,
                    self.resubmitted, self.admitted, self.damaged, self.errors, self.carried,
                    self.notified, self.notify_retrying, self.notify_dead,
                    self.notify_deferred, self.deployed, self.deploy_failed))  # fmt: skip

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
    models: Callable[[], ModelDesk | None] = lambda: None,
    budget_s: float = 240.0,
    admit: Callable[[], dict[str, RunRecord | Exception]] = dict,
) -> SweepSummary:
    """One tick over the active runs. ``backend`` is called only if there is a run to check;
    ``resume`` submits a run whose claim is free or expired (True if it did); ``models``, when
    the backend has a registry, registers each completed run's model and decides promotion.
    Reads still out after ``budget_s`` seconds are left to the next tick (``carried``); then,
    if runs are queued, ``admit`` starts them oldest first while slots are free."""
    runs = ledger.active()
    if not runs:
        return SweepSummary()
    tick = Tick(ledger, backend, resume, clock, models)
    deadline = time.monotonic() + budget_s
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(runs))))
    pending: set[Future[Result | Moved]] = {pool.submit(tick.check, run) for run in runs}
    results: list[Result] = []
    try:
        while pending:
            done, pending = wait(pending, _left(deadline), return_when=FIRST_COMPLETED)
            if not done:
                break  # the budget is spent: what is still out is carried to the next tick
            more, pending = wait(pending, min(WAVE_S, _left(deadline)))
            results += record_checked(ledger, [f.result() for f in done | more], "sweep")
    finally:  # a hanging read keeps only its own thread; queued reads are dropped
        pool.shutdown(wait=False, cancel_futures=True)
    counts = Counter(outcome for outcome, _, _ in results if outcome)  # "": a log line only
    if counts["queued"]:
        try:
            started = admit()
        except Exception as exc:  # storage trouble: the queued runs wait for the next tick
            log.warning("sweep: admitting queued runs: %s: %s", type(exc).__name__, exc)
            started = {"": exc}
        failed = sum(isinstance(outcome, Exception) for outcome in started.values())
        counts.update(admitted=len(started) - failed, errors=failed)
        counts["queued"] -= sum(1 for run_id in started if run_id)
    return SweepSummary(active=len(runs), carried=len(pending), **counts)


def record_checked(ledger: Ledger, checked: Iterable[Result | Moved], path: str) -> list[Result]:
    """Write what checking some runs found (the moved runs together, each completion with a
    model in its own transaction) and log it, from the caller's thread, naming the ``path``
    (the sweep, or a job event) that recorded it."""
    checked = list(checked)
    moved = [item for item in checked if isinstance(item, Moved) and item.completion is None]
    written = ledger.write_many([(m.run, m.change) for m in moved])
    results = [item for item in checked if not isinstance(item, Moved)]
    results += [_written(m.run, outcome) for m, outcome in zip(moved, written, strict=True)]
    # Completions with a model, one transaction each, in the order their jobs ended: the
    # first to end is the first to meet the champion.
    completing = [item for item in checked if isinstance(item, Moved) and item.completion]
    for m in sorted(completing, key=lambda m: m.ended):
        results += _completed(ledger, m)
    for _, level, message in results:
        if message:
            log.log(level, "%s: %s", path, message)
    return results


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


Result = tuple[str, int, str | None]  # (summary field or "", log level, log line or None)


@dataclass(frozen=True)
class Moved:
    """A run whose job moved: the change to write (the sweep writes them together), or for a
    completion with a model, the completion to record (one transaction each)."""

    run: Stored
    change: Callable[[RunRecord], RunRecord | None]
    completion: Completion | None = None
    ended: str = ""


def _completed(ledger: Ledger, moved: Moved) -> list[Result]:
    """Record one completion with its model: the run's result, and its promotion if any."""
    completion = moved.completion
    assert completion is not None
    try:
        outcome: tuple[Stored, bool] | Exception = ledger.write(
            moved.run.run_id, completion, current=moved.run, also=completion.rows
        )
    except Exception as exc:
        outcome = exc
    result = _written(moved.run, outcome)
    if isinstance(outcome, Exception) or not outcome[1]:
        return [result]
    model = outcome[0].record.model or {}
    named = f"model {model.get('name')}:{model.get('version')}"
    if not model.get("promoted"):
        level = logging.WARNING if model.get("version") is None else logging.INFO
        return [result, ("", level, f"{named} not promoted: {model.get('reason')}")]
    return [result, ("promoted", logging.INFO, f"{named} promoted to champion: {model['reason']}")]


def _written(run: Stored, outcome: tuple[Stored, bool] | Exception) -> Result:
    """What writing one moved run came to."""
    if isinstance(outcome, Exception):
        return _failed(run.run_id, outcome)
    stored, changed = outcome
    if not changed:
        return "unchanged", logging.DEBUG, None
    done = stored.record
    if not done.terminal:
        return "updated", logging.DEBUG, None
    line = f"run {done.run_id} {done.status.value} ({done.reason or 'ok'})"
    return done.status.value.lower(), logging.INFO, line


def _failed(run_id: str, exc: Exception) -> Result:
    """A run's error: counted, logged, and the run is checked again next tick."""
    if isinstance(exc, CorruptDocumentError):  # skipped, loudly; the other runs go on
        return "damaged", logging.ERROR, str(exc)
    return "errors", logging.WARNING, f"run {run_id}: {type(exc).__name__}: {exc}"


@dataclass
class Tick:
    """What one sweep needs while it reads job states concurrently."""

    ledger: Ledger
    backend: Callable[[], Backend]
    resume: Callable[[RunRecord], bool]
    clock: Callable[[], datetime]
    models: Callable[[], ModelDesk | None]

    def check(self, run: Stored | DamagedRun) -> Result | Moved:
        """What became of one run, or the change to write; never raises."""
        try:
            return self._check(run)
        except Exception as exc:
            return _failed(run.run_id, exc)

    def _check(self, run: Stored | DamagedRun) -> Result | Moved:
        if isinstance(run, DamagedRun):  # its active row is damaged: the record may not be
            found = self.ledger.read(run.run_id)
            if found is None:
                raise CorruptDocumentError(f"run {run.run_id}: {run.reason}", "")
            run = found
        record = run.record
        if record.status is RunStatus.QUEUED:  # started by admission, in order
            return "queued", logging.DEBUG, None
        if record.submitted_at is None:
            if self.resume(record):
                return "resubmitted", logging.INFO, f"run {record.run_id}: submitted"
            return "pending", logging.DEBUG, None
        assert record.job_name is not None
        state = _clean(self._job_state(record.job_name))
        now = self.clock()
        if apply_state(record, state, now) is None:
            return "unchanged", logging.DEBUG, None
        change = lambda r: apply_state(r, state, now)  # noqa: E731
        desk = self.models() if state.status is RunStatus.COMPLETED else None
        if desk is None:
            return Moved(run, change)
        try:  # any other error propagates: the run stays open and is checked again next tick
            registered, problem = desk.register(record, state.metrics), None
        except NoModelError as exc:  # nothing to register: it completes without a model
            registered, problem = None, str(exc)
        ended = iso(state.ended_at or now)
        return Moved(run, change, desk.completion(change, registered, problem), ended)

    def _job_state(self, job_name: str) -> JobState:
        """The job's state from the backend; a job it no longer knows is Failed."""
        try:
            return self.backend().job_state(job_name)
        except NotFoundError as exc:
            return JobState(RunStatus.FAILED, "NotFound", error=f"the job is gone: {exc}")


def _clean(state: JobState) -> JobState:
    """``state`` with metrics that strict JSON can store: an odd ``metrics.json`` (NaN, a huge
    number, deep nesting, a lone surrogate, megabytes) loses those entries, named in
    ``left_out``, and its run still completes."""
    if not state.metrics:
        return state
    kept, dropped = clean_metrics(state.metrics)
    if dropped:
        kept["left_out"] = dropped
    return replace(state, metrics=kept)
