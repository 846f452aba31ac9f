"""The blob trigger, invoked as the host does for its SDK-type binding (the extension's converter
builds a real ``BlobClient`` from the names the host sends), on Azurite."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import replace

import pytest
from apphelpers import (
    N_TEST,
    N_TRAIN,
    batch_files,
    blob_event,
    idx_images,
    idx_labels,
    records,
    timer_tick,
    upload,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient

from retrain import keys
from retrain.backends.base import LandingBatch, RunStatus
from retrain.emulators.functions_host import blob_binding_data, functions
from retrain.errors import TransientError
from retrain.service.submission import CLAIM_LEASE


def test_four_files_make_one_run(service, store, backend):
    container = service.settings.landing_container
    paths = []
    for file, data in batch_files().items():  # the batch fills up one file at a time
        if paths:
            assert records(service) == [] and backend.submits == []
        [path] = upload(store, container, "batch-1", {file: data})
        blob_event(store, path)
        paths.append(path)
    for path in paths:  # every event delivered again
        blob_event(store, path)

    [run] = records(service)
    [request] = backend.submits
    assert run.status is RunStatus.SUBMITTED
    assert run.source == f"{container}/batch-1" and run.trigger == "blob"
    assert run.job_name == request.job_name == keys.job_name(run.run_id)
    assert sorted(b["name"] for b in run.blobs) == sorted(p.partition("/")[2] for p in paths)
    assert run.data_asset == f"fashion-mnist:{request.data_version}"
    assert run.studio_url and run.submitted_at and run.claimed_at is None
    assert isinstance(request.data, LandingBatch) and len(request.data.blobs) == 4
    assert request.pipeline.job_name == request.job_name
    assert service.ledger.active()[0].run_id == run.run_id


def test_same_event_eight_times_concurrently_is_one_run(service, store, backend):
    backend.delay = 0.2  # a slow submission keeps the race window open
    paths = upload(store, service.settings.landing_container, "batch-2", batch_files())
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            blob_event(store, paths[0])
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(records(service)) == 1
    assert len(backend.submits) == 1
    assert len(service.ledger.recent(10)) == 1


def test_reupload_with_new_content_is_a_second_run(service, store, backend):
    container = service.settings.landing_container
    paths = upload(store, container, "batch-3", batch_files())
    blob_event(store, paths[0])
    upload(store, container, "batch-3", batch_files(n_train=N_TRAIN + 1, n_test=N_TEST + 1))
    for path in paths:
        blob_event(store, path)

    runs = records(service)
    assert len(runs) == 2 == len(backend.submits)
    assert len({r.job_name for r in runs}) == 2
    assert {r.source for r in runs} == {f"{container}/batch-3"}


def test_raw_and_gzip_files_mix_and_raw_wins(service, store, backend):
    container = service.settings.landing_container
    files = {**batch_files(gz=False), **batch_files(gz=True)}
    paths = upload(store, container, "batch-4", files)
    blob_event(store, paths[-1])
    [run] = records(service)
    assert sorted(b["name"].rpartition("/")[2] for b in run.blobs) == sorted(batch_files(gz=False))


@pytest.mark.parametrize(
    "path",
    [
        "batch-5/readme.txt",
        "batch-5/train-images-idx3-ubyte.zip",
        "batch-5/nested/train-images-idx3-ubyte.gz",
    ],
)
def test_other_blobs_are_ignored(service, store, backend, path):
    container = service.settings.landing_container
    upload(store, container, "batch-5", batch_files())
    store.put(container, path, b"x")
    blob_event(store, f"{container}/{path}")
    assert records(service) == [] and backend.submits == []


def test_blob_outside_the_landing_container_is_ignored(service, store, backend):
    outcome = service.handle_blob("elsewhere/batch/train-images-idx3-ubyte.gz")
    assert outcome.action == "ignored" and "landing container" in outcome.reason


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


GOOD = batch_files()
MALFORMED = {
    "truncated gzip header": ("train-images-idx3-ubyte.gz", GOOD["train-images-idx3-ubyte.gz"][:9]),
    "truncated gzip data": (
        "train-images-idx3-ubyte.gz",
        GOOD["train-images-idx3-ubyte.gz"][:-30],
    ),
    "wrong magic": ("t10k-labels-idx1-ubyte.gz", _gz(idx_labels(N_TEST, magic=0x0803))),
    "count mismatch": ("train-labels-idx1-ubyte.gz", _gz(idx_labels(N_TRAIN - 1))),
    "wrong shape": ("t10k-images-idx3-ubyte.gz", _gz(idx_images(N_TEST, rows=27))),
    "empty file": ("t10k-images-idx3-ubyte.gz", b""),
    "empty gzip": ("t10k-images-idx3-ubyte.gz", _gz(b"")),
    "lying header (gzip)": (
        "train-images-idx3-ubyte.gz",
        _gz(idx_images(N_TRAIN)[:4] + (10**6).to_bytes(4, "big") + idx_images(N_TRAIN)[8:]),
    ),
    "lying header (raw)": ("train-images-idx3-ubyte", idx_images(N_TRAIN, declared=2**31)),
    "not gzip, not IDX": ("train-labels-idx1-ubyte.gz", b"PK\x03\x04 a zip file"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_batch_is_rejected_once_naming_the_file(service, store, backend, case):
    bad_file, data = MALFORMED[case]
    base = bad_file.removesuffix(".gz")
    files = {name: d for name, d in GOOD.items() if not name.startswith(base)}
    files[bad_file] = data
    paths = upload(store, service.settings.landing_container, "bad", files)

    for path in paths + paths:  # every event, twice
        blob_event(store, path)

    [run] = records(service)
    assert run.status is RunStatus.REJECTED
    assert run.reason is not None and run.reason.startswith(f"{bad_file}: "), run.reason
    assert backend.submits == []
    assert service.ledger.active() == []


def test_transient_failure_raises_and_the_retry_submits_once(service, store, backend):
    backend.submit_errors.append(TransientError("Azure ML answered 503"))
    paths = upload(store, service.settings.landing_container, "batch-6", batch_files())

    with pytest.raises(TransientError):
        blob_event(store, paths[0])
    [claimed] = records(service)
    assert claimed.submitted_at is None and claimed.claimed_at is None  # the claim was released

    blob_event(store, paths[0])  # the host's retry
    blob_event(store, paths[1])
    [run] = records(service)
    assert run.status is RunStatus.SUBMITTED and run.attempts == 2
    assert len(backend.jobs) == 1 and len(backend.submits) == 2
    assert {r.job_name for r in backend.submits} == {run.job_name}


def test_a_claim_whose_holder_died_is_completed_by_a_later_delivery(service, store, backend, clock):
    paths = upload(store, service.settings.landing_container, "batch-7", batch_files())
    blob_event(store, paths[0])
    [run] = records(service)
    # Simulate a holder that claimed and died: reopen the claim on the stored record.
    service.ledger.update(
        run.run_id,
        lambda r: replace(r, submitted_at=None, claimed_at=r.created_at),
    )
    blob_event(store, paths[1])  # the claim is fresh: left to its holder
    assert len(backend.submits) == 1

    clock.now += CLAIM_LEASE * 1.5
    blob_event(store, paths[2])  # expired: this delivery completes the submission
    assert len(backend.submits) == 2 and len(backend.jobs) == 1
    [run] = records(service)
    assert run.submitted_at is not None and run.claimed_at is None


def test_a_bad_setting_found_at_submission_raises_and_leaves_the_run_to_replay(
    service, store, backend
):
    """A missing compute or workspace is the app's fault, not the batch's: the event raises (the
    host retries, then parks it for replay) and the run is not recorded Failed, so once the
    setting is fixed the next sweep tick submits it."""
    from retrain.errors import ConfigurationError

    backend.submit_errors.append(ConfigurationError("AZUREML_GPU_COMPUTE: no compute gpu-x"))
    paths = upload(store, service.settings.landing_container, "batch-cfg", batch_files())

    with pytest.raises(ConfigurationError, match="AZUREML_GPU_COMPUTE"):
        blob_event(store, paths[0])
    [claimed] = records(service)
    assert not claimed.terminal and claimed.reason is None
    assert claimed.submitted_at is None and claimed.claimed_at is None  # the claim was released

    timer_tick()  # the setting is fixed: the next sweep submits it (as a replay would)
    [run] = records(service)
    assert run.status is RunStatus.SUBMITTED and len(backend.jobs) == 1
    blob_event(store, paths[0])  # the replayed event finds it submitted
    assert len(backend.submits) == 2 and len(backend.jobs) == 1


def test_storage_outage_is_transient(settings, backend):
    """Connection trouble (after the SDK's retries, none here) surfaces as TransientError."""
    from retrain.service.core import RetrainService
    from retrain.storage import BlobStore, StorageAccount

    nowhere = "http://127.0.0.1:9/devstoreaccount1"
    connection = settings.storage_connection or ""
    for service in ("Blob", "Queue", "Table"):
        start = connection.index(f"{service}Endpoint=")
        end = connection.index(";", start)
        connection = f"{connection[:start]}{service}Endpoint={nowhere}{connection[end:]}"
    down = replace(settings, storage_connection=connection)
    svc = RetrainService(down, store=BlobStore(StorageAccount(down, retries=0)), backend=backend)
    with pytest.raises(TransientError, match="storage is unreachable"):
        svc.handle_blob(f"{settings.landing_container}/b/train-images-idx3-ubyte.gz")
    assert backend.submits == []


def test_a_misconfigured_app_raises_so_the_event_can_be_replayed(monkeypatch, store, settings):
    from retrain.errors import ConfigurationError
    from retrain.service import core as service_module

    service_module.set_service(None)
    monkeypatch.setenv("RETRAIN_BACKEND", "kubernetes")
    with pytest.raises(ConfigurationError, match="RETRAIN_BACKEND"):
        blob_event(store, f"{settings.landing_container}/b/train-images-idx3-ubyte.gz")


def test_an_event_sends_the_worker_names_not_the_blobs_content(service, store, backend):
    """The SDK-type binding: per event, the host sends a small JSON of names, whatever the
    blob's size; the function gets a BlobClient on that blob and reads only its name."""
    container = service.settings.landing_container
    big = idx_images(2000)  # ~1.5 MB of pixels
    [path] = upload(store, container, "sized", {"train-images-idx3-ubyte": big})
    payload = blob_binding_data(container, "sized/train-images-idx3-ubyte")

    assert json.loads(payload) == {
        "Connection": "DataStorage",
        "ContainerName": container,
        "BlobName": "sized/train-images-idx3-ubyte",
    }
    assert len(payload) < 200 < len(big)
    blob_event(store, path)  # an incomplete batch: nothing runs, nothing fails
    assert records(service) == [] and backend.submits == []


def test_the_function_sends_no_request_through_the_blob_client_it_is_given(service, store):
    """landing_blob takes the name from its BlobClient and nothing else: no download, no
    property read through that client (the service reads what it needs, ranged, itself)."""
    sent: list[str] = []

    class Counting(RequestsTransport):
        def send(self, request, **kwargs):
            sent.append(f"{request.method} {request.url}")
            return super().send(request, **kwargs)

    container = service.settings.landing_container
    upload(store, container, "quiet", {"train-images-idx3-ubyte": idx_images(10)})
    client = BlobServiceClient.from_connection_string(
        service.settings.storage_connection or "", transport=Counting()
    ).get_blob_client(container, "quiet/train-images-idx3-ubyte")
    functions()["landing_blob"](client)
    assert sent == []
