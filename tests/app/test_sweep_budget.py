"""The sweep records each run as its job-state read returns: one read that hangs delays no other
run's record, and a tick whose budget runs out carries the unread runs to the next tick."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import pytest
from apphelpers import FakeBackend, records, submitted_runs

from retrain.backends.base import JobState, RunStatus
from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.service.sweep import SweepSummary
from retrain.settings import Settings


@dataclass
class HangingBackend(FakeBackend):
    """A backend whose job-state read for the jobs in ``hanging`` blocks until ``release``."""

    hanging: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)

    def job_state(self, job_name: str) -> JobState:
        if job_name in self.hanging:
            self.release.wait(60)
        return super().job_state(job_name)


@pytest.fixture
def hanging(store, settings, clock):
    backend = HangingBackend()
    yield backend
    backend.release.set()
    service_module.set_service(None)


def _service(settings: Settings, store, backend, clock, **changes) -> RetrainService:
    svc = RetrainService(replace(settings, **changes), store=store, backend=backend, clock=clock)
    service_module.set_service(svc)  # the functions (the blob trigger) use it
    return svc


def _ended(backend: FakeBackend, runs) -> None:
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed", {"accuracy": 0.9})


def _until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_hanging_read_does_not_hold_back_the_other_runs_records(settings, store, clock, hanging):
    svc = _service(settings, store, hanging, clock)
    slow, *fast = submitted_runs(svc, store, 4)
    _ended(hanging, [slow, *fast])
    hanging.hanging.add(slow.job_name)
    summary: list[SweepSummary] = []
    tick = threading.Thread(target=lambda: summary.append(svc.sweep()))
    tick.start()

    def others_recorded() -> bool:
        stored = {r.run_id: r for r in records(svc)}
        return all(stored[r.run_id].status is RunStatus.COMPLETED for r in fast)

    assert _until(others_recorded)
    assert tick.is_alive()  # the tick is still waiting on the one read
    assert {r.run_id for r in svc.ledger.active()} == {slow.run_id}
    hanging.release.set()
    tick.join(60)
    assert summary[0].completed == 4 and summary[0].carried == 0
    assert svc.ledger.active() == []


def test_a_tick_out_of_budget_carries_the_unread_runs_to_the_next_tick(
    settings, store, clock, hanging
):
    svc = _service(settings, store, hanging, clock, sweep_budget_s=1)
    slow, *fast = submitted_runs(svc, store, 3)
    _ended(hanging, [slow, *fast])
    hanging.hanging.add(slow.job_name)
    summary = svc.sweep()  # returns once the budget is spent, the read still out
    assert (summary.completed, summary.carried, summary.errors) == (2, 1, 0)
    assert "carried 1" in str(summary) and summary.eventful
    assert [r.run_id for r in svc.ledger.active()] == [slow.run_id]

    hanging.release.set()
    hanging.hanging.clear()
    after = svc.sweep()
    assert (after.active, after.completed, after.carried) == (1, 1, 0)
    assert {r.status for r in records(svc)} == {RunStatus.COMPLETED}


def test_the_budget_is_refused_past_the_function_timeout():
    from retrain.errors import ConfigurationError

    assert Settings.from_env({"SWEEP_BUDGET_SECONDS": "480"}).sweep_budget_s == 480
    with pytest.raises(ConfigurationError, match="SWEEP_BUDGET_SECONDS: at most 480"):
        Settings.from_env({"SWEEP_BUDGET_SECONDS": "600"})
