"""The run ledger on Azurite: claims happen once, updates lose nothing under concurrent writers,
terminal records never change, and the indexes list active and recent runs."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from retrain import ledger as ledger_module
from retrain.backends.base import RunStatus
from retrain.errors import TransientError
from retrain.ledger import IndexChange, Ledger, RunRecord, iso, shard_of


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


def test_concurrent_writers_lose_no_index_entry(ledger):
    ids = [f"c{i:02d}" for i in range(48)]  # 48 runs over 16 shards: writers share every shard
    _together(8, lambda i: [ledger.create(record(run_id)) for run_id in ids[i::8]])
    entries = ledger.active()
    assert sorted(e.run_id for e in entries) == ids
    assert len({e.shard for e in entries}) > 8  # spread over the shards

    def finish(run_id: str):
        return ledger.update(run_id, lambda r: replace(r, status=RunStatus.COMPLETED))

    _together(8, lambda i: [finish(run_id) for run_id in ids[i::16]])  # half of them end
    assert sorted(e.run_id for e in ledger.active()) == [
        run_id for n, run_id in enumerate(ids) if n % 16 >= 8
    ]


def test_reindex_writes_each_shard_once_and_never_revives_a_dropped_entry(ledger, monkeypatch):
    for i in range(40):
        ledger.create(record(f"d{i:02d}"))
    entries = ledger.active()
    ledger.unmark("d30")  # dropped meanwhile (its run ended elsewhere)
    writes: list[str] = []
    real = ledger.store.replace_json
    monkeypatch.setattr(
        ledger.store,
        "replace_json",
        lambda c, n, d, **guard: writes.append(n) or real(c, n, d, **guard),
    )
    running = {e.run_id: (replace(ledger.get(e.run_id), status=RunStatus.RUNNING), "0x1")
               for e in entries}  # fmt: skip
    ledger.reindex(
        [IndexChange(e, None if e.run_id < "d20" else running[e.run_id]) for e in entries]
    )

    assert sorted(writes) == sorted({e.shard for e in entries})  # one guarded write per shard
    left = {e.run_id: e for e in ledger.active()}
    assert sorted(left) == [f"d{i:02d}" for i in range(20, 40) if i != 30]
    assert all(e.status is RunStatus.RUNNING and e.found[1] == "0x1" for e in left.values())


def test_an_orphan_is_dropped_only_while_it_is_one(ledger, monkeypatch):
    """The sweep saw old entries with no record. Before its tick ends, one claim is retried
    (renewing its entry) and another's record appears: dropping either would lose a run."""
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=10)
    with monkeypatch.context() as m:
        m.setattr(ledger_module, "utcnow", lambda: long_ago)
        for run_id in ("o1", "o2", "o3"):
            ledger.mark(record(run_id), new=True)
    seen = {e.run_id: e for e in ledger.active()}
    assert all(e.marked_at <= long_ago for e in seen.values())  # all look like junk now

    ledger.mark(record("o1"), new=True)  # a retried claim renews its aging entry
    ledger.store.create_json(ledger.container, "runs/o2.json", record("o2").to_dict())
    ledger.reindex([IndexChange(seen[run_id], orphan=True) for run_id in ("o1", "o2", "o3")])
    assert sorted(e.run_id for e in ledger.active()) == ["o1", "o2"]  # only o3 was junk


def test_updated_at_only_grows_even_after_a_host_with_a_fast_clock(ledger):
    ahead = "2099-01-01T00:00:00.000Z"  # written by a host whose clock runs ahead
    ledger.create(replace(record("u1"), updated_at=ahead))
    stored, _ = ledger.update("u1", lambda r: replace(r, attempts=1))
    assert stored.updated_at == "2099-01-01T00:00:00.001Z"


def test_a_late_index_write_does_not_roll_an_entry_back(ledger):
    ledger.create(record("n1"))
    older, _ = ledger.update("n1", lambda r: replace(r, status=RunStatus.RUNNING))
    older_etag = ledger.read("n1")[1]
    newer, _ = ledger.update("n1", lambda r: replace(r, raw_status="Running", attempts=2))
    [entry] = ledger.active()
    ledger.reindex([IndexChange(entry, (older, older_etag))])  # the sweep's, arriving late
    [kept] = ledger.active()
    assert kept.found[0] == newer


def test_a_record_write_stands_when_its_index_write_fails(ledger, monkeypatch, caplog):
    ledger.create(record("f1"))

    def refuse(*_args, **_kwargs):
        raise TransientError("index unavailable")

    monkeypatch.setattr(ledger, "_edit", refuse)
    _, changed = ledger.update("f1", lambda r: replace(r, status=RunStatus.COMPLETED))
    assert changed and ledger.get("f1").status is RunStatus.COMPLETED
    assert "index entry left stale" in caplog.text


def test_a_shard_that_is_not_json_is_rebuilt_from_the_records(ledger, caplog):
    ids = [f"g{i:02d}" for i in range(64)]
    for run_id in ids:
        ledger.create(record(run_id))
    shard = shard_of("g00")
    mates = [run_id for run_id in ids if shard_of(run_id) == shard]
    ledger.update(mates[-1], lambda r: replace(r, status=RunStatus.COMPLETED))
    ledger.store.put(ledger.container, shard, b"{ damaged")

    active = {e.run_id for e in ledger.active()}
    assert "not a JSON object" in caplog.text
    assert active == set(ids) - {mates[-1]}  # the damaged shard's live runs are all back
    assert ledger.store.read_json(ledger.container, shard) is not None  # and written back


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
