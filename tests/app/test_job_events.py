"""The job_events function: Azure ML's RunStatusChanged events, delivered as the host delivers an
Event Grid trigger (real ``func.EventGridEvent`` objects), advance exactly the run they name, by
the sweep's own code; duplicates, late, unknown and malformed events change nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from apphelpers import FakeBackend, batch_files, blob_event, records, submitted_runs, upload

from retrain.backends.base import JobState, RunStatus, Submission, SubmitRequest
from retrain.emulators.functions_host import deliver_job_event
from retrain.local.events import job_event
from retrain.service import core as service_module
from retrain.service.core import RetrainService

ENDED = JobState(RunStatus.COMPLETED, "Completed", {"accuracy": 0.9})


@pytest.fixture
def events_on(settings, store, backend, clock):
    svc = RetrainService(replace(settings, job_events=True), store=store, backend=backend,
                         clock=clock)  # fmt: skip
    service_module.set_service(svc)
    yield svc
    service_module.set_service(None)


def _event(job_name: str, status: str = "Completed") -> dict:
    return job_event(job_name, status, "fashion-retraining", {"run_id": "x"})


def test_an_event_records_its_run_at_once_and_only_that_run(events_on, store, backend, caplog):
    one, other = submitted_runs(events_on, store, 2)
    backend.states[one.job_name] = ENDED
    backend.states[other.job_name] = ENDED  # ended too, but no event for it yet
    reads = len(backend.state_reads)
    with caplog.at_level(logging.INFO, "function_app"):
        deliver_job_event(_event(one.job_name))
    stored = {r.run_id: r for r in records(events_on)}
    assert stored[one.run_id].status is RunStatus.COMPLETED
    assert stored[one.run_id].metrics == {"accuracy": 0.9}
    assert stored[other.run_id].status is RunStatus.SUBMITTED
    assert backend.state_reads[reads:] == [one.job_name]  # the state is read, not trusted
    assert f"recorded: Completed (run {one.run_id})" in caplog.text


def test_the_event_is_a_hint_the_backend_state_wins(events_on, store, backend):
    [run] = submitted_runs(events_on, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running")
    deliver_job_event(_event(run.job_name, "Completed"))  # says Completed; the job is running
    assert events_on.ledger.get(run.run_id).status is RunStatus.RUNNING


def test_duplicates_and_out_of_order_events_change_nothing(events_on, store, backend):
    [run] = submitted_runs(events_on, store, 1)
    backend.states[run.job_name] = ENDED
    deliver_job_event(_event(run.job_name))
    done = events_on.ledger.get(run.run_id)
    backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running")  # stale read too
    for status in ("Completed", "Running", "Queued", "Completed"):
        deliver_job_event(_event(run.job_name, status))
    assert events_on.ledger.get(run.run_id) == done


def test_unknown_jobs_get_one_debug_line(events_on, store, backend, caplog):
    [run] = submitted_runs(events_on, store, 1)
    reads = len(backend.state_reads)
    with caplog.at_level(logging.DEBUG, "function_app"):
        for job in (f"{run.job_name}-train_node", "someone-elses-job", "fashion-retrain-",
                    "fashion-retrain-" + "9" * 16, "fashion-retrain-a/../b"):  # fmt: skip
            deliver_job_event(_event(job))
    lines = [r for r in caplog.records if r.name == "function_app"]
    assert len(lines) == 5 and {r.levelno for r in lines} == {logging.DEBUG}
    assert all("unknown: no run has job" in r.getMessage() for r in lines)
    assert backend.state_reads[reads:] == []
    assert events_on.ledger.get(run.run_id).status is RunStatus.SUBMITTED


@pytest.mark.parametrize(
    "event",
    [
        {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged", "data": None},
        {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged", "data": [1, 2]},
        {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged", "data": {"runId": 7}},
        {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged", "data": "{ not json"},
        {"eventType": "Microsoft.Storage.BlobCreated", "data": {"url": "x"}},
        {"data": {"runId": "fashion-retrain-0"}},
        {"eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
         "data": {"runId": "\ud800" * 3}},
    ],
)  # fmt: skip
def test_a_malformed_event_is_logged_and_dropped_never_raised(events_on, event, caplog):
    with caplog.at_level(logging.DEBUG, "function_app"):
        deliver_job_event(event)  # returns: a raise would have Event Grid retry it for 24 h
    [line] = [r for r in caplog.records if r.name == "function_app"]
    assert "Traceback" not in line.getMessage() and "\n" not in line.getMessage()
    assert records(events_on) == []


def test_events_are_ignored_while_job_events_is_off(service, store, backend, caplog):
    [run] = submitted_runs(service, store, 1)
    backend.states[run.job_name] = ENDED
    deliver_job_event(_event(run.job_name))
    assert service.ledger.get(run.run_id).status is RunStatus.SUBMITTED
    assert service.sweep().completed == 1  # the timer records it


@dataclass
class EventDuringSubmit(FakeBackend):
    """A backend whose job sends its first event while ``submit`` is still in progress, before
    the service has recorded the submission."""

    events: list = None  # type: ignore[assignment]

    def submit(self, request: SubmitRequest) -> Submission:
        submission = super().submit(request)
        self.states[request.job_name] = JobState(RunStatus.RUNNING, "Running")
        deliver_job_event(_event(request.job_name, "Running"))
        return submission


def test_an_event_before_the_submission_is_recorded_is_caught_by_the_sweep(
    settings, store, clock, caplog
):
    backend = EventDuringSubmit()
    svc = RetrainService(replace(settings, job_events=True), store=store, backend=backend,
                         clock=clock)  # fmt: skip
    service_module.set_service(svc)
    try:
        with caplog.at_level(logging.INFO, "function_app"):
            path = upload(store, settings.landing_container, "early", batch_files())[0]
            blob_event(store, path)
        assert "pending: its submission is not recorded yet" in caplog.text
        [run] = records(svc)
        assert run.status is RunStatus.SUBMITTED and run.submitted_at
        clock.now += timedelta(minutes=5)
        assert svc.sweep().updated == 1  # the timer, the safety net, records what was missed
        assert svc.ledger.get(run.run_id).status is RunStatus.RUNNING
        backend.states[run.job_name] = ENDED
        deliver_job_event(_event(run.job_name))  # the next event is recorded as usual
        assert svc.ledger.get(run.run_id).status is RunStatus.COMPLETED
    finally:
        service_module.set_service(None)


def test_an_event_that_frees_a_slot_starts_the_oldest_queued_run(settings, store, backend, clock):
    svc = RetrainService(replace(settings, job_events=True, max_active_runs=1), store=store,
                         backend=backend, clock=clock)  # fmt: skip
    service_module.set_service(svc)
    try:
        container = settings.landing_container
        for i in range(3):
            svc.handle_blob(upload(store, container, f"e{i}", batch_files(n_train=10 + i))[0])
            clock.now += timedelta(seconds=1)
        by_source = {r.source.rpartition("/")[2]: r for r in records(svc)}
        first, second, third = (by_source[f"e{i}"] for i in range(3))
        assert (second.status, third.status) == (RunStatus.QUEUED, RunStatus.QUEUED)
        backend.states[first.job_name] = ENDED
        deliver_job_event(_event(first.job_name))
        assert svc.ledger.get(first.run_id).status is RunStatus.COMPLETED
        assert svc.ledger.get(second.run_id).status is RunStatus.SUBMITTED
        assert svc.ledger.get(third.run_id).status is RunStatus.QUEUED
        assert [s.run_id for s in backend.submits] == [first.run_id, second.run_id]
    finally:
        service_module.set_service(None)
