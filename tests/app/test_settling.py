"""Settling on Azurite: a complete batch runs only once none of its files has changed for
BATCH_SETTLE_SECONDS; the re-check travels through the settle queue (a message with a visibility
delay) to the queue-triggered ``settle_batch``, as the host would deliver it."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest
from apphelpers import batch_files, blob_event, records, settle_messages, upload

from retrain.backends.base import RunStatus
from retrain.clock import parse_time
from retrain.service import core as service_module
from retrain.service.core import RetrainService

SETTLE_S = 3


@pytest.fixture
def settling(settings, store, backend):
    """The service on the real clock (Azurite stamps the blobs), settling for SETTLE_S."""
    svc = RetrainService(replace(settings, settle_seconds=SETTLE_S), store=store, backend=backend)
    service_module.set_service(svc)
    yield svc
    service_module.set_service(None)


def _etags(store, container: str, batch: str) -> list[str]:
    return sorted(blob.etag for blob in store.list(container, f"{batch}/"))


def test_a_first_upload_runs_once_it_has_settled(settling, store, backend, caplog):
    caplog.set_level(logging.INFO, logger="function_app")
    container = settling.settings.landing_container
    paths = upload(store, container, "first", batch_files())
    for path in paths:
        blob_event(store, path)
    assert records(settling) == [] and backend.submits == []
    assert caplog.text.count("settling: ") == 4

    delivered = settle_messages(settling, until=lambda: bool(records(settling)), timeout=20)
    [run] = records(settling)
    assert run.status is RunStatus.SUBMITTED and len(backend.submits) == 1
    assert sorted(b["etag"] for b in run.blobs) == _etags(store, container, "first")
    last_change = max(blob.last_modified for blob in store.list(container, "first/"))
    waited = (parse_time(run.submitted_at) - last_change).total_seconds()
    assert SETTLE_S <= waited <= SETTLE_S + 8  # never before it settled; then within seconds
    assert 1 <= delivered <= 4

    settle_messages(settling, until=lambda: False, timeout=SETTLE_S + 2)  # the rest: no new run
    assert len(records(settling)) == 1 and len(backend.submits) == 1


def test_a_file_by_file_reupload_runs_once_on_the_final_content(settling, store, backend):
    container = settling.settings.landing_container
    files = batch_files()
    for path in upload(store, container, "again", files):
        blob_event(store, path)
    settle_messages(settling, until=lambda: bool(records(settling)), timeout=15)
    [first] = records(settling)

    new_files = batch_files(n_train=20, n_test=9)  # new content, same names
    for name, data in new_files.items():  # one file at a time, an event after each
        [path] = upload(store, container, "again", {name: data})
        blob_event(store, path)
        time.sleep(SETTLE_S / 6)  # quicker than the settle time: the upload is still going on
    final = _etags(store, container, "again")

    settle_messages(settling, until=lambda: len(records(settling)) > 1, timeout=20)
    settle_messages(settling, until=lambda: False, timeout=SETTLE_S + 2)  # let stragglers fire
    runs = records(settling)
    assert len(runs) == 2 and len(backend.submits) == 2
    [second] = [run for run in runs if run.run_id != first.run_id]
    assert sorted(b["etag"] for b in second.blobs) == final  # no mix of the two uploads


def test_a_settling_batch_asked_for_by_webhook_is_a_conflict_naming_the_wait(settling, store):
    from apphelpers import http

    upload(store, settling.settings.landing_container, "hot", batch_files())
    status, answer, _ = http("POST", "retrain", {"data": "hot"})
    assert status == 409 and answer["error"]["field"] == "data"
    assert f"runs only once unchanged for {SETTLE_S} s" in answer["error"]["message"]
    time.sleep(SETTLE_S + 1.5)
    assert http("POST", "retrain", {"data": "hot"})[0] == 202


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"source": 7}', b'{"source": "elsewhere/batch"}', b'{"other": 1}', b"\xff"],
)
def test_a_bad_settle_message_is_logged_and_dropped(settling, body, caplog):
    import azure.functions as func
    from apphelpers import function

    function("settle_batch")(func.QueueMessage(id="m1", body=body))
    assert "settle_batch" in caplog.text and ("message" in caplog.text or "source" in caplog.text)
    assert records(settling) == []


@pytest.mark.parametrize("hostile", ["deep", "surrogate"])
def test_a_hostile_settle_message_is_logged_and_dropped_never_poisoned(settling, hostile, caplog):
    import azure.functions as func
    from apphelpers import function

    container = settling.settings.landing_container
    body = {
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "surrogate": b'{"source": "%s/b\\udc80"}' % container.encode(),
    }[hostile]
    function("settle_batch")(func.QueueMessage(id="m1", body=body))  # raises nothing
    assert "settle_batch" in caplog.text and ("message" in caplog.text or "source" in caplog.text)
    assert records(settling) == []
