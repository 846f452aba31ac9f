"""The run ledger on Azurite's table service: a claim happens once, updates lose nothing under
concurrent writers, a terminal record never changes, a run's rows always agree, and a damaged
row harms only its own run."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from apphelpers import DAMAGED, damage, http

from retrain.backends.base import RunStatus
from retrain.clock import iso
from retrain.errors import CorruptDocumentError, NotFoundError, TransientError
from retrain.ledger.records import RunRecord
from retrain.ledger.runs import DamagedRun, Ledger
from retrain.storage.tables import Op


@pytest.fixture
def ledger(service) -> Ledger:
    return service.ledger


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


def _rows(ledger: Ledger, run_id: str) -> list[str]:
    """The kinds of row the run has (run, active, recent)."""
    return sorted(
        entity.row.partition("|")[0]
        for prefix in ("run|", "active|", "recent|")
        for entity in ledger.table.query(prefix)
        if entity.row.endswith(f"|{run_id}")
    )


def test_a_claim_happens_exactly_once(ledger):
    results = _together(8, lambda i: ledger.create(replace(record("a1"), trigger=f"t{i}")))
    assert results.count(True) == 1
    winner = results.index(True)
    assert ledger.get("a1").trigger == f"t{winner}"
    assert [r.run_id for r in ledger.recent(10)] == ["a1"]
    assert [s.run_id for s in ledger.active()] == ["a1"]


def test_concurrent_claims_on_distinct_runs_are_all_listed_and_active(ledger):
    ids = [f"c{i:02d}" for i in range(32)]
    _together(8, lambda i: [ledger.create(record(run_id)) for run_id in ids[i::8]])
    assert sorted(s.run_id for s in ledger.active()) == ids
    assert sorted(r.run_id for r in ledger.recent(100)) == ids


def test_the_creator_knows_its_claim_by_its_token(ledger):
    assert ledger.create(record("k1"), token="mine")
    assert not ledger.create(record("k1"), token="theirs")
    assert ledger.created_with("k1", "mine") == ledger.read("k1")
    assert ledger.created_with("k1", "theirs") is None


def test_concurrent_updates_lose_nothing(ledger):
    ledger.create(record("a2"))

    def bump(_: int) -> None:
        for _ in range(5):
            while True:  # too many lost races raise TransientError: retry it, as the host does
                try:
                    ledger.update("a2", lambda r: replace(r, attempts=r.attempts + 1))
                    break
                except TransientError:
                    continue

    _together(8, bump)
    assert ledger.get("a2").attempts == 40
    [active] = ledger.active()
    assert active.record == ledger.get("a2")  # the copies moved with it
    assert ledger.recent(1) == [ledger.get("a2")]


def test_a_terminal_record_never_changes(ledger):
    ledger.create(record("a3"))
    done, changed = ledger.update("a3", lambda r: replace(r, status=RunStatus.COMPLETED))
    assert changed and done.terminal and done.updated_at

    calls = []
    again, changed = ledger.update("a3", lambda r: calls.append(r) or replace(r, reason="x"))
    assert not changed and calls == [] and again == done == ledger.get("a3")
    assert ledger.recent(1) == [done]


def test_the_rows_follow_the_status(ledger):
    ledger.create(record("a4"))
    ledger.create(record("a5", RunStatus.REJECTED))
    assert _rows(ledger, "a4") == ["active", "recent", "run"]
    assert _rows(ledger, "a5") == ["recent", "run"]
    ledger.update("a4", lambda r: replace(r, status=RunStatus.RUNNING))
    assert [s.record.status for s in ledger.active()] == [RunStatus.RUNNING]
    ledger.update("a4", lambda r: replace(r, status=RunStatus.CANCELED))
    assert ledger.active() == [] and _rows(ledger, "a4") == ["recent", "run"]


def test_a_missing_active_row_is_healed_by_the_next_write(ledger):
    ledger.create(record("h1"))
    ledger.create(record("h2"))
    for run_id in ("h1", "h2"):  # damage from outside: the active rows are deleted
        ledger.table.transact([Op("delete", f"active|{run_id}")])
    ledger.update("h1", lambda r: replace(r, status=RunStatus.RUNNING))
    assert [s.run_id for s in ledger.active()] == ["h1"]
    done, changed = ledger.update("h2", lambda r: replace(r, status=RunStatus.FAILED))
    assert changed and ledger.get("h2") == done  # a terminal write needs no active row


def test_updated_at_only_grows_even_after_a_host_with_a_fast_clock(ledger):
    ahead = "2099-01-01T00:00:00.000Z"  # written by a host whose clock runs ahead
    ledger.create(replace(record("u1"), updated_at=ahead))
    stored, _ = ledger.update("u1", lambda r: replace(r, attempts=1))
    assert stored.updated_at == "2099-01-01T00:00:00.001Z"


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
    with pytest.raises(NotFoundError):
        ledger.update("nope", lambda r: r)


@pytest.mark.parametrize(
    "damaged",
    ["{ damaged", "[1, 2]", '{"run_id": "d1"}', '{"run_id": 7, "status": "Running"}', None],
)
def test_a_damaged_row_harms_only_its_own_run(service, ledger, damaged, caplog):
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    for i in range(3):
        ledger.create(record(f"d{i}", at=start + timedelta(minutes=i)))
    [listed] = [e.row for e in ledger.table.query("recent|") if e.row.endswith("|d1")]
    for row in (listed, "run|d1"):
        if damaged is None:  # no record at all
            ledger.table.transact([Op("upsert", row, {"status": "Running"})])
        else:
            damage(service, row, damaged)

    assert ledger.recent(10) == [ledger.get("d2"), DamagedRun("d1"), ledger.get("d0")]
    with pytest.raises(CorruptDocumentError, match=DAMAGED):
        ledger.get("d1")

    status, answer, _ = http("GET", "retrain")
    assert status == 200 and answer["count"] == 3
    assert answer["runs"][1] == {"run_id": "d1", "status": None, "damaged": True, "error": DAMAGED}
    assert [run["run_id"] for run in answer["runs"]] == ["d2", "d1", "d0"]
