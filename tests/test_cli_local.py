"""``python -m retrain run --backend local`` and ``status``: real runs of the builder's pipeline
on a small generated batch, the suite's one end-to-end training run among them."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import ROOT, cli, cli_env, local_keys

from retrain import keys
from retrain.backends import local as local_backend
from retrain.backends.base import LocalFolder, SubmitRequest
from retrain.backends.local import LocalBackend
from retrain.cli.run import champion_overrides
from retrain.data.fashion_mnist import write_batch
from retrain.settings import Settings


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    yield from cli_env(tmp_path_factory)


@pytest.fixture(scope="module")
def local_run(env):
    """The suite's one real training run, end to end, shared by the tests that read it."""
    _, batch = env
    return cli("run", batch, "--epochs", "2", "--batch-size", "64", "--json")


# --- run --backend local ------------------------------------------------------------------------


@pytest.mark.slow
def test_local_run_end_to_end_beats_90_percent(env, local_run):
    root, batch = env
    assert local_run.code == 0, local_run.err
    summary = local_run.last_json  # --json: the summary is the last line
    job_name = keys.job_name(local_keys(batch, epochs=2, batch_size=64).run)
    run_dir = root / "runs" / job_name
    assert (summary["status"], summary["job_name"]) == ("Completed", job_name)
    assert summary["run_dir"] == str(run_dir)
    assert summary["accuracy"] > 0.90
    assert summary["metrics"]["accuracy"] == summary["accuracy"]
    assert "champion" not in summary["metrics"] and "champion:" not in local_run.out
    assert f"test accuracy: {summary['accuracy']:.4f}" in local_run.out
    assert f"run folder:    {run_dir}" in local_run.out
    assert "[3/3] score_node done" in local_run.err  # plain progress lines when not a terminal
    epoch_lines = re.findall(
        r"^train_node: epoch +(\d+)/2 +loss \d\.\d{4} +train accuracy \d\.\d{4} +\d+\.\d s$",
        local_run.err,
        re.M,
    )
    assert epoch_lines == ["1", "2"]  # one line per epoch, as it ends, though stderr is no tty
    assert re.search(r"^train_node: train: 2 epochs in .* \(mean .* median ", local_run.err, re.M)
    assert list(summary["steps"]) == ["prepare_data_node", "train_node", "score_node"]
    assert all(0 < s < summary["duration_s"] for s in summary["steps"].values())
    assert re.search(r"^steps: +prepare_data_node \d+\.\d s, train_node ", local_run.out, re.M)

    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["step"], status["error"]) == ("Completed", None, None)
    assert status["metrics"] == summary["metrics"]
    assert status["duration_s"] == summary["duration_s"]
    assert {n: step["duration_s"] for n, step in status["steps"].items()} == summary["steps"]
    outputs = status["outputs"]
    assert set(outputs) == {"prepare_data_node", "train_node", "score_node"}
    result = Path(outputs["score_node"]["output_result"])
    assert json.loads((result / "metrics.json").read_text()) == summary["metrics"]
    assert any(Path(outputs["train_node"]["output_model"]).iterdir())
    assert any(Path(outputs["prepare_data_node"]["test_data"]).iterdir())
    for node in outputs:
        assert (run_dir / node / "stdout.log").stat().st_size > 0


@pytest.mark.slow
def test_same_data_again_shows_the_completed_run_instead_of_rerunning(env, local_run):
    _, batch = env
    again = cli("run", batch, "--epochs", "2", "--batch-size", "64", "--json")
    assert again.code == 0
    assert "already completed" in again.err
    assert "score_node" not in again.err  # nothing ran
    assert again.last_json == local_run.last_json


@pytest.mark.slow
def test_status_of_local_run_by_name_key_and_folder(env, local_run):
    root, batch = env
    key = local_keys(batch, epochs=2, batch_size=64).run
    run_dir = root / "runs" / keys.job_name(key)
    for target in (keys.job_name(key), key, run_dir):
        result = cli("status", target, "--json")
        assert result.code == 0, result.err
        status = result.last_json
        assert status["status"] == "Completed"
        assert status["run_dir"] == str(run_dir)
        assert status["metrics"]["accuracy"] == local_run.last_json["accuracy"]
    human = cli("status", keys.job_name(key))
    assert "Completed" in human.out and "test accuracy:" in human.out


def test_status_of_unknown_local_run_is_an_error(env):
    result = cli("status", "fashion-retrain-0000000000000000")
    assert result.code == 2
    assert result.err.startswith("error: no local run 'fashion-retrain-0000000000000000'")


