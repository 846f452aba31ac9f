"""Azure ML's job events: a run's end recorded within seconds; the timer stays the safety net.

Azure ML publishes ``Microsoft.MachineLearningServices.RunStatusChanged`` to an Event Grid system
topic on the workspace (in preview). Events come at least once, possibly late, twice or out of
order, and child steps send their own. So an event is a hint: it names a job (``runId`` is the v2
job name), and the run with that job name is advanced by exactly the sweep's code for one run
(the job state read from the backend, then recorded; on completion the model registered,
compared, promoted and announced, the announcements delivered at once), after which queued
runs are admitted into the freed slot.

- A job name no run has (a child step, another experiment): one debug line.
- A run already terminal, or whose job has not moved: nothing changes (a duplicate, a late or
  stale event), since the state is read, not taken from the event.
- An event before the submission is recorded: nothing to read yet; the sweep records the run.
- A malformed event: logged and dropped, never raised (a poisoned event would only be retried).
- Trouble reading the job or writing the run is logged; the sweep tries again. A ledger that
  cannot be read at all raises, so Event Grid delivers the event again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import keys
from ..backends.base import RunStatus
from ..errors import CorruptDocumentError
from .admission import admit_queued
from .sweep import Moved, SweepSummary, Tick, record_checked

if TYPE_CHECKING:
    from .core import RetrainService

log = logging.getLogger(__name__)

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
JOB_PREFIX = keys.job_name("")
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class EventOutcome:
    """What one event led to (logged by the function at ``level``)."""

    # recorded | unchanged | pending | queued | unknown | ignored | malformed | disabled
    action: str
    reason: str
    run_id: str | None = None
    level: int = logging.INFO

    def __str__(self) -> str:
        return f"{self.action}: {self.reason}" + (f" (run {self.run_id})" if self.run_id else "")


def job_name_of(event_type: str, data: Any) -> str | EventOutcome:
    """The job an event names, or the outcome of dropping it (pure)."""
    if event_type != RUN_STATUS_CHANGED:
        return EventOutcome("ignored", f"not a RunStatusChanged event: {event_type[:80]!r}",
                            level=logging.DEBUG)  # fmt: skip
    job = data.get("runId") if isinstance(data, dict) else None
    if not isinstance(job, str) or not job.strip():
        return EventOutcome("malformed", "the event's data has no runId string",
                            level=logging.WARNING)  # fmt: skip
    return job


def handle_job_event(service: RetrainService, event_type: str, data: Any) -> EventOutcome:
    """Advance the run whose job the event names, as one run of the sweep; never raises for
    the event's own content."""
    if not service.settings.job_events:
        return EventOutcome("disabled", "JOB_EVENTS is off; the timer records runs",
                            level=logging.DEBUG)  # fmt: skip
    job = job_name_of(event_type, data)
    if isinstance(job, EventOutcome):
        return job
    run_id = job.removeprefix(JOB_PREFIX)
    unknown = EventOutcome("unknown", f"no run has job {job[:140]!r}", level=logging.DEBUG)
    if not job.startswith(JOB_PREFIX) or not RUN_ID.fullmatch(run_id):
        return unknown
    try:
        stored = service.ledger.read(run_id)
    except CorruptDocumentError as exc:  # the sweep reports it every tick
        return EventOutcome("unchanged", str(exc), run_id, logging.WARNING)
    if stored is None or stored.record.job_name != job:
        return unknown
    record = stored.record
    if record.terminal:
        return EventOutcome("unchanged", f"already {record.status.value}", run_id, logging.DEBUG)
    if record.status is RunStatus.QUEUED:
        return EventOutcome("queued", "waiting for a free slot", run_id, logging.DEBUG)
    tick = Tick(
        service.ledger,
        lambda: service.backend,
        service.launcher.resume,
        service.clock,
        lambda: service.models,
    )
    checked = tick.check(stored)
    if not isinstance(checked, Moved) and checked[0] == "pending":
        return EventOutcome(
            "pending", "its submission is not recorded yet; the sweep records it", run_id
        )
    results = record_checked(service.ledger, [checked], "job_events")
    fields = {field for field, _, _ in results}
    if fields & {"errors", "damaged"}:
        line = next((line for _, _, line in results if line), "")
        return EventOutcome("unchanged", f"the sweep tries again: {line}", run_id, logging.WARNING)
    if fields <= {"unchanged", ""}:
        return EventOutcome("unchanged", f"still {record.status.value}", run_id, logging.DEBUG)
    now = service.ledger.get(run_id) or record
    if now.terminal:  # as a tick would: the champion tag, the announcements, the queue
        service.follow_up(SweepSummary(active=1))
        for started_id, outcome in admit_queued(service.launcher).items():
            if not isinstance(outcome, Exception):
                log.info("job_events: run %s started from the queue", started_id)
    return EventOutcome("recorded", now.status.value, run_id)
