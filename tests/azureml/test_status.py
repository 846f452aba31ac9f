"""Job status through the real SDK: the GET, the status mapping, and the score metrics."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from amlhelpers import aml_settings
from fake_azureml import WORKSPACE_PATH

from retrain.backends import RunStatus
from retrain.backends.azureml import STATUS_MAP, AzureMLBackend
from retrain.errors import ConfigurationError, NotFoundError, TransientError

AZURE_ML_STATUSES = {  # every status the service reports, and what the ledger records
    "NotStarted": RunStatus.SUBMITTED,
    "Queued": RunStatus.SUBMITTED,
    "Preparing": RunStatus.SUBMITTED,
    "Provisioning": RunStatus.SUBMITTED,
    "Starting": RunStatus.SUBMITTED,
    "Running": RunStatus.RUNNING,
    "Finalizing": RunStatus.RUNNING,
    "CancelRequested": RunStatus.RUNNING,
    "Completed": RunStatus.COMPLETED,
    "Failed": RunStatus.FAILED,
    "Canceled": RunStatus.CANCELED,
    "NotResponding": RunStatus.RUNNING,  # the service: it can go back to any earlier state
    "Paused": RunStatus.CANCELED,
}
METRICS = {"accuracy": 0.9123, "count": 10000, "per_class": {"0": {"precision": 0.9}}}
RUN_HISTORY = f"/history/v1.0{WORKSPACE_PATH}/runs/"
DISCOVERY = ("", "/discovery")  # a client's first data-plane call finds its host, once
T0 = datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=timezone.utc)


@pytest.fixture
def job_name(backend, make_request) -> str:
    return backend.submit(make_request("batch-status")).job_name


def test_every_service_status_is_read_and_mapped(backend, use_fake, job_name):
    assert set(STATUS_MAP) == set(AZURE_ML_STATUSES)
    for raw, expected in AZURE_ML_STATUSES.items():
        if raw == "Completed":
            continue  # reads metrics too: its own tests below
        use_fake.set_job_status(job_name, raw)
        before = len(use_fake.requests)

        state = backend.job_state(job_name)

        assert (state.status, state.raw_status) == (expected, raw)
        assert state.details["studio_url"].startswith("https://ml.azure.com/runs/")
        begun = expected is not RunStatus.SUBMITTED  # only then has run history its times
        expected_reads = [f"/jobs/{job_name}"] + [RUN_HISTORY + job_name] * begun
        reads = [r.tail for r in use_fake.requests[before:] if r.tail not in DISCOVERY]
        assert reads == expected_reads
        if expected in (RunStatus.FAILED, RunStatus.CANCELED):
            assert raw in state.error and job_name in state.error
        else:
            assert state.error is None


def test_completed_job_carries_the_score_metrics(backend, use_fake, job_name):
    use_fake.complete_job(
        job_name, {"metrics.json": json.dumps(METRICS).encode(), "report.png": b"\x89PNG"}
    )
    state = backend.job_state(job_name)

    assert state.status is RunStatus.COMPLETED
    assert state.metrics == METRICS
    assert "metrics_error" not in state.details
    downloads = [r.path for r in use_fake.requests if r.path.startswith("/devstoreaccount1/")]
    assert any(p.endswith(f"/azureml/{job_name}/output_result/metrics.json") for p in downloads)


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        ({"report.png": b"\x89PNG"}, "has no metrics.json"),
        ({"metrics.json": b"{not json"}, "is not JSON"),
        ({"metrics.json": b'{"count": 3}'}, "has no accuracy"),
    ],
)
def test_completed_without_usable_metrics_is_still_completed(
    backend, use_fake, job_name, outputs, problem
):
    use_fake.complete_job(job_name, outputs)
    state = backend.job_state(job_name)

    assert state.status is RunStatus.COMPLETED
    assert state.metrics is None
    assert problem in state.details["metrics_error"]


def test_metrics_unavailable_for_now_is_transient(backend, use_fake, job_name):
    use_fake.complete_job(job_name, {"metrics.json": json.dumps(METRICS).encode()})
    use_fake.fail_next(r"/rundata$", count=100, status=503)
    with pytest.raises(TransientError, match=r"download output_result .*HTTP 503"):
        backend.job_state(job_name)
    use_fake.clear_faults()  # the service is back: the sweep's next tick reads them
    assert backend.job_state(job_name).metrics == METRICS


def test_a_throttled_status_read_is_retried(backend, use_fake, job_name):
    use_fake.set_job_status(job_name, "Running")
    use_fake.fail_next(rf"/jobs/{job_name}$", count=2, status=429, method="GET")
    assert backend.job_state(job_name).status is RunStatus.RUNNING
    assert [r.status for r in use_fake.calls("GET", rf"^/jobs/{job_name}$")][-3:] == [
        429,
        429,
        200,
    ]


def test_status_read_failing_beyond_the_retry_budget_is_transient(backend, use_fake, job_name):
    use_fake.fail_next(rf"/jobs/{job_name}$", count=50, status=503, method="GET")
    with pytest.raises(TransientError, match="HTTP 503"):
        backend.job_state(job_name)


def test_an_unknown_job_is_not_found(backend, use_fake):
    with pytest.raises(NotFoundError, match="fashion-retrain-nope"):
        backend.job_state("fashion-retrain-nope")


def test_a_wrong_workspace_is_a_configuration_error_not_a_lost_job(use_fake, job_name):
    backend = AzureMLBackend(aml_settings(workspace_name="ws-typo"))
    with pytest.raises(ConfigurationError, match="workspace ws-typo not found"):
        backend.job_state(job_name)


def test_not_responding_keeps_the_run_open_and_it_can_come_back(backend, use_fake, job_name):
    for raw, expected in [
        ("Running", RunStatus.RUNNING),
        ("NotResponding", RunStatus.RUNNING),
        ("Running", RunStatus.RUNNING),
        ("Failed", RunStatus.FAILED),
    ]:
        use_fake.set_job_status(job_name, raw)
        state = backend.job_state(job_name)
        assert (state.status, state.raw_status) == (expected, raw)
        assert state.status.terminal == (raw == "Failed")


def test_start_and_end_times_come_from_run_history(backend, use_fake, job_name):
    queued = backend.job_state(job_name)
    assert (queued.status, queued.started_at, queued.ended_at) == (RunStatus.SUBMITTED, None, None)

    use_fake.set_job_status(job_name, "Running", at=T0)
    running = backend.job_state(job_name)
    assert (running.started_at, running.ended_at) == (T0, None)

    use_fake.set_job_status(job_name, "NotResponding", at=T0 + timedelta(minutes=3))
    assert backend.job_state(job_name).started_at == T0

    end = T0 + timedelta(minutes=7, seconds=2)
    use_fake.complete_job(job_name, {"metrics.json": json.dumps(METRICS).encode()}, at=end)
    done = backend.job_state(job_name)
    assert (done.status, done.started_at, done.ended_at) == (RunStatus.COMPLETED, T0, end)
    assert done.metrics == METRICS


def test_a_job_canceled_before_it_began_has_no_times(backend, use_fake, job_name):
    use_fake.job(job_name)["properties"]["status"] = "Canceled"  # no run-history stamps
    state = backend.job_state(job_name)
    assert (state.status, state.started_at, state.ended_at) == (RunStatus.CANCELED, None, None)
    assert "times_error" not in state.details


def test_run_history_unavailable_is_transient_and_missing_is_reported(backend, use_fake, job_name):
    use_fake.set_job_status(job_name, "Failed", at=T0)
    use_fake.fail_next(rf"/runs/{job_name}$", count=50, status=503, method="GET")
    with pytest.raises(TransientError, match="HTTP 503"):
        backend.job_state(job_name)  # the sweep asks again; it does not stamp its own clock

    use_fake.clear_faults()
    use_fake.fail_next(rf"/runs/{job_name}$", status=404, method="GET")
    state = backend.job_state(job_name)
    assert (state.status, state.started_at, state.ended_at) == (RunStatus.FAILED, None, None)
    assert "run history of" in state.details["times_error"]
    assert backend.job_state(job_name).ended_at == T0
