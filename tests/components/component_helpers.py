"""Helpers for the component tests: run each step in-process, as its command line would."""

from __future__ import annotations

from pathlib import Path

from components.prepare_data import prepare_data
from components.train import train


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
