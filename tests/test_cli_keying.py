"""A local run is keyed on its data *and* its parameters, and input errors exit 2 before any
run folder exists. Real runs of the pipeline on a tiny generated batch (one epoch each)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from cli_helpers import ROOT, cli, cli_env, local_keys

from retrain import keys
from retrain.cli.data import asked_params, folder_keys, keyed
from retrain.data.fashion_mnist import write_batch
from retrain.landing.decisions import BatchData, RetrainRequest, http_run_id

TINY = ("--epochs", "1", "--batch-size", "64")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    yield from cli_env(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny(env):
    """A batch small enough that one run takes seconds."""
    root, _ = env
    batch = root / "tiny"
    write_batch(batch, n_train=200, n_test=50, seed=3)
    return batch


def runs(root):
    folder = root / "runs"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.slow
def test_same_data_other_parameters_is_a_new_run_and_says_so(env, tiny):
    root, _ = env
    first = cli("run", tiny, *TINY, "--json")
    assert first.code == 0, first.err
    first_job = keys.job_name(local_keys(tiny, epochs=1, batch_size=64).run)
    assert first.last_json["job_name"] == first_job

    same = cli("run", tiny, *TINY, "--json")
    assert same.code == 0
    assert same.err.splitlines()[0].startswith(
        f"{first_job} already completed with this data and these parameters"
    )
    assert "score_node" not in same.err  # nothing ran
    assert same.last_json == first.last_json

    other = cli("run", tiny, *TINY, "--learning-rate", "0.01", "--json")
    assert other.code == 0, other.err
    other_job = keys.job_name(local_keys(tiny, epochs=1, batch_size=64, learning_rate=0.01).run)
    assert other.last_json["job_name"] == other_job != first_job
    assert other.err.splitlines()[0] == (
        f"parameters differ from {first_job}, which ran this data: learning_rate 0.01 (was "
        f"auto); running it anew as {other_job}"
    )
    assert "[3/3] score_node done" in other.err  # it trained
    assert "already completed" not in other.err
    assert runs(root) == sorted([first_job, other_job])

    forced = cli("run", tiny, *TINY, "--force", "--json")
    assert forced.code == 0, forced.err
    assert "already completed" not in forced.err
    assert "parameters differ" not in forced.err  # this run's parameters ran before
    assert "[3/3] score_node done" in forced.err
    assert forced.last_json["job_name"] == first_job
    assert forced.last_json["duration_s"] != first.last_json["duration_s"]


def test_the_key_covers_every_training_parameter_and_the_content(env, tiny):
    _, batch = env
    base = local_keys(tiny)
    for change in ({"epochs": 2}, {"batch_size": 8}, {"learning_rate": 0.5}, {"seed": 9}):
        changed = local_keys(tiny, **change)
        assert changed.content == base.content and changed.run != base.run, change
    assert local_keys(tiny, experiment_name="elsewhere").run == base.run  # no effect on training
    assert base.params["preset"] == "auto"
    assert local_keys(batch).content != base.content


def test_the_azureml_backend_keys_a_run_as_the_webhook_does():
    """The same batch and the same asked parameters give the webhook's run id."""
    source, versions = "landing/batch-7", [("batch-7/train-images-idx3-ubyte", '"0x1"')]
    args = argparse.Namespace(epochs=5, experiment_name="exp", batch_size=None)
    asked = keyed(source, versions, asked_params(args, {}))
    webhook = http_run_id(RetrainRequest(BatchData("batch-7"), 5, "exp"), source, versions)
    assert asked.run == webhook
    plain = keyed(source, versions, asked_params(argparse.Namespace(), {}))
    assert plain.run == plain.content == keys.run_key(source, versions)  # the trigger's run


# --- exit codes: every input error is 2, and leaves no run folder -------------------------------


def test_a_folder_missing_a_file_exits_2_and_leaves_no_run_folder(env, tiny, tmp_path):
    root, _ = env
    before = runs(root)
    half = tmp_path / "half"
    half.mkdir()
    for f in tiny.iterdir():
        if not f.name.startswith("t10k-labels"):
            (half / f.name).write_bytes(f.read_bytes())
    result = cli("run", half, *TINY)
    assert result.code == 2
    assert result.err.strip() == (
        f"error: {half}: lacks t10k-labels-idx1-ubyte (each raw or .gz; nothing was run)"
    )
    assert result.out == ""
    assert runs(root) == before
    explicit = tmp_path / "run"
    assert cli("run", half, "--run-dir", explicit).code == 2
    assert not explicit.exists()


@pytest.mark.parametrize(
    ("file", "damage", "reason"),
    [
        ("t10k-images", lambda d: b"\0\0\0\0" + d[4:], "wrong magic number 0x00000000"),
        ("train-labels", lambda d: b"", "empty file"),
        ("train-images", lambda d: d[:4] + (7).to_bytes(4, "big") + d[8:], "header declares 7"),
        ("t10k-labels", lambda d: d[:8] + bytes([12]) + d[9:], "label 12 at index 0"),
    ],
)
def test_a_bad_file_exits_2_naming_it_before_any_run(env, tiny, tmp_path, file, damage, reason):
    import gzip

    root, _ = env
    before = runs(root)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny.iterdir():
        data = gzip.decompress(f.read_bytes())
        name = f.name.removesuffix(".gz")
        (bad / name).write_bytes(damage(data) if name.startswith(file) else data)
    result = cli("run", bad, *TINY)
    assert result.code == 2, result.err
    (line,) = result.err.splitlines()
    assert line.startswith(f"error: {bad}/{file}") and reason in line, line
    assert runs(root) == before


def test_image_and_label_counts_must_agree(env, tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    write_batch(small, n_train=20, n_test=10, seed=1)
    write_batch(large, n_train=30, n_test=10, seed=1)
    (small / "train-labels-idx1-ubyte.gz").write_bytes(
        (large / "train-labels-idx1-ubyte.gz").read_bytes()
    )
    result = cli("run", small)
    assert result.code == 2
    assert result.err.strip() == (
        f"error: {small}/train-labels-idx1-ubyte.gz: holds 30 labels but "
        "train-images-idx3-ubyte.gz holds 20 images"
    )


def test_a_landing_batch_name_points_to_the_azureml_backend(env):
    result = cli("run", "landing/batch-7", "--backend", "local")
    assert result.code == 2
    assert "no such folder: landing/batch-7" in result.err
    assert "runs with --backend azureml" in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--batch-size", "x"], "argument --batch-size: expected an integer, got 'x'"),
        (["--learning-rate", "-1"], "argument --learning-rate: must be positive, got -1"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(tiny, argv, message):
    result = subprocess.run(
        [sys.executable, "-m", "retrain", "run", str(tiny), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(message)
    assert "Traceback" not in result.stderr


def test_folder_keys_hash_exactly_the_files_the_pipeline_reads(tiny, tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    for f in tiny.iterdir():
        (both / f.name).write_bytes(f.read_bytes())
    raw = both / "train-labels-idx1-ubyte"
    import gzip

    raw.write_bytes(gzip.decompress((tiny / "train-labels-idx1-ubyte.gz").read_bytes()))
    with_raw = folder_keys(both, {})
    (both / "train-labels-idx1-ubyte.gz").write_bytes(b"ignored: the raw file wins")
    assert folder_keys(both, {}) == with_raw
