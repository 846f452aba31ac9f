"""Recovery from any single storage fault. Each storage request of a claim fails in turn, once,
either before it reaches storage or after storage applied it (the answer is lost); the host then
retries as it does (blob events), or the caller does (webhook: 503 with Retry-After), and the
next sweep tick runs. Every time: exactly one listed run, Submitted, and one job."""

from __future__ import annotations

import threading
import uuid
from contextlib import suppress
from dataclasses import replace

import pytest
from apphelpers import FakeBackend, batch_files, blob_event, http, settle_messages, upload
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport

from retrain.backends.base import BlobRef, JobState, LandingBatch, RunStatus
from retrain.backends.snapshot import snapshot_batch
from retrain.ledger.records import RunRecord
from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.storage import BlobStore, StorageAccount

HOST_ATTEMPTS = 5  # the blob trigger's poison threshold (host.json)


class FaultyTransport(RequestsTransport):
    """Fails request number ``fail_at`` (counting from 1) once: ``before`` it is sent (storage
    never sees it) or ``after`` (storage applied it, the answer is lost)."""

    def __init__(self, fail_at: int = 0, when: str = "before") -> None:
        super().__init__()
        self.fail_at, self.when, self.sent = fail_at, when, 0
        self.lock = threading.Lock()

    def send(self, request, **kwargs):
        with self.lock:
            self.sent += 1
            failing = self.sent == self.fail_at
        if failing and self.when == "before":
            raise ServiceRequestError("injected fault: storage stopped")
        response = super().send(request, **kwargs)
        if failing:
            raise ServiceResponseError("injected fault: the answer was lost")
        return response


def _service(settings, transport: FaultyTransport, backend: FakeBackend) -> RetrainService:
    store = BlobStore(StorageAccount(settings, transport=transport, retries=0))
    svc = RetrainService(settings, store=store, backend=backend)
    svc.settling.retry_base_s = 0  # a look deferred through the settle queue comes back at once
    service_module.set_service(svc)
    return svc


def _count(settings, store, action) -> int:
    """How many storage requests ``action(service)`` makes without faults."""
    transport = FaultyTransport()
    action(_service(settings, transport, FakeBackend()))
    return transport.sent


def _one_submitted_run(svc: RetrainService, backend: FakeBackend) -> None:
    svc.sweep()  # the next tick, without faults
    listed = svc.ledger.recent(10)
    assert len(listed) == 1, listed
    [run] = listed
    assert run.status in (RunStatus.SUBMITTED, RunStatus.RUNNING)  # the tick saw it start
    assert run.submitted_at and run.claimed_at is None
    assert list(backend.jobs) == [run.job_name]
    assert [s.run_id for s in svc.ledger.active()] == [run.run_id]


