"""The timer: each tick records how active runs stand; terminal records are written once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apphelpers import damage, records, submitted_runs, timer_tick

from retrain.backends.base import JobState, RunStatus
from retrain.service.submission import CLAIM_LEASE

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_completed_failed_and_canceled_are_each_recorded_once(service, store, backend, clock):
    done, broken, stopped, running = submitted_runs(service, store, 4)
    backend.states[done.job_name] = JobState(
        RunStatus.COMPLETED,
        "Completed",
        metrics={"accuracy": 0.91, "per_class": {"precision": [0.9] * 10}},
        started_at=T0,
        ended_at=T0 + timedelta(minutes=7),
    )
    backend.states[broken.job_name] = JobState(
        RunStatus.FAILED, "Failed", error="train_node: CUDA out of memory", started_at=T0
    )
    backend.states[stopped.job_name] = JobState(RunStatus.CANCELED, "Canceled")
    backend.states[running.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)

    timer_tick()
    first = {r.run_id: r for r in records(service)}
    assert first[done.run_id].status is RunStatus.COMPLETED
    assert first[done.run_id].metrics["accuracy"] == 0.91
    assert first[done.run_id].duration_s == 420.0
    assert first[done.run_id].ended_at == "2025-01-01T12:07:00.000Z"
    assert first[broken.run_id].status is RunStatus.FAILED
    assert first[broken.run_id].reason == "train_node: CUDA out of memory"
    assert first[broken.run_id].ended_at is not None
    assert first[stopped.run_id].status is RunStatus.CANCELED
    assert first[running.run_id].status is RunStatus.RUNNING
    assert first[running.run_id].started_at == "2025-01-01T12:00:00.000Z"
    assert [e.run_id for e in service.ledger.active()] == [running.run_id]

    # The backend now says something else about the ended runs: nothing changes any more.
    for run in (done, broken, stopped):
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running")
    clock.now += timedelta(minutes=5)
    reads = len(backend.state_reads)
    timer_tick()
    second = {r.run_id: r for r in records(service)}
    for run in (done, broken, stopped):
        assert second[run.run_id] == first[run.run_id]
    assert len(backend.state_reads) == reads + 1  # only the running one was asked


def test_a_failing_status_read_is_retried_next_tick_while_others_proceed(service, store, backend):
    flaky, fine = submitted_runs(service, store, 2)
    for run in (flaky, fine):
        backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed", {"accuracy": 0.9})
    backend.failing_states.add(flaky.job_name)

    summary = service.sweep()
    assert summary.errors == 1 and summary.completed == 1
    by_id = {r.run_id: r for r in records(service)}
    assert by_id[fine.run_id].status is RunStatus.COMPLETED
    assert by_id[flaky.run_id].status is RunStatus.SUBMITTED

    backend.failing_states.clear()
    summary = service.sweep()
    assert summary.active == 1 and summary.completed == 1 and summary.errors == 0
    assert all(r.status is RunStatus.COMPLETED for r in records(service))
    assert service.sweep().active == 0


def test_not_responding_is_mapped_with_the_raw_status_kept(service, store, backend):
    [run] = submitted_runs(service, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.RUNNING, "NotResponding")
    assert service.sweep().updated == 1
    [stored] = records(service)
    assert stored.status is RunStatus.RUNNING and stored.raw_status == "NotResponding"
    assert service.sweep().unchanged == 1


def test_a_job_the_backend_no_longer_knows_is_failed(service, store, backend):
    [run] = submitted_runs(service, store, 1)
    del backend.jobs[run.job_name]
    assert service.sweep().failed == 1
    [stored] = records(service)
    assert stored.status is RunStatus.FAILED and "gone" in stored.reason


def test_the_sweep_completes_a_submission_whose_claim_holder_died(service, store, backend, clock):
    from dataclasses import replace

    [run] = submitted_runs(service, store, 1)
    service.ledger.update(
        run.run_id, lambda r: replace(r, submitted_at=None, claimed_at=r.created_at)
    )
    assert service.sweep().pending == 1 and len(backend.submits) == 1

    clock.now += CLAIM_LEASE * 2
    assert service.sweep().resubmitted == 1
    assert len(backend.submits) == 2 and len(backend.jobs) == 1
    [stored] = records(service)
    assert stored.submitted_at is not None


def test_a_damaged_active_row_is_healed_from_the_record(service, store, backend):
    first, second = submitted_runs(service, store, 2)
    damage(service, f"active|{first.run_id}")
    for run in (first, second):
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 2  # read from its record, then written whole again
    assert {r.run_id: r.status for r in records(service)} == {
        first.run_id: RunStatus.RUNNING,
        second.run_id: RunStatus.RUNNING,
    }
    assert [run.record.status for run in service.ledger.active()] == [RunStatus.RUNNING] * 2


def test_a_damaged_run_harms_only_itself_in_the_sweep(service, store, backend, caplog):
    first, second = submitted_runs(service, store, 2)
    damage(service, f"active|{first.run_id}")
    damage(service, f"run|{first.run_id}")
    backend.states[second.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    summary = service.sweep()
    assert (summary.damaged, summary.completed) == (1, 1)
    assert f"run {first.run_id}: the run record is damaged" in caplog.text
    assert service.get_run(second.run_id).status is RunStatus.COMPLETED


def test_a_tick_with_nothing_active_builds_no_backend(settings, store):
    from retrain.service.core import RetrainService

    svc = RetrainService(settings, store=store)
    assert svc.sweep().active == 0
    assert svc._backend is None