def test_failing_local_run_names_the_step_and_exits_1(env, tmp_path):
    """A gzip stream cut short passes the header checks made before a run; prepare_data, which
    reads every byte, fails the run."""
    _, batch = env
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in batch.iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[:-200] if "t10k-images" in f.name else data)
    result = cli("run", broken, "--json", "--run-dir", tmp_path / "run", "--job-name", "bad-1")
    assert result.code == 1
    failure = [line for line in result.err.splitlines() if line.startswith("step ")]
    assert len(failure) == 1
    assert failure[0].startswith("step prepare_data_node failed: ")
    assert "t10k-images-idx3-ubyte.gz" in failure[0]
    summary = result.last_json
    assert (summary["status"], summary["step"], summary["job_name"]) == (
        "Failed",
        "prepare_data_node",
        "bad-1",
    )
    assert summary["run_dir"] == str(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads children from /proc")
def test_terminated_run_stops_its_step_and_records_failed(env, tmp_path):
    _, batch = env
    run_dir = tmp_path / "run"
    argv = ["run", batch, "--run-dir", run_dir, "--job-name", "t-1", "--epochs", "500"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrain", *map(str, argv)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    step = None
    while step != "train_node" or not children.read_text().split():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
        with suppress(OSError, ValueError):
            step = json.loads((run_dir / "status.json").read_text())["step"]
    (train_pid,) = map(int, children.read_text().split())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert err.strip().endswith("interrupted")
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["step"]) == ("Failed", "train_node")
    assert status["error"] == "step train_node interrupted"
    assert not Path(f"/proc/{train_pid}").exists()  # the step was stopped and reaped
    assert not (run_dir / "score_node").exists()


# --- a champion: score compares the new model with it -------------------------------------------


class _AlwaysCoat(torch.nn.Module):
    """A champion that predicts "Coat" (class 4) for every image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 10, device=x.device)
        logits[:, 4] = 1.0
        return logits


class _NoProcess:
    """Stands in for the detached ``python -m retrain run``: its argv is what the test reads."""

    pid = 4242

    def __init__(self, argv: list[str], **_: object) -> None:
        self.argv = argv
        launched.append(argv)

    def poll(self) -> int | None:
        return None


launched: list[list[str]] = []


@pytest.mark.slow
def test_local_backend_run_with_a_champion_scores_it_on_the_same_test_images(tmp_path, monkeypatch):
    """LocalBackend._start passes the champion flags; the command it starts scores the champion."""
    batch = tmp_path / "batch"
    write_batch(batch, n_train=300, n_test=100, seed=2)
    champion = tmp_path / "champion"
    champion.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_AlwaysCoat()).save(str(champion / "predictor.pt"))
    settings = Settings(local_runs_dir=tmp_path / "runs", epochs=1, batch_size=64)
    job_name = "champion-1"
    pipeline = settings.pipeline_settings(
        job_name=job_name, champion_model=str(champion), champion_version="7"
    )
    request = SubmitRequest("k", job_name, LocalFolder(batch), "k", pipeline)
    launched.clear()
    with monkeypatch.context() as patched:  # subprocess is shared: the steps below need Popen
        patched.setattr(local_backend.subprocess, "Popen", _NoProcess)
        LocalBackend(settings).submit(request)
    (argv,) = launched
    assert argv[argv.index("--champion-model") + 1] == str(champion)
    assert argv[argv.index("--champion-version") + 1] == "7"

    result = cli(*argv[3:])  # what the detached process would run: python -m retrain <argv>
    assert result.code == 0, result.err
    metrics = result.last_json["metrics"]
    run_dir = tmp_path / "runs" / job_name
    labels = np.load(run_dir / "prepare_data_node" / "test_data" / "labels.npy")
    coats = int(np.sum(labels == 4))
    assert metrics["champion"] == {"version": "7", "accuracy": coats / 100, "correct": coats}
    points = 100 * (metrics["accuracy"] - coats / 100)
    assert f"champion:      v7 {coats / 100:.4f} (new model {points:+.2f} points)" in result.out
    assert "champion v7: " in (run_dir / "score_node" / "stdout.log").read_text()


def test_local_backend_starts_a_run_without_champion_flags_when_there_is_none(
    tmp_path, monkeypatch
):
    settings = Settings(local_runs_dir=tmp_path / "runs")
    pipeline = settings.pipeline_settings(job_name="plain-1")
    monkeypatch.setattr(local_backend.subprocess, "Popen", _NoProcess)
    launched.clear()
    LocalBackend(settings).submit(
        SubmitRequest("k", "plain-1", LocalFolder(tmp_path), "k", pipeline)
    )
    (argv,) = launched
    assert not [a for a in argv if a.startswith("--champion")]


def test_a_registered_champion_is_refused_by_the_local_backend(env, tmp_path):
    _, batch = env
    run_dir = tmp_path / "run"
    result = cli("run", batch, "--run-dir", run_dir, "--champion-model", "azureml:fashion-cnn:3")
    assert result.code == 2
    assert result.err.strip() == (
        "error: --champion-model: azureml:fashion-cnn:3 is not on this machine; "
        "the local backend needs a local folder"
    )
    assert not run_dir.exists()
    result = cli("run", batch, "--run-dir", run_dir, "--champion-version", "3")
    assert result.code == 2
    assert result.err.strip() == "error: --champion-version: given without --champion-model"


def test_a_relative_champion_folder_is_made_absolute(tmp_path, monkeypatch):
    """Steps run in their component folders, so a relative path would point elsewhere."""
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(champion_model="models/champ", champion_version=None)
    assert champion_overrides(args, local=True) == {
        "champion_model": str(tmp_path / "models" / "champ")
    }
    args = argparse.Namespace(champion_model="azureml:fashion-cnn:3", champion_version="3")
    assert champion_overrides(args, local=False) == {
        "champion_model": "azureml:fashion-cnn:3",
        "champion_version": "3",
    }
    assert champion_overrides(argparse.Namespace(), local=True) == {}