@pytest.fixture
def fresh(settings):
    """Settings with a table of their own, for each attempt."""

    def make():
        return replace(settings, runs_table=f"faults{uuid.uuid4().hex[:12]}")

    yield make
    service_module.set_service(None)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_blob_event_survives_any_single_storage_fault(fresh, store, when):
    container = fresh().landing_container
    path = upload(store, container, "clean", batch_files())[0]
    requests = _count(fresh(), store, lambda svc: blob_event(store, path))
    assert requests >= 5  # list, validation reads, table, claim, record

    for fail_at in range(1, requests + 1):
        settings, backend = fresh(), FakeBackend()
        svc = _service(settings, FaultyTransport(fail_at, when), backend)
        for _ in range(HOST_ATTEMPTS):  # the host retries a failed invocation
            try:
                blob_event(store, path)
                break
            except Exception:
                continue
        # A table fault before the record exists defers the look through the settle queue.
        settle_messages(svc, until=lambda s=svc: bool(s.ledger.recent(1)), timeout=10)
        _one_submitted_run(svc, backend)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_webhook_call_survives_any_single_storage_fault(fresh, store, when):
    upload(store, fresh().landing_container, "hooked", batch_files())
    requests = _count(fresh(), store, lambda svc: http("POST", "retrain", {"data": "hooked"}))

    for fail_at in range(1, requests + 1):
        settings, backend = fresh(), FakeBackend()
        svc = _service(settings, FaultyTransport(fail_at, when), backend)
        status, answer, headers = http("POST", "retrain", {"data": "hooked"})
        if status == 503:  # says so, and when to come back; the caller does
            assert headers["Retry-After"] and "unavailable" in answer["error"]["message"]
            assert http("POST", "retrain", {"data": "hooked"})[0] == 202
        else:
            assert status == 202
        _one_submitted_run(svc, backend)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_sweep_tick_survives_any_single_storage_fault(fresh, store, when):
    path = upload(store, fresh().landing_container, "swept", batch_files())[0]

    def ended(svc: RetrainService, backend: FakeBackend) -> None:
        blob_event(store, path)
        [run] = svc.ledger.recent(1)
        backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")

    transport, backend = FaultyTransport(), FakeBackend()
    svc = _service(fresh(), transport, backend)
    ended(svc, backend)
    before = transport.sent
    svc.sweep()
    requests = transport.sent - before
    assert requests == 2  # the active rows' query; the run's one transaction

    for fail_at in range(1, requests + 1):
        transport, backend = FaultyTransport(), FakeBackend()
        svc = _service(fresh(), transport, backend)
        ended(svc, backend)
        transport.fail_at, transport.when = transport.sent + fail_at, when
        with suppress(Exception):  # the query failed: the tick did nothing; the timer fires again
            svc.sweep()
        svc.sweep()
        [run] = svc.ledger.recent(10)
        assert run.status is RunStatus.COMPLETED and svc.ledger.active() == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_data_version_snapshot_survives_any_single_storage_fault(fresh, store, when):
    """Each request of a snapshot (container create, copies, reads of an existing copy) fails
    in turn, once; the repeat leaves the same keyed bytes at the same place."""
    container = fresh().landing_container
    files = batch_files()
    upload(store, container, "kept", files)
    batch = LandingBatch(
        container,
        "kept",
        tuple(BlobRef(b.name, b.url, b.etag) for b in store.list(container, "kept/")),
    )

    def snap(settings, transport: FaultyTransport) -> list[str]:
        faulty = BlobStore(StorageAccount(settings, transport=transport, retries=0))
        return snapshot_batch(faulty, settings, batch, "v1")

    transport = FaultyTransport()
    snap(replace(fresh(), datasets_container=f"ds-{uuid.uuid4().hex[:12]}"), transport)
    requests = transport.sent
    assert requests >= len(files)  # at least one copy request a file

    for fail_at in range(1, requests + 1):
        settings = replace(fresh(), datasets_container=f"ds-{uuid.uuid4().hex[:12]}")
        transport, names = FaultyTransport(fail_at, when), []
        for _ in range(HOST_ATTEMPTS):
            try:
                names = snap(settings, transport)
                break
            except Exception:
                continue
        copies = {n.rpartition("/")[2]: n for n in names}
        assert set(copies) == set(files)
        for file, data in files.items():
            got = store.read_range(settings.datasets_container, copies[file], 0, len(data) + 1)
            assert got == data, (fail_at, file)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_queued_run_survives_any_single_storage_fault(fresh, store, when):
    """Under MAX_ACTIVE_RUNS=1 a second batch is queued, and later admitted by a sweep tick; each
    request of the queuing event, and then of the admitting tick, fails in turn, once. Every
    time: two listed runs, the second Queued until the first ends, then Submitted; two jobs."""
    container = fresh().landing_container
    first = upload(store, container, "q1", batch_files(n_train=11))[0]
    second = upload(store, container, "q2", batch_files(n_train=12))[0]

    def capped():
        return replace(fresh(), max_active_runs=1)

    def queued(svc: RetrainService, backend: FakeBackend) -> RunRecord:
        runs = {r.source: r for r in svc.ledger.recent(10)}
        assert len(runs) == 2, runs
        waiting = runs[f"{container}/q2"]
        assert waiting.status is RunStatus.QUEUED and list(backend.jobs) == [
            runs[f"{container}/q1"].job_name
        ]
        return waiting

    def admitted(svc: RetrainService, backend: FakeBackend, waiting: RunRecord) -> None:
        svc.sweep()  # the next tick, without faults
        now = svc.ledger.get(waiting.run_id)
        assert now.status in (RunStatus.SUBMITTED, RunStatus.RUNNING) and now.submitted_at, now
        assert sorted(backend.jobs) == sorted(r.job_name for r in svc.ledger.recent(10))

    transport, backend = FaultyTransport(), FakeBackend()
    svc = _service(capped(), transport, backend)
    blob_event(store, first)
    before = transport.sent
    blob_event(store, second)
    event_requests = transport.sent - before
    [done] = [r for r in svc.ledger.recent(10) if r.source.endswith("q1")]
    backend.states[done.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    before = transport.sent
    svc.sweep()
    tick_requests = transport.sent - before
    assert event_requests >= 4 and tick_requests >= 4  # reads, create, snapshot; slots, admit

    for fail_at in range(1, event_requests + 1):
        transport, backend = FaultyTransport(), FakeBackend()
        svc = _service(capped(), transport, backend)
        blob_event(store, first)
        transport.fail_at, transport.when = transport.sent + fail_at, when
        for _ in range(HOST_ATTEMPTS):
            try:
                blob_event(store, second)
                break
            except Exception:
                continue
        # A table fault before the record exists defers the look through the settle queue.
        settle_messages(svc, until=lambda s=svc: len(s.ledger.recent(10)) == 2, timeout=10)
        waiting = queued(svc, backend)
        [done] = [r for r in svc.ledger.recent(10) if r.source.endswith("q1")]
        backend.states[done.job_name] = JobState(RunStatus.COMPLETED, "Completed")
        admitted(svc, backend, waiting)

    for fail_at in range(1, tick_requests + 1):
        transport, backend = FaultyTransport(), FakeBackend()
        svc = _service(capped(), transport, backend)
        blob_event(store, first)
        blob_event(store, second)
        waiting = queued(svc, backend)
        [done] = [r for r in svc.ledger.recent(10) if r.source.endswith("q1")]
        backend.states[done.job_name] = JobState(RunStatus.COMPLETED, "Completed")
        transport.fail_at, transport.when = transport.sent + fail_at, when
        with suppress(Exception):  # a failed query: the tick did nothing; the timer fires again
            svc.sweep()
        admitted(svc, backend, waiting)
