"""What a sweep tick costs in storage requests: one range query of the active rows, and for the
runs whose job moved, their guarded writes, many runs to a transaction; a stale row loses its race
and the change is made again on the current record, while the others are written anyway."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from apphelpers import count_table_calls, records, submitted_runs

from retrain.backends.base import JobState, RunStatus

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_an_uneventful_tick_costs_one_query(service, store, backend, monkeypatch):
    runs = submitted_runs(service, store, 3)
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 3
    calls = count_table_calls(service, monkeypatch)
    assert service.sweep().unchanged == 3
    assert (calls.query, calls.get, calls.transact) == (1, 0, 0)


def test_moved_runs_are_written_without_reading_their_records(service, store, backend, monkeypatch):
    runs = submitted_runs(service, store, 3)
    calls = count_table_calls(service, monkeypatch)
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 3
    for run in runs:
        backend.states[run.job_name] = JobState(
            RunStatus.COMPLETED, "Completed", metrics={"accuracy": 0.9}
        )
    assert service.sweep().completed == 3
    assert (calls.query, calls.get, calls.transact) == (2, 0, 2)  # one transaction a tick

    monkeypatch.undo()
    for stored in records(service):
        assert stored.status is RunStatus.COMPLETED
        assert stored.started_at == "2025-01-01T12:00:00.000Z"
        assert stored.metrics == {"accuracy": 0.9} and stored.duration_s is not None
    assert service.ledger.active() == []


def _stale_tick(service, monkeypatch, meanwhile) -> None:
    """Make the sweep read the active rows, then let ``meanwhile`` write before it writes."""
    before = service.ledger.active()
    meanwhile()
    monkeypatch.setattr(service.ledger, "active", lambda: before)


def test_a_stale_row_loses_the_race_and_the_other_writers_change_is_kept(
    service, store, backend, monkeypatch
):
    runs = submitted_runs(service, store, 3)
    stale = runs[1]
    _stale_tick(
        service,
        monkeypatch,
        lambda: service.ledger.update(stale.run_id, lambda r: replace(r, attempts=7)),
    )
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.RUNNING, "Running", started_at=T0)
    assert service.sweep().updated == 3
    stored = {r.run_id: r for r in records(service)}
    assert {r.status for r in stored.values()} == {RunStatus.RUNNING}
    assert [stored[r.run_id].attempts for r in runs] == [1, 7, 1]


def test_a_record_that_turned_terminal_behind_a_stale_row_never_changes(
    service, store, backend, monkeypatch
):
    [run] = submitted_runs(service, store, 1)
    cancel = replace(run, status=RunStatus.CANCELED, raw_status="Canceled")
    _stale_tick(service, monkeypatch, lambda: service.ledger.update(run.run_id, lambda _: cancel))
    backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    summary = service.sweep()
    assert summary.completed == 0 and summary.errors == 0
    [stored] = records(service)
    assert stored.status is RunStatus.CANCELED and stored.metrics is None
    monkeypatch.undo()
    assert service.ledger.active() == []
