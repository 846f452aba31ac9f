"""The run ledger on Azurite: claims happen once, updates lose nothing under concurrent writers,
terminal records never change, and the indexes list active and recent runs."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from retrain.backends.base import RunStatus
from retrain.ledger import Ledger, RunRecord, iso


@pytest.fixture
def ledger(settings, store) -> Ledger:
    return Ledger(store, settings.runs_container)


def record(run_id: str, status: RunStatus = RunStatus.SUBMITTED, at: datetime | None = None):
    return RunRecord(
        run_id=run_id,
        source="landing/b",
        trigger="blob",
        status=status,
        created_at=iso(at or datetime.now(timezone.utc)),
    )


def _together(count: int, action) -> list:
    """Run ``action(i)`` in ``count`` threads released at once; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_claim_happens_exactly_once(ledger):
    results = _together(8, lambda i: ledger.create(replace(record("a1"), trigger=f"t{i}")))
    assert results.count(True) == 1
    winner = results.index(True)
    assert ledger.get("a1").trigger == f"t{winner}"
    assert len(ledger.recent(10)) == 1


def test_concurrent_updates_lose_nothing(ledger):
    ledger.create(record("a2"))

    def bump(_: int) -> None:
        for _ in range(5):
            ledger.update("a2", lambda r: replace(r, attempts=r.attempts + 1))

    _together(8, bump)
    assert ledger.get("a2").attempts == 40


def test_a_terminal_record_never_changes(ledger):
    ledger.create(record("a3"))
    done, changed = ledger.update("a3", lambda r: replace(r, status=RunStatus.COMPLETED))
    assert changed and done.terminal and done.updated_at

    calls = []
    again, changed = ledger.update("a3", lambda r: calls.append(r) or replace(r, reason="x"))
    assert not changed and calls == [] and again == done == ledger.get("a3")


def test_the_active_index_follows_the_status(ledger):
    ledger.create(record("a4"))
    ledger.create(record("a5", RunStatus.REJECTED))
    assert [e.run_id for e in ledger.active()] == ["a4"]
    ledger.update("a4", lambda r: replace(r, status=RunStatus.CANCELED))
    assert ledger.active() == []


def test_recent_lists_newest_first(ledger):
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    for i, minutes in enumerate([5, 1, 9, 3]):
        ledger.create(record(f"r{i}", at=start + timedelta(minutes=minutes)))
    assert [r.run_id for r in ledger.recent(10)] == ["r2", "r0", "r3", "r1"]
    assert [r.run_id for r in ledger.recent(2)] == ["r2", "r0"]


def test_records_round_trip_and_tolerate_newer_fields(ledger):
    full = replace(
        record("a6"),
        metrics={"accuracy": 0.9},
        blobs=[{"name": "b/x", "etag": "0x1"}],
        params={"epochs": 2, "experiment": None},
    )
    ledger.create(full)
    assert ledger.get("a6") == full
    assert RunRecord.from_dict({**full.to_dict(), "added_later": 1}) == full


def test_updating_an_unknown_run_is_not_found(ledger):
    from retrain.errors import NotFoundError

    with pytest.raises(NotFoundError):
        ledger.update("nope", lambda r: r)
