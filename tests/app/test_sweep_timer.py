"""The timer: each tick records how active runs stand; terminal records are written once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apphelpers import batch_files, blob_event, records, timer_tick, upload

from retrain.backends.base import JobState, RunStatus
from retrain.ledger import RECORDS, RunRecord, iso
from retrain.service import CLAIM_LEASE

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def _runs(service, store, count: int) -> list:
    """``count`` submitted runs, one per batch."""
    container = service.settings.landing_container
    for i in range(count):
        paths = upload(store, container, f"b{i}", batch_files(n_train=10 + i))
        blob_event(store, paths[0])
    runs = sorted(records(service), key=lambda r: r.source)
    assert len(runs) == count
    return runs


def test_completed_failed_and_canceled_are_each_recorded_once(service, store, backend, clock):
    done, broken, stopped, running = _runs(service, store, 4)
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
    flaky, fine = _runs(service, store, 2)
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
    [run] = _runs(service, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.RUNNING, "NotResponding")
    assert service.sweep().updated == 1
    [stored] = records(service)
    assert stored.status is RunStatus.RUNNING and stored.raw_status == "NotResponding"
    assert service.sweep().unchanged == 1


def test_a_job_the_backend_no_longer_knows_is_failed(service, store, backend):
    [run] = _runs(service, store, 1)
    del backend.jobs[run.job_name]
    assert service.sweep().failed == 1
    [stored] = records(service)
    assert stored.status is RunStatus.FAILED and "gone" in stored.reason


def test_the_sweep_completes_a_submission_whose_claim_holder_died(service, store, backend, clock):
    from dataclasses import replace

    [run] = _runs(service, store, 1)
    service.ledger.update(
        run.run_id, lambda r: replace(r, submitted_at=None, claimed_at=r.created_at)
    )
    assert service.sweep().pending == 1 and len(backend.submits) == 1

    clock.now += CLAIM_LEASE * 2
    assert service.sweep().resubmitted == 1
    assert len(backend.submits) == 2 and len(backend.jobs) == 1
    [stored] = records(service)
    assert stored.submitted_at is not None


def test_stale_index_entries_are_tidied(service, store, backend, clock):
    ledger = service.ledger
    orphan = RunRecord(  # a claim whose record was never written: its holder died
        run_id="feedfacefeedface", source="landing/b", trigger="blob",
        status=RunStatus.SUBMITTED, created_at=iso(clock.now),
    )  # fmt: skip
    ledger.mark(orphan, new=True)
    assert service.sweep().pending == 1
    clock.now += timedelta(minutes=10)
    assert service.sweep().cleaned == 1
    assert ledger.active() == []


def test_a_tick_with_nothing_active_builds_no_backend(settings, store):
    from retrain.service import RetrainService

    svc = RetrainService(settings, store=store)
    assert svc.sweep().active == 0
    assert svc._backend is None


def test_an_uneventful_tick_reads_no_record(service, store, backend, monkeypatch):
    runs = _runs(service, store, 3)
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 3  # Submitted -> Running: each record written once

    reads = []
    real = store.read_json

    def read_json(container: str, name: str):
        reads.append(name)
        return real(container, name)

    monkeypatch.setattr(store, "read_json", read_json)
    assert service.sweep().unchanged == 3
    assert reads and not [name for name in reads if name.startswith(RECORDS)]  # index only
