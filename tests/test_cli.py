"""``python -m retrain``: help, errors, pipeline show, and run/status through a backend.

The azureml path talks to an in-test Backend: the real AzureMLBackend is tested against a fake
Azure ML service in its own tests; here we check what the command line asks of any backend and how
it reports. Local runs are in test_cli_local.py.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import yaml
from cli_helpers import ROOT, cli, cli_env, local_keys

from retrain import backends, keys
from retrain.backends import DataAsset, JobState, LocalFolder, RunStatus, Submission, SubmitRequest
from retrain.cli.data import folder_keys, keyed


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    yield from cli_env(tmp_path_factory)


# --- help and errors ----------------------------------------------------------------------------


def test_help_is_fast_because_heavy_sdks_are_not_imported():
    probe = (
        "import sys, retrain.cli.main\n"
        "heavy = [m for m in ('azure.ai.ml', 'torch', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True)
    shown = subprocess.run(
        [sys.executable, "-m", "retrain", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0
    for command in ("pipeline", "run", "status", "models", "data", "demo"):
        assert command in shown.stdout


def test_demo_has_its_own_help():
    argv = [sys.executable, "-m", "retrain", "demo", "--help"]
    shown = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "demo" in shown.stdout and "--epochs" in shown.stdout


def test_bad_data_path_is_one_line_error_exit_2(tmp_path):
    missing = tmp_path / "no-such-batch"
    result = subprocess.run(
        [sys.executable, "-m", "retrain", "run", str(missing), "--backend", "local"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: DATA: no such folder: {missing}"
    assert result.stdout == ""


def test_folder_without_fashion_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a batch")
    result = cli("run", tmp_path)
    assert result.code == 2
    assert result.err.startswith(f"error: {tmp_path}: holds none of the Fashion-MNIST files")


# --- pipeline show ------------------------------------------------------------------------------


def test_pipeline_show_prints_the_job_as_yaml(env):
    _, batch = env
    result = cli("pipeline", "show", "--data", batch, "--epochs", "3", "--gpu-compute", "gpu-x")
    assert result.code == 0, result.err
    job = yaml.safe_load(result.out)
    assert list(job["jobs"]) == ["prepare_data_node", "train_node", "score_node"]
    assert job["name"] == keys.job_name(local_keys(batch, epochs=3).run)
    assert job["inputs"]["pipeline_input_data"]["path"] == str(batch)
    assert job["jobs"]["train_node"]["inputs"]["epochs"] == 3
    assert job["jobs"]["train_node"]["compute"].endswith("gpu-x")
    assert job["experiment_name"] == "fashion-retraining"
    assert job["outputs"] == {"output_result": {"type": "uri_folder"}}


def test_pipeline_show_of_a_data_asset_with_the_local_backend_is_a_dry_run(env):
    result = cli("pipeline", "show", "--data", "azureml:fashion_ds:1")  # RETRAIN_BACKEND=local
    assert result.code == 0, result.err
    job = yaml.safe_load(result.out)
    assert job["inputs"]["pipeline_input_data"]["path"] == "azureml:fashion_ds:1"
    assert job["name"] == keys.job_name(keys.run_key("azureml:fashion_ds:1", []))
    assert "local backend runs local folders only" in result.err
    assert "--backend azureml" in result.err


def test_local_run_of_a_data_asset_says_which_backend_runs_it(env):
    result = cli("run", "azureml:fashion_ds:1", "--backend", "local")
    assert result.code == 2
    assert result.err.strip() == (
        "error: DATA: azureml:fashion_ds:1 is a data asset in the Azure ML workspace; the local "
        "backend runs a local folder, the azureml backend runs the asset (--backend azureml)"
    )


def test_pipeline_show_for_azureml(env):
    _, batch = env
    result = cli("pipeline", "show", "--data", "azureml:fashion-mnist:7", "--backend", "azureml")
    assert result.code == 0, result.err
    job = yaml.safe_load(result.out)
    assert job["inputs"]["pipeline_input_data"]["path"] == "azureml:fashion-mnist:7"
    # a folder is shown as the data version the azureml backend registers it under
    folder = yaml.safe_load(cli("pipeline", "show", "--data", batch, "--backend", "azureml").out)
    version = keys.data_version(folder_keys(batch, {}).content)
    assert folder["inputs"]["pipeline_input_data"]["path"] == f"azureml:fashion-mnist:{version}"


# --- run --backend azureml, through an in-test Backend ------------------------------------------


@dataclass
class RecordingBackend:
    """Stands in for Azure ML: records submissions, then reports Running, then Completed."""

    name: str = "azureml"
    requests: list[SubmitRequest] = field(default_factory=list)
    polls: int = 0
    states: tuple[str, ...] = ("Running", "Completed")

    def submit(self, request: SubmitRequest) -> Submission:
        self.requests.append(request)
        return Submission(
            job_name=request.job_name,
            status=RunStatus.SUBMITTED,
            data_asset=f"fashion-mnist:{request.data_version}",
            studio_url=f"https://ml.azure.com/runs/{request.job_name}",
        )

    def job_state(self, job_name: str) -> JobState:
        raw = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        done = raw == "Completed"
        return JobState(
            status=RunStatus(raw) if raw in RunStatus._value2member_map_ else RunStatus.RUNNING,
            raw_status=raw,
            metrics={"accuracy": 0.934} if done else None,
        )


@pytest.fixture
def fake_backend(monkeypatch):
    backend = RecordingBackend()
    chosen = []

    def get_backend(settings):
        chosen.append(settings.backend)
        return backend

    monkeypatch.setattr(backends, "get_backend", get_backend)
    backend.chosen = chosen
    return backend


def test_azureml_run_submits_the_batch_under_its_content_key(env, fake_backend):
    _, batch = env
    result = cli("run", batch, "--backend", "azureml", "--epochs", "5", "--json")
    assert result.code == 0, result.err
    assert fake_backend.chosen == ["azureml"]
    (request,) = fake_backend.requests
    key = folder_keys(batch, {"epochs": "5"})  # the flags given, as the webhook keys a run
    assert request.run_id == key.run != key.content
    assert request.job_name == keys.job_name(key.run)
    assert request.data == LocalFolder(batch)
    assert request.data_version == keys.data_version(key.content)  # the data alone
    assert request.pipeline.job_name == request.job_name
    assert request.pipeline.epochs == 5
    assert fake_backend.polls == 0  # no --wait
    out = result.last_json
    assert out["job_name"] == request.job_name
    assert out["status"] == "Submitted"
    assert out["studio_url"] == f"https://ml.azure.com/runs/{request.job_name}"
    assert f"studio URL: https://ml.azure.com/runs/{request.job_name}" in result.out


def test_azureml_run_of_a_data_asset_waits_for_the_end(env, fake_backend):
    result = cli(
        "run", "azureml:fashion-mnist:7", "--backend", "azureml", "--wait", "--poll-interval",
        "0", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    (request,) = fake_backend.requests
    assert request.data == DataAsset("fashion-mnist", "7")
    assert request.job_name == keys.job_name(keyed("azureml:fashion-mnist:7", [], {}).run)
    assert fake_backend.polls == 2
    out = result.last_json
    assert (out["status"], out["accuracy"]) == ("Completed", 0.934)
    assert "Running" in result.err  # the status line followed the job


def test_azureml_run_that_fails_exits_1(env, fake_backend):
    fake_backend.states = ("Running", "Failed")
    result = cli(
        "run", "azureml:fashion-mnist:7", "--backend", "azureml", "--wait", "--poll-interval", "0"
    )
    assert result.code == 1
    assert "status:" in result.out and "Failed" in result.out


@pytest.fixture
def landing(env, azurite, monkeypatch):
    """A landing container in Azurite holding one complete batch and one incomplete one."""
    from azure.storage.blob import BlobServiceClient

    _, batch = env
    container = "landing-cli"
    monkeypatch.setenv("DataStorage", azurite.connection_string)
    monkeypatch.setenv("LANDING_CONTAINER", container)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
        for f in sorted(batch.iterdir()):
            client.upload_blob(f"batch-7/{f.name}", f.read_bytes())
            if "t10k" not in f.name:
                client.upload_blob(f"half/{f.name}", f.read_bytes())
    return client


def test_landing_batch_is_submitted_keyed_like_the_trigger_keys_it(landing, fake_backend):
    from retrain.backends import LandingBatch
    from retrain.landing.batches import Batch

    result = cli("run", "landing-cli/batch-7", "--backend", "azureml", "--json")
    assert result.code == 0, result.err
    (request,) = fake_backend.requests
    assert isinstance(request.data, LandingBatch)
    assert (request.data.container, request.data.batch) == ("landing-cli", "batch-7")
    listed = {b.name: b for b in landing.list_blobs(name_starts_with="batch-7/")}
    assert {(b.name, b.etag) for b in request.data.blobs} == {
        (name, blob.etag) for name, blob in listed.items()
    }
    files = {b.name.removeprefix("batch-7/").removesuffix(".gz"): b for b in request.data.blobs}
    assert request.run_id == Batch("landing-cli", "batch-7", files).key
    assert request.job_name == keys.job_name(request.run_id)
    assert result.last_json["job_name"] == request.job_name


def test_incomplete_landing_batch_is_refused_naming_the_missing_files(landing, fake_backend):
    result = cli("run", "half", "--backend", "azureml")
    assert result.code == 2
    assert result.err.startswith("error: landing-cli/half: ")
    assert "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in result.err
    assert fake_backend.requests == []


def test_local_backend_needs_a_local_folder(landing):
    result = cli("run", "batch-7", "--backend", "local")
    assert (result.code, result.err.strip()) == (
        2,
        "error: DATA: no such folder: batch-7; a batch of the landing container or a data asset "
        "(azureml:NAME:VERSION) runs with --backend azureml",
    )


def test_backend_status_by_run_key_and_job_name(env, fake_backend):
    fake_backend.polls = 5  # already past Running
    key = "0123456789abcdef"
    by_key = cli("status", key, "--backend", "azureml", "--json")
    assert by_key.code == 0, by_key.err
    assert by_key.last_json["job_name"] == keys.job_name(key)
    assert by_key.last_json["status"] == "Completed"
    by_name = cli("status", "some-job", "--backend", "azureml")
    assert by_name.code == 0
    assert "some-job" in by_name.out and "0.9340" in by_name.out
