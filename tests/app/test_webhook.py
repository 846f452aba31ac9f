"""The webhook: ``POST /api/retrain``, ``GET /api/retrain/{run_id}``, ``GET /api/retrain``,
called with real ``func.HttpRequest`` objects; storage is Azurite."""

from __future__ import annotations

import json

import pytest
from apphelpers import DAMAGED, batch_files, damage, http, records, upload

from retrain.backends.base import DataAsset, LandingBatch, RunStatus
from retrain.backends.local import LocalBackend
from retrain.landing.decisions import MAX_BODY


@pytest.fixture
def batch(service, store) -> str:
    upload(store, service.settings.landing_container, "week-1", batch_files())
    return "week-1"


def test_post_starts_a_run_and_answers_202_with_where_to_look(service, backend, batch):
    status, body, headers = http("POST", "retrain", {"data": batch, "epochs": 3})

    assert status == 202
    [run] = records(service)
    [request] = backend.submits
    assert body["run_id"] == run.run_id and body["job_name"] == run.job_name == request.job_name
    assert body["status"] == "Submitted" and body["created"] is True
    assert body["status_url"] == f"http://localhost:7071/api/retrain/{run.run_id}"
    assert headers["Location"] == body["status_url"]
    assert run.trigger == "http" and run.params == {"epochs": 3, "experiment": None}
    assert request.pipeline.epochs == 3
    assert isinstance(request.data, LandingBatch) and request.data.batch == batch


def test_get_one_run_and_the_list_newest_first(service, batch, clock):
    from datetime import timedelta

    ids = []
    for epochs in (1, 2, 3):
        clock.now += timedelta(seconds=1)
        ids.append(http("POST", "retrain", {"data": batch, "epochs": epochs})[1]["run_id"])

    status, run, _ = http("GET", f"retrain/{ids[1]}")
    assert status == 200 and run["run_id"] == ids[1] and run["params"]["epochs"] == 2

    status, listing, _ = http("GET", "retrain")
    assert status == 200 and listing["count"] == 3
    assert [r["run_id"] for r in listing["runs"]] == ids[::-1]
    _, limited, _ = http("GET", "retrain", params={"limit": "2"})
    assert [r["run_id"] for r in limited["runs"]] == ids[:0:-1]


def test_a_repeated_idempotency_key_returns_the_same_run(service, backend, batch):
    key = {"Idempotency-Key": "order-42"}
    first = http("POST", "retrain", {"data": batch}, headers=key)
    again = http("POST", "retrain", {"data": batch}, headers=key)

    assert first[0] == again[0] == 202
    assert first[1]["run_id"] == again[1]["run_id"]
    assert again[1]["created"] is False
    assert len(records(service)) == 1 and len(backend.submits) == 1
    assert records(service)[0].idempotency_key == "order-42"

    other = http("POST", "retrain", {"data": batch}, headers={"Idempotency-Key": "order-43"})
    assert other[0] == 202 and other[1]["run_id"] != first[1]["run_id"]


def test_an_idempotency_key_reused_for_another_request_is_refused(service, backend, batch):
    key = {"Idempotency-Key": "k1"}
    http("POST", "retrain", {"data": batch}, headers=key)
    status, body, _ = http("POST", "retrain", {"data": batch, "epochs": 9}, headers=key)
    assert status == 422 and body["error"]["field"] == "Idempotency-Key"
    assert len(backend.submits) == 1


def test_the_same_request_without_a_key_is_the_same_content_run(service, backend, batch, store):
    first = http("POST", "retrain", {"data": batch})
    again = http("POST", "retrain", {"data": f"{service.settings.landing_container}/{batch}/"})
    assert first[1]["run_id"] == again[1]["run_id"] and len(backend.submits) == 1


def test_a_data_asset_is_passed_to_the_backend(service, backend):
    status, _, _ = http("POST", "retrain", {"data": "azureml:fashion-mnist:7"})
    assert status == 202
    [request] = backend.submits
    assert request.data == DataAsset("fashion-mnist", "7")
    assert records(service)[0].source == "azureml:fashion-mnist:7"


def test_a_data_asset_on_the_local_backend_is_refused_and_recorded(service, settings):
    service._backend = LocalBackend(settings)
    status, body, _ = http("POST", "retrain", {"data": "azureml:fashion-mnist:7"})
    assert status == 422 and "local backend" in body["error"]["message"]
    assert body["run"]["status"] == "Failed"


def test_an_invalid_batch_is_rejected_with_422_naming_the_file(service, store, backend):
    files = {**batch_files(), "train-labels-idx1-ubyte.gz": b""}
    upload(store, service.settings.landing_container, "broken", files)
    status, body, _ = http("POST", "retrain", {"data": "broken"})
    assert status == 422 and body["error"]["field"] == "data"
    assert body["error"]["message"].startswith("train-labels-idx1-ubyte.gz: ")
    assert body["run"]["status"] == "Rejected"
    assert [r.status for r in records(service)] == [RunStatus.REJECTED]
    assert backend.submits == []


