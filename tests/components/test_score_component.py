"""score: loads only the exported predictor; metrics agree with the predictions it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.score import score


def run_score(data: Path, model: Path, out: Path) -> int:
    argv = ["--input_data", str(data), "--input_model", str(model), "--output_result", str(out)]
    return score.main(argv)


@pytest.fixture(scope="module")
def result(tiny_prepared, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("score")
    assert run_score(tiny_prepared[1], tiny_model, out) == 0
    return out


def test_writes_metrics_predictions_and_report(result: Path) -> None:
    assert sorted(p.name for p in result.iterdir()) == [
        "metrics.json",
        "predictions.csv",
        "report.png",
    ]
    with Image.open(result / "report.png") as report:
        assert report.format == "PNG" and report.width > 400 and report.height > 400


def test_metrics_agree_with_predictions(result: Path, tiny_prepared) -> None:
    metrics = json.loads((result / "metrics.json").read_text())
    with (result / "predictions.csv").open() as file:
        rows = list(csv.DictReader(file))
    labels = np.array([int(r["label"]) for r in rows])
    predictions = np.array([int(r["prediction"]) for r in rows])

    assert [int(r["index"]) for r in rows] == list(range(200))
    assert np.array_equal(labels, np.load(tiny_prepared[1] / "labels.npy"))
    assert all(0 < float(r["confidence"]) <= 1 for r in rows)
    assert metrics["count"] == 200
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions == labels))
    confusion = np.array(metrics["confusion_matrix"])
    for t in range(10):
        for p in range(10):
            assert confusion[t, p] == np.sum((labels == t) & (predictions == p))
    for k in range(10):
        hits = np.sum((labels == k) & (predictions == k))
        assert metrics["recall"][k] == pytest.approx(hits / np.sum(labels == k))
        made = np.sum(predictions == k)
        assert metrics["precision"][k] == (pytest.approx(hits / made) if made else None)
    assert metrics["class_names"][0] == "T-shirt/top"


def test_compute_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 1])
    metrics = score.compute_metrics(labels, predictions, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert metrics["precision"] == [1.0, pytest.approx(2 / 4), None]  # nothing predicted as c
    assert metrics["recall"] == [0.5, 1.0, 0.0]
    assert metrics["support"] == [2, 2, 1]


def test_missing_model_is_one_line(tiny_prepared, tmp_path: Path, capsys) -> None:
    assert run_score(tiny_prepared[1], tmp_path / "no-model", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("score: ") and "predictor.pt" in err[0]
    assert not (tmp_path / "out").exists()


def test_not_a_model_is_one_line(tiny_prepared, tmp_path: Path, capsys) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "predictor.pt").write_bytes(b"definitely not a zip")
    assert run_score(tiny_prepared[1], tmp_path / "model", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not a TorchScript model" in err[0]
