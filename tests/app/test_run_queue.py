"""MAX_ACTIVE_RUNS: runs over the cap are recorded Queued with a visible place in the queue,
start oldest first as runs end, and two hosts racing on one ledger never exceed the cap."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from apphelpers import FakeBackend, batch_files, http, records, upload

from retrain.backends.base import JobState, RunStatus
from retrain.ledger.slots import read_slots
from retrain.service import core as service_module
from retrain.service.core import RetrainService


@pytest.fixture
def capped(settings, store, backend, clock):
    """The service with MAX_ACTIVE_RUNS=2."""
    svc = RetrainService(replace(settings, max_active_runs=2), store=store, backend=backend,
                         clock=clock)  # fmt: skip
    service_module.set_service(svc)
    yield svc
    service_module.set_service(None)


def _land(svc: RetrainService, store, clock, count: int, start: int = 0) -> list[str]:
    """``count`` batches, one a second, each through the blob trigger; their run ids."""
    container = svc.settings.landing_container
    for i in range(start, start + count):
        path = upload(store, container, f"b{i:02d}", batch_files(n_train=10 + i))[0]
        svc.handle_blob(path)
        clock.now += timedelta(seconds=1)
    by_source = {r.source: r.run_id for r in records(svc)}
    return [by_source[f"{container}/b{i:02d}"] for i in range(start, start + count)]


def _end(backend: FakeBackend, svc: RetrainService, run_id: str) -> None:
    job = svc.ledger.get(run_id).job_name
    backend.states[job] = JobState(RunStatus.COMPLETED, "Completed", {"accuracy": 0.9})


def test_runs_over_the_cap_queue_and_start_oldest_first(capped, store, backend, clock):
    ids = _land(capped, store, clock, 5)
    assert [capped.ledger.get(i).status for i in ids] == [RunStatus.SUBMITTED] * 2 + [
        RunStatus.QUEUED
    ] * 3
    assert len(backend.jobs) == 2

    status, listing, _ = http("GET", "retrain")
    places = {run["run_id"]: run.get("queue_position") for run in listing["runs"]}
    assert [places[i] for i in ids] == [None, None, 1, 2, 3]
    status, one, _ = http("GET", f"retrain/{ids[4]}")
    assert (status, one["status"], one["queue_position"]) == (200, "Queued", 3)

    # A queued run keeps its key: the redelivered event maps to it, and nothing new starts.
    capped.handle_blob(f"{capped.settings.landing_container}/b03/train-images-idx3-ubyte.gz")
    assert len(records(capped)) == 5 and len(backend.jobs) == 2

    _end(backend, capped, ids[1])  # the second ends first: the oldest queued one starts
    summary = capped.sweep()
    assert (summary.completed, summary.admitted, summary.queued) == (1, 1, 2)
    assert capped.ledger.get(ids[2]).status is RunStatus.SUBMITTED
    assert capped.ledger.get(ids[2]).data_asset.endswith(capped.ledger.get(ids[2]).run_id)
    assert [capped.ledger.get(i).status for i in ids[3:]] == [RunStatus.QUEUED] * 2
    assert http("GET", f"retrain/{ids[4]}")[1]["queue_position"] == 2

    for run_id in ids[:3]:
        _end(backend, capped, run_id)
    capped.sweep()
    assert [capped.ledger.get(i).status for i in ids[3:]] == [RunStatus.SUBMITTED] * 2
    assert [s.run_id for s in backend.submits] == ids  # first in, first out
    assert sorted(read_slots(capped.ledger.table).held.values()) == sorted(ids[3:])


def test_the_webhook_answers_202_queued_with_its_place(capped, store, backend, clock):
    _land(capped, store, clock, 2)
    upload(store, capped.settings.landing_container, "hooked", batch_files(n_train=40))
    status, answer, headers = http("POST", "retrain", {"data": "hooked"})
    assert (status, answer["status"], answer["queue_position"]) == (202, "Queued", 1)
    assert answer["created"] is True and headers["Location"].endswith(answer["run_id"])
    again = http("POST", "retrain", {"data": "hooked"})[1]  # the repeat maps to the same run
    assert (again["run_id"], again["created"]) == (answer["run_id"], False)
    assert again["status"] == "Queued"


def test_no_cap_submits_everything_at_once(settings, store, backend, clock):
    svc = RetrainService(replace(settings, max_active_runs=0), store=store, backend=backend,
                         clock=clock)  # fmt: skip
    ids = _land(svc, store, clock, 6)
    assert {svc.ledger.get(i).status for i in ids} == {RunStatus.SUBMITTED}
    assert read_slots(svc.ledger.table).held == {}


def test_two_hosts_racing_on_one_ledger_never_exceed_the_cap(settings, store, clock):
    capped = replace(settings, max_active_runs=3)
    backend = FakeBackend(delay=0.02)  # submissions overlap
    hosts = [RetrainService(capped, store=store, backend=backend, clock=clock) for _ in "ab"]
    container = capped.landing_container
    paths = [upload(store, container, f"r{i}", batch_files(n_train=10 + i))[0] for i in range(10)]

    def deliver(host: RetrainService) -> None:  # each host gets every event, as redeliveries do
        for path in paths:
            host.handle_blob(path)

    threads = [threading.Thread(target=deliver, args=(host,)) for host in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stored = records(hosts[0])
    started = [r for r in stored if r.status is RunStatus.SUBMITTED]
    assert len(stored) == 10 and len(started) == 3 and len(backend.jobs) == 3
    assert sorted(r.slot for r in started) == [0, 1, 2]

    queue = sorted((r for r in stored if r.status is RunStatus.QUEUED),
                   key=lambda r: (r.created_at, r.run_id))  # fmt: skip
    for run in started:
        _end(backend, hosts[0], run.run_id)
    ticks = [threading.Thread(target=host.sweep) for host in hosts]
    for t in ticks:
        t.start()
    for t in ticks:
        t.join(120)
    now = {r.run_id: r for r in records(hosts[0])}
    running = [r for r in now.values() if r.status is RunStatus.SUBMITTED]
    assert len(backend.jobs) == 6 and len(running) == 3
    assert {r.run_id for r in running} == {r.run_id for r in queue[:3]}  # the oldest three
    assert len(read_slots(hosts[0].ledger.table).held) == 3


def test_a_queued_run_keeps_the_content_it_was_keyed_on(capped, store, backend, clock):
    from retrain import keys
    from retrain.backends.snapshot import dataset_prefix

    ids = _land(capped, store, clock, 3)
    waiting = capped.ledger.get(ids[2])
    container = capped.settings.landing_container
    original = batch_files(n_train=12)  # what b02 held when it was queued
    upload(store, container, "b02", batch_files(n_train=30))  # re-uploaded while it waits
    prefix = dataset_prefix(capped.settings, keys.data_version(waiting.run_id))
    for file, data in original.items():
        kept = store.read_range(capped.settings.datasets_container, prefix + file, 0, len(data) + 1)
        assert kept == data
    _end(backend, capped, ids[0])
    capped.sweep()
    [request] = [s for s in backend.submits if s.run_id == waiting.run_id]
    assert request.data_version == keys.data_version(waiting.run_id)
    assert [b.etag for b in request.data.blobs] == [b["etag"] for b in waiting.blobs]
