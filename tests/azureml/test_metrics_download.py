"""The score step's ``metrics.json`` download against the Azure ML fake: a storage error on the
blob itself, after the SDK's retries, leaves the run open for the next tick (TransientError),
never recorded Completed without its accuracy."""

from __future__ import annotations

import json

import pytest

from retrain.errors import TransientError

METRICS = {"accuracy": 0.9, "count": 10, "correct": 9}


@pytest.fixture
def job_name(backend, make_request) -> str:
    return backend.submit(make_request("batch-metrics")).job_name


@pytest.mark.parametrize("status", [403, 404, 503])
def test_a_failed_metrics_blob_download_is_transient(backend, use_fake, job_name, status):
    use_fake.complete_job(job_name, {"metrics.json": json.dumps(METRICS).encode()})
    use_fake.fail_next(r"/output_result/metrics\.json$", count=100, status=status)
    with pytest.raises(TransientError, match=r"download output_result"):
        backend.job_state(job_name)

    use_fake.clear_faults()  # the next tick reads it
    assert backend.job_state(job_name).metrics == METRICS
