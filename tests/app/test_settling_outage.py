"""Settling when the runs table is down, and a batch that never settles, on Azurite: the
settle queue and the blobs still work during a table outage, so a re-check (or a blob event)
that meets one goes back on the queue with backoff and loses no batch, however long the
outage outlasts the host's retries; and a batch rewritten again and again keeps one pending
re-check, not one per event."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from datetime import timedelta

import azure.functions as func
import pytest
from apphelpers import FakeBackend, batch_files, blob_event, function, records, upload
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.queue import TextBase64DecodePolicy

from retrain.backends.base import RunStatus
from retrain.clock import iso, utcnow
from retrain.errors import TransientError
from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.storage import BlobStore, StorageAccount

HOST_ATTEMPTS = 5  # host.json: maxDequeueCount


class TableOutage(RequestsTransport):
    """Refuses every request to the table service while ``down``; blobs and queues work."""

    def __init__(self, table_port: int) -> None:
        super().__init__()
        self.marker, self.down, self.refused = f":{table_port}/", False, 0
        self.lock = threading.Lock()

    def send(self, request, **kwargs):
        if self.down and self.marker in request.url:
            with self.lock:
                self.refused += 1
            raise ServiceRequestError("injected fault: the table service is down")
        return super().send(request, **kwargs)


@dataclass
class Host:
    """Delivers the settle queue as the Functions host does: a message whose invocation fails
    comes back after ``visibility`` s (host.json says 10), and after 5 failures moves to
    ``<queue>-poison``."""

    svc: RetrainService
    visibility: int = 1
    failures: int = 0
    invocations: int = 0
    poisoned: list[str] = field(default_factory=list)

    def queue(self, name: str):
        account = StorageAccount(self.svc.settings)  # the host's own, with its retries
        client = account.queues.get_queue_client(
            name, message_decode_policy=TextBase64DecodePolicy()
        )
        return client

    def pending(self) -> int:
        props = self.queue(self.svc.settings.settle_queue).get_queue_properties()
        return int(props.approximate_message_count)

    def deliver(self, *, until, timeout: float) -> None:
        import time

        queue = self.queue(self.svc.settings.settle_queue)
        ends = time.monotonic() + timeout
        while not until() and time.monotonic() < ends:
            for message in queue.receive_messages(max_messages=8, visibility_timeout=60):
                if time.monotonic() > ends:
                    break
                self.invocations += 1
                try:
                    function("settle_batch")(
                        func.QueueMessage(id=message.id, body=message.content.encode())
                    )
                except Exception:
                    self.failures += 1
                    if message.dequeue_count >= HOST_ATTEMPTS:
                        self.poisoned.append(message.content)
                        queue.delete_message(message)
                    else:
                        queue.update_message(message, visibility_timeout=self.visibility)
                    continue
                queue.delete_message(message)
            time.sleep(0.1)


@pytest.fixture
def outage(azurite) -> TableOutage:
    return TableOutage(azurite.ports["table"])


def _service(settings, outage: TableOutage, settle_s: int) -> RetrainService:
    store = BlobStore(StorageAccount(settings, transport=outage, retries=0))
    svc = RetrainService(
        replace(settings, settle_seconds=settle_s), store=store, backend=FakeBackend()
    )
    svc.settling.retry_base_s = 0  # the backoff's first steps, made instant for the test
    service_module.set_service(svc)
    return svc


@pytest.fixture
def cleanup():
    yield
    service_module.set_service(None)


def test_a_recheck_failing_past_the_hosts_retries_in_a_table_outage_loses_no_batch(
    settings, store, outage, cleanup
):
    svc = _service(settings, outage, settle_s=2)
    for path in upload(store, svc.settings.landing_container, "b", batch_files()):
        blob_event(store, path)
    host = Host(svc)
    outage.down = True  # more failed looks than the host's 5 attempts at one message
    host.deliver(until=lambda: outage.refused > 2 * HOST_ATTEMPTS, timeout=20)
    outage.down = False
    host.deliver(until=lambda: bool(records(svc)), timeout=15)

    assert host.failures == 0 and host.poisoned == []  # each look went back on the queue
    [run] = records(svc)
    assert run.status is RunStatus.SUBMITTED


def test_a_blob_event_in_a_table_outage_with_no_settle_time_loses_no_batch(
    settings, store, outage, cleanup
):
    svc = _service(settings, outage, settle_s=0)
    outage.down = True
    for path in upload(store, svc.settings.landing_container, "b", batch_files()):
        blob_event(store, path)  # nothing raised: each event is re-checked later
    host = Host(svc)
    host.deliver(until=lambda: outage.refused > 2 * HOST_ATTEMPTS, timeout=20)
    outage.down = False
    host.deliver(until=lambda: bool(records(svc)) and host.pending() == 0, timeout=15)

    assert host.failures == 0 and host.poisoned == []
    [run] = records(svc)
    assert run.status is RunStatus.SUBMITTED and len(svc.backend.submits) == 1  # type: ignore[attr-defined]


def test_a_recheck_deferred_past_its_maximum_age_raises_for_the_poison_queue(
    settings, store, outage, cleanup
):
    svc = _service(settings, outage, settle_s=2)
    upload(store, svc.settings.landing_container, "b", batch_files())
    since = iso(utcnow() - timedelta(days=2))
    body = {"source": f"{svc.settings.landing_container}/b", "token": "ab12", "tries": 40,
            "since": since}  # fmt: skip
    outage.down = True
    with pytest.raises(TransientError, match="storage is unreachable"):
        function("settle_batch")(func.QueueMessage(id="m1", body=json.dumps(body).encode()))


def test_a_batch_that_never_settles_keeps_one_pending_recheck(settings, store, outage, cleanup):
    """Rewritten every 0.4 s, each with its blob event, for longer than the settle time: at
    most one re-check is pending at any time; once it stops changing, it runs once, on the
    final content, and no message is left."""
    svc = _service(settings, outage, settle_s=2)
    container = svc.settings.landing_container
    for path in upload(store, container, "hot", batch_files(gz=False)):
        blob_event(store, path)
    host = Host(svc)
    most = host.pending()
    for i in range(12):
        [path] = upload(store, container, "hot", {"t10k-labels-idx1-ubyte": _labels(i)})
        blob_event(store, path)
        host.deliver(until=lambda: False, timeout=0.3)
        most = max(most, host.pending())
    assert most == 1 and records(svc) == []

    host.deliver(until=lambda: bool(records(svc)) and host.pending() == 0, timeout=15)
    [run] = records(svc)
    final = sorted(blob.etag for blob in store.list(container, "hot/"))
    assert sorted(b["etag"] for b in run.blobs) == final
    assert host.pending() == 0 and host.failures == 0


def _labels(i: int) -> bytes:
    """A valid labels file for the test set of ``batch_files()``, different for each ``i``."""
    files = batch_files(gz=False)
    data = bytearray(files["t10k-labels-idx1-ubyte"])
    data[-1] = i % 10
    return bytes(data)


def test_a_change_during_the_live_rechecks_look_is_never_missed(
    settings, store, outage, cleanup, monkeypatch
):
    """The live re-check lists the batch with a file missing (deleted meanwhile); before it
    acts, the file lands again and its blob event finds the re-check pending, so it only
    touches the settle row and sends nothing. The re-check's guarded release then fails, it
    looks again, and the batch runs once, on its final content."""
    svc = _service(settings, outage, settle_s=2)
    container = svc.settings.landing_container
    files = batch_files(gz=False)
    for path in upload(store, container, "b", files):
        blob_event(store, path)
    store.delete(container, "b/t10k-labels-idx1-ubyte")
    real_list = type(svc.store).list
    back: list[str] = []

    def list_then_land(self, *args, **kwargs):
        found = real_list(self, *args, **kwargs)
        if not back:  # the re-check's own look: the file is missing
            back.extend(upload(store, container, "b", {"t10k-labels-idx1-ubyte": _labels(3)}))
            blob_event(store, back[0])  # finds the live re-check: touches the row only
        return found

    monkeypatch.setattr(type(svc.store), "list", list_then_land)
    host = Host(svc)
    host.deliver(until=lambda: bool(records(svc)) and host.pending() == 0, timeout=15)

    [run] = records(svc)
    final = sorted(blob.etag for blob in store.list(container, "b/"))
    assert back and sorted(b["etag"] for b in run.blobs) == final


@pytest.mark.parametrize(
    "extra",
    [{"token": "NOT-HEX"}, {"token": 7}, {"tries": -1}, {"tries": True}, {"tries": 1, "since": "x"},
     {"tries": 1, "since": "2026-01-01T00:00:00"}],
)  # fmt: skip
def test_a_settle_message_with_a_bad_field_is_logged_and_dropped(
    settings, store, outage, cleanup, caplog, extra
):
    svc = _service(settings, outage, settle_s=2)
    body = {"source": f"{svc.settings.landing_container}/b", **extra}
    function("settle_batch")(func.QueueMessage(id="m1", body=json.dumps(body).encode()))
    named = list(extra)[-1]  # the field at fault
    assert "settle_batch" in caplog.text and named in caplog.text
    assert records(svc) == []
