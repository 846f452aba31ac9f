"""The active index entry carries the record and its ETag, so the sweep writes a moved run without
reading it; a stale copy loses the ETag race and the change is applied to the current record."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from apphelpers import batch_files, blob_event, records, upload

from retrain.backends.base import JobState, RunStatus
from retrain.ledger import RECORDS

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def _runs(service, store, count: int) -> list:
    container = service.settings.landing_container
    for i in range(count):
        blob_event(store, upload(store, container, f"m{i}", batch_files(n_train=10 + i))[0])
    runs = sorted(records(service), key=lambda r: r.source)
    assert len(runs) == count and all(r.status is RunStatus.SUBMITTED for r in runs)
    return runs


def _count_reads(store, monkeypatch) -> list:
    """Reads of run records from now on (the index's own documents are not counted)."""
    reads: list = []
    real = store.read_json

    def read_json(container: str, name: str):
        if name.startswith(RECORDS):
            reads.append(name)
        return real(container, name)

    monkeypatch.setattr(store, "read_json", read_json)
    return reads


def test_moved_runs_are_written_without_reading_their_records(service, store, backend, monkeypatch):
    runs = _runs(service, store, 3)
    reads = _count_reads(store, monkeypatch)
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 3
    for run in runs:
        backend.states[run.job_name] = JobState(
            RunStatus.COMPLETED, "Completed", metrics={"accuracy": 0.9}
        )
    assert service.sweep().completed == 3
    assert reads == []

    monkeypatch.undo()
    for stored in records(service):
        assert stored.status is RunStatus.COMPLETED
        assert stored.started_at == "2025-01-01T12:00:00.000Z"
        assert stored.metrics == {"accuracy": 0.9} and stored.duration_s is not None
    assert service.ledger.active() == []


def test_a_stale_copy_loses_the_race_and_the_other_writers_change_is_kept(
    service, store, backend, monkeypatch
):
    [run] = _runs(service, store, 1)
    # Another writer changes the record and dies before it re-indexes it: the index entry's copy
    # and ETag are now stale.
    service.ledger.write(run.run_id, lambda r: replace(r, attempts=7))
    [entry] = service.ledger.active()
    assert entry.found is not None and entry.found[0].attempts != 7

    reads = _count_reads(store, monkeypatch)
    backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 1
    assert len(reads) == 1  # the guarded write got 412: the record was read and changed again
    [stored] = records(service)
    assert (stored.status, stored.attempts) == (RunStatus.RUNNING, 7)

    # The entry carries the current record again: the next move needs no read.
    reads.clear()
    backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    assert service.sweep().completed == 1
    assert reads == []
    [stored] = records(service)
    assert (stored.status, stored.attempts) == (RunStatus.COMPLETED, 7)


def test_a_record_that_turned_terminal_behind_a_stale_copy_never_changes(service, store, backend):
    [run] = _runs(service, store, 1)
    # Canceled elsewhere, and the writer died before dropping the index entry.
    service.ledger.write(
        run.run_id, lambda r: replace(r, status=RunStatus.CANCELED, raw_status="Canceled")
    )
    backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    summary = service.sweep()
    assert summary.completed == 0 and summary.errors == 0
    [stored] = records(service)
    assert stored.status is RunStatus.CANCELED and stored.metrics is None
    assert service.ledger.active() == []
