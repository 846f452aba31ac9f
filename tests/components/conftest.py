"""Fixtures for the component tests: small generated batches, prepared data, a trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
from component_helpers import prepare, run_train

from retrain.data.fashion_mnist import write_batch


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
