"""The demo's flags, and README step 6 after ``make demo``: ``models`` and ``status`` either work
as shown or say in one line what to start or set."""

from __future__ import annotations

import socket
from contextlib import redirect_stderr
from io import StringIO

import pytest
from cli_helpers import cli

from retrain import keys
from retrain.cli import demo
from retrain.cli.models import AZURITE_DEMO, storage_hint
from retrain.local.status import write_status
from retrain.settings import Settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-train", "-5"], "argument --n-train: must be at least 1, got -5"),
        (["--n-test", "0"], "argument --n-test: must be at least 1, got 0"),
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--epochs", "2.5"], "argument --epochs: expected an integer, got '2.5'"),
        (["--tick", "0"], "argument --tick: must be positive, got 0"),
        (["--timeout", "nan"], "argument --timeout: expected a finite number, got 'nan'"),
    ],
)
def test_a_bad_demo_flag_is_named_and_exits_2_before_anything_starts(argv, message):
    err = StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        demo.parse_args(argv)
    assert exit_.value.code == 2
    assert err.getvalue().strip().splitlines()[-1] == f"python -m retrain demo: error: {message}"


def test_good_demo_flags_parse():
    args = demo.parse_args(["--n-train", "60", "--n-test", "10", "--epochs", "1", "--tick", "0.5"])
    assert (args.n_train, args.n_test, args.epochs, args.tick) == (60, 10, 1, 0.5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_models_with_storage_down_names_datastorage(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv(
        "DataStorage",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
    )
    result = cli("models")
    assert result.code == 2
    assert result.err.strip() == (
        "error: DataStorage: table runs: storage is unreachable; check the storage account "
        "DataStorage names"
    )
    assert str(port) not in result.err and "127.0.0.1" not in result.err  # no host leaks


def test_models_with_the_default_storage_says_to_start_azurite():
    line = storage_hint(Settings(), RuntimeError("table runs: storage is unreachable"))
    assert line.startswith("DataStorage: table runs: storage is unreachable; the default, ")
    assert "is Azurite on 127.0.0.1: start it" in line
    assert f"`{AZURITE_DEMO}` serves the demo's ledger" in line and "\n" not in line


def test_models_reads_the_demo_ledger_from_azurite(azurite, monkeypatch):
    monkeypatch.setenv("DataStorage", azurite.connection_string)
    monkeypatch.setenv("RUNS_TABLE", "demoledger")
    result = cli("models")
    assert (result.code, result.out.splitlines()[0]) == (
        0,
        "model fashion-mnist-cnn: no champion yet",
    )


@pytest.fixture
def demo_runs(tmp_path, monkeypatch):
    """The demo's runs folder, apart from LOCAL_RUNS_DIR."""
    folder = tmp_path / "demo-runs"
    monkeypatch.setattr(demo, "DEMO_RUNS", folder)
    monkeypatch.setenv("LOCAL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RETRAIN_BACKEND", "local")
    return folder


def test_status_finds_a_demo_run_by_the_id_the_demo_printed(demo_runs):
    run_id = "b9f804c04ca9eee2"
    run_dir = demo_runs / keys.job_name(run_id)
    run_dir.mkdir(parents=True)
    status = {"job_name": run_dir.name, "status": "Completed", "steps": {}}
    write_status(run_dir, {**status, "metrics": {"accuracy": 0.939}, "started_at": "2026-12-02"})
    result = cli("status", run_id)
    assert result.code == 0, result.err
    assert "test accuracy: 0.9390" in result.out
    assert f"run folder:    {run_dir}" in result.out
    assert (
        result.err.strip()
        == f"note: a run of make demo, in {demo_runs} (LOCAL_RUNS_DIR is elsewhere)"
    )


def test_status_of_an_unknown_run_names_both_folders_and_the_setting(demo_runs, tmp_path):
    result = cli("status", "0123456789abcdef")
    assert result.code == 2
    assert result.err.strip() == (
        f"error: no local run '0123456789abcdef' (looked in {tmp_path / 'runs'} and {demo_runs}); "
        "set LOCAL_RUNS_DIR to the folder that holds it (a run still Queued has no job yet: "
        "GET /api/retrain/<run id> gives its place in the queue)"
    )
