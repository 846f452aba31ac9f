"""Shared by the command-line tests: ``cli(...)`` runs ``main`` in-process and captures its
output; ``env`` is a generated batch and an empty runs folder, with settings pointing there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest

from retrain.cli.data import Keyed, folder_keys, run_params
from retrain.cli.main import main
from retrain.data.fashion_mnist import write_batch
from retrain.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def last_json(self) -> dict:
        return json.loads(self.out.strip().splitlines()[-1])


def cli(*argv: str) -> Run:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Run(code, out.getvalue(), err.getvalue())


def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A generated batch and an empty runs folder, with settings pointing there (the body of
    each module's ``env`` fixture)."""
    root = tmp_path_factory.mktemp("cli")
    batch = root / "batch"
    write_batch(batch, n_train=3000, n_test=500, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCAL_RUNS_DIR", str(root / "runs"))
        mp.setenv("LOCAL_MODELS_DIR", str(root / "models"))
        mp.setenv("RETRAIN_BACKEND", "local")
        for name in ("TRAIN_EPOCHS", "EXPERIMENT_NAME", "AZUREML_GPU_COMPUTE"):
            mp.delenv(name, raising=False)
        yield root, batch


def local_keys(batch: Path, **overrides: object) -> Keyed:
    """The keys a local ``run``/``pipeline show`` of ``batch`` gets with these overrides, under
    the settings in the environment."""
    return folder_keys(batch, run_params(Settings.from_env().pipeline_settings(**overrides)))
