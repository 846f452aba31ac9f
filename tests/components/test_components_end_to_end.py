"""prepare -> train -> score on a small generated batch: the issue's done-when (> 90% test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from component_helpers import prepare, run_train

from components.score import score
from retrain.data.fashion_mnist import write_batch


@pytest.mark.slow
def test_generated_batch_trains_to_over_90_percent(tmp_path: Path) -> None:
    write_batch(tmp_path / "raw", 6000, 1000, seed=0)
    training, test = prepare(tmp_path / "raw", tmp_path)
    model = run_train(training, tmp_path / "model", epochs=2, seed=0, batch=128)
    out = tmp_path / "result"
    argv = ["--input_data", str(test), "--input_model", str(model), "--output_result", str(out)]
    assert score.main(argv) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] == 1000
    assert metrics["accuracy"] > 0.90
    log = json.loads((model / "training_log.json").read_text())["epochs"]
    assert log[-1]["loss"] < log[0]["loss"]
