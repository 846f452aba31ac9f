"""Fixtures for the component tests: small generated batches, prepared data, a trained model."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.prepare_data import prepare_data
from components.train import train
from retrain.fashion_data import write_batch


def prepare(raw: Path, out: Path) -> tuple[Path, Path]:
    """Run prepare_data in-process; return the (training, test) folders."""
    training, test = out / "training_data", out / "test_data"
    argv = ["--input_data", str(raw), "--training_data", str(training), "--test_data", str(test)]
    assert prepare_data.main(argv) == 0
    return training, test


def run_train(data: Path, out: Path, *, epochs: int = 1, seed: int = 0, batch: int = 128) -> Path:
    argv = [
        "--input_data", str(data),
        "--epochs", str(epochs),
        "--batch_size", str(batch),
        "--learning_rate", "0.05",
        "--seed", str(seed),
        "--output_model", str(out),
    ]  # fmt: skip
    assert train.main(argv) == 0
    return out


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """512 training and 200 test images, prepared."""
    root = tmp_path_factory.mktemp("tiny")
    write_batch(root / "raw", 512, 200, seed=3)
    return prepare(root / "raw", root)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_prepared) -> Path:
    """A model trained for one epoch on the tiny batch (accuracy irrelevant)."""
    return run_train(tiny_prepared[0], tmp_path_factory.mktemp("tiny_model"))
