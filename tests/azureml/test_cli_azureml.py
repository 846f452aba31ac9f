"""``python -m retrain run/status --backend azureml`` against the fake: the CLI in-process, the
real SDK underneath."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fake_azureml import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE

from retrain.cli.main import main
from retrain.data.fashion_mnist import write_batch

METRICS = {"accuracy": 0.9371}


@pytest.fixture
def workspace_env(use_fake, monkeypatch):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", RESOURCE_GROUP)
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", WORKSPACE)
    return use_fake


def test_run_a_local_folder_then_status_by_job_name(workspace_env, tmp_path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, n_train=20, n_test=10)

    assert main(["run", str(folder), "--backend", "azureml", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert result["status"] == "Submitted" and result["already_existed"] is False
    assert result["studio_url"].startswith("https://ml.azure.com/runs/" + result["job_name"])
    (data_put,) = workspace_env.calls("PUT", r"^/data/")
    assert data_put.tail.endswith("/versions/" + result["data_asset"].split(":")[1])
    assert workspace_env.calls("PUT", rf"^/jobs/{result['job_name']}$")

    workspace_env.set_job_status(result["job_name"], "Failed")
    assert main(["status", result["job_name"], "--backend", "azureml", "--json"]) == 0
    state = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (state["status"], state["raw_status"]) == ("Failed", "Failed")


def test_run_wait_follows_the_job_to_its_metrics(workspace_env, tmp_path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, n_train=20, n_test=10)

    def service_finishes_the_job() -> None:
        deadline = time.monotonic() + 30
        while not workspace_env.calls("PUT", r"^/jobs/") and time.monotonic() < deadline:
            time.sleep(0.05)
        name = workspace_env.calls("PUT", r"^/jobs/")[0].tail.rsplit("/", 1)[1]
        workspace_env.set_job_status(name, "Running")
        time.sleep(0.2)
        workspace_env.complete_job(name, {"metrics.json": json.dumps(METRICS).encode()})

    finisher = threading.Thread(target=service_finishes_the_job, daemon=True)
    finisher.start()
    argv = ["run", str(folder), "--backend", "azureml", "--wait", "--poll-interval", "0.05"]
    assert main([*argv, "--json"]) == 0
    finisher.join(timeout=30)

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["status"] == "Completed"
    assert result["accuracy"] == METRICS["accuracy"]