BAD_REQUESTS = {
    "malformed JSON": (b'{"data": "week-1",', 400, "body"),
    "not an object": (b'["week-1"]', 400, "body"),
    "empty body": (b"", 400, "body"),
    "not UTF-8": (b'{"data": "\xff"}', 400, "body"),
    "data missing": ({"epochs": 2}, 400, "data"),
    "data not a string": ({"data": 7}, 400, "data"),
    "epochs a string": ({"data": "week-1", "epochs": "3"}, 400, "epochs"),
    "epochs a float": ({"data": "week-1", "epochs": 2.5}, 400, "epochs"),
    "epochs a boolean": ({"data": "week-1", "epochs": True}, 400, "epochs"),
    "epochs out of range": ({"data": "week-1", "epochs": 0}, 400, "epochs"),
    "experiment not a name": ({"data": "week-1", "experiment": "a b/c"}, 400, "experiment"),
    "unknown field": ({"data": "week-1", "epoch": 3}, 400, "epoch"),
    "traversal": ({"data": "week-1/../../runs"}, 400, "data"),
    "absolute path": ({"data": "/etc/passwd"}, 400, "data"),
    "a URL": ({"data": "https://evil.example/x"}, 400, "data"),
    "backslash": ({"data": "..\\runs"}, 400, "data"),
    "asset malformed": ({"data": "azureml:only-name"}, 400, "data"),
    "other container": ({"data": "other-container/week-1"}, 404, "data"),
    "unknown batch": ({"data": "week-99"}, 404, "data"),
    "oversized body": (b'{"data": "' + b"x" * MAX_BODY + b'"}', 413, "body"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_naming_the_field(service, backend, batch, case):
    body, expected_status, field = BAD_REQUESTS[case]
    status, answer, _ = http("POST", "retrain", body)
    assert status == expected_status, answer
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]
    assert records(service) == [] and backend.submits == []


def test_an_incomplete_batch_is_a_conflict(service, store, backend):
    upload(
        store,
        service.settings.landing_container,
        "half",
        {"x.txt": b"", **dict(list(batch_files().items())[:2])},
    )
    status, answer, _ = http("POST", "retrain", {"data": "half"})
    assert status == 409 and answer["error"]["field"] == "data"
    assert "t10k-images-idx3-ubyte" in answer["error"]["message"]


def test_a_bad_idempotency_key_is_refused(service, batch):
    status, answer, _ = http("POST", "retrain", {"data": batch}, headers={"Idempotency-Key": "é"})
    assert status == 400 and answer["error"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("route", "params", "status", "field"),
    [
        ("retrain/0123456789abcdef", None, 404, "run_id"),
        ("retrain/..%2fsecrets", None, 400, "run_id"),
        ("retrain", {"limit": "0"}, 400, "limit"),
        ("retrain", {"limit": "many"}, 400, "limit"),
    ],
)
def test_bad_reads_get_a_4xx_naming_the_field(service, route, params, status, field):
    got, answer, _ = http("GET", route, params=params)
    assert got == status and answer["error"]["field"] == field


def test_transient_trouble_is_a_503_with_retry_after(service, backend, batch):
    from retrain.errors import TransientError

    backend.submit_errors.append(TransientError("Azure ML is throttling"))
    status, answer, headers = http("POST", "retrain", {"data": batch})
    assert status == 503 and headers["Retry-After"] == "30" and answer["error"]["message"]
    status, _, _ = http("POST", "retrain", {"data": batch})  # the client's retry
    assert status == 202 and len(backend.jobs) == 1


def test_an_unexpected_error_is_a_500_without_a_stack_trace(service, backend, batch):
    backend.submit_errors.append(RuntimeError("boom at line 7"))
    status, answer, _ = http("POST", "retrain", {"data": batch})
    assert status == 500
    assert "boom" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)


def test_a_damaged_run_record_is_our_500_not_the_callers_fault(service, store, batch, caplog):
    run_id = http("POST", "retrain", {"data": batch})[1]["run_id"]
    damage(service, f"run|{run_id}")
    status, answer, _ = http("GET", f"retrain/{run_id}")
    assert status == 500 and answer == {"error": {"field": None, "message": DAMAGED}}
    assert f"run {run_id}: the run record is damaged" in caplog.text  # logged for us


def test_concurrent_posts_with_one_idempotency_key_make_one_run(service, backend, batch):
    import threading

    backend.delay = 0.2
    barrier, answers = threading.Barrier(6), []

    def post() -> None:
        barrier.wait()
        answers.append(http("POST", "retrain", {"data": batch}, headers={"Idempotency-Key": "x"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a[0] for a in answers} == {202}
    assert len({a[1]["run_id"] for a in answers}) == 1
    assert len(records(service)) == 1 and len(backend.submits) == 1


def test_an_idempotent_repeat_finds_its_run_after_the_batch_is_gone(service, store, batch):
    key = {"Idempotency-Key": "k9"}
    first = http("POST", "retrain", {"data": batch}, headers=key)
    for blob in store.list(service.settings.landing_container, f"{batch}/"):
        store.delete(service.settings.landing_container, blob.name)
    again = http("POST", "retrain", {"data": batch}, headers=key)
    assert again[0] == 202 and again[1]["run_id"] == first[1]["run_id"]
    assert http("POST", "retrain", {"data": batch})[0] == 404  # without the key: unknown batch
