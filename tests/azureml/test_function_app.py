"""The whole Function App flow with ``RETRAIN_BACKEND=azureml``: Azurite for storage, the
registered functions called with real ``azure.functions`` objects, the service built from app
settings, and the real SDK talking to the loopback fake of Azure ML."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from retrain.backends import RunStatus
from retrain.data.fashion_mnist import write_batch

# The host indexes function_app once, and so must a test process (the library refuses a second
# indexing): call the functions through the app tests' helpers, which index once and cache.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from apphelpers import blob_event, records, timer_tick

METRICS = {"accuracy": 0.934, "count": 40}
STARTED = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)  # run history's clock, not ours
ENDED = STARTED + timedelta(minutes=12, seconds=30)


def test_landed_batch_runs_on_azure_ml_and_the_timer_records_it(azureml_app, use_fake, tmp_path):
    svc = azureml_app
    landing = svc.settings.landing_container
    svc.store.ensure_container(landing)
    files = sorted(write_batch(tmp_path / "batch", n_train=60, n_test=40).values())
    for path in files:
        svc.store.put(landing, f"batch-1/{path.name}", path.read_bytes())

    for path in files:  # the host fires once per landed blob
        blob_event(svc.store, f"{landing}/batch-1/{path.name}")

    [run] = records(svc)
    assert run.status is RunStatus.SUBMITTED, run.reason
    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    assert job_put.tail == f"/jobs/{run.job_name}"
    assert job_put.body["properties"]["experimentName"] == "fashion-e2e"
    (data_put,) = use_fake.calls("PUT", r"^/data/")
    data = data_put.body["properties"]
    version = run.data_asset.rpartition(":")[2]
    copy = svc.store.url(svc.settings.datasets_container, f"fashion-mnist/{version}/")
    assert data["dataUri"] == copy  # the immutable copy, not the landing folder
    assert data["tags"]["source"] == f"{landing}/batch-1"
    job_input = job_put.body["properties"]["inputs"]["pipeline_input_data"]["uri"]
    assert job_input == data_put.path  # bound to the version just registered
    assert run.studio_url and run.job_name in run.studio_url

    # Redelivered events find the run and submit nothing more.
    blob_event(svc.store, f"{landing}/batch-1/{files[0].name}")
    assert len(use_fake.calls("PUT", r"^/jobs/")) == 1

    timer_tick()  # still running on Azure ML
    assert svc.get_run(run.run_id).status is RunStatus.SUBMITTED

    use_fake.set_job_status(run.job_name, "Running", at=STARTED)
    timer_tick()
    running = svc.get_run(run.run_id)
    assert (running.status, running.started_at) == (RunStatus.RUNNING, "2026-03-01T09:30:00.000Z")

    use_fake.set_job_status(run.job_name, "NotResponding")  # no heartbeat: not an end
    timer_tick()
    quiet = svc.get_run(run.run_id)
    assert (quiet.status, quiet.raw_status) == (RunStatus.RUNNING, "NotResponding")

    outputs = {"metrics.json": json.dumps(METRICS).encode()}
    use_fake.complete_job(run.job_name, outputs, at=ENDED)
    timer_tick()
    run = svc.get_run(run.run_id)
    assert run.status is RunStatus.COMPLETED, run.reason
    assert run.metrics is not None and run.metrics["accuracy"] == METRICS["accuracy"]
    assert run.started_at == "2026-03-01T09:30:00.000Z"
    assert run.ended_at == "2026-03-01T09:42:30.000Z"
    assert run.duration_s == 750

    reads = len(use_fake.calls("GET", rf"^/jobs/{run.job_name}$"))
    timer_tick()  # a terminal run is not read again
    assert len(use_fake.calls("GET", rf"^/jobs/{run.job_name}$")) == reads
