"""score: loads only the exported predictor; metrics agree with the predictions it writes."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from components.score import report, score


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


# --- the champion: scored on the same test images ------------------------------------------------


class _Always(torch.nn.Module):
    """A champion that always predicts one class (or gives ``width`` logits: a wrong shape)."""

    def __init__(self, label: int, width: int = 10) -> None:
        super().__init__()
        self.label, self.width = label, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.width, device=x.device)
        logits[:, self.label] = 1.0
        return logits


def _scripted(folder: Path, module: torch.nn.Module) -> Path:
    folder.mkdir(parents=True)
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what train exports
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(folder / "predictor.pt"))
    return folder


def _champion_run(data: Path, model: Path, out: Path, champion: Path, *version: str) -> dict:
    argv = ["--input_data", str(data), "--input_model", str(model), "--output_result", str(out)]
    argv += ["--champion_model", str(champion)]
    argv += ["--champion_version", *version] if version else []
    assert score.main(argv) == 0
    with Image.open(out / "report.png") as png:
        assert png.format == "PNG" and png.width > 400 and png.height > 400
    return json.loads((out / "metrics.json").read_text())


def _line_colours(png: Path) -> tuple[int, int]:
    """(green, red) pixels in the report's champion line, the band under the title."""
    with Image.open(png) as image:
        band = np.asarray(image.convert("RGB"))[44:68].astype(int)
    r, g, b = band[..., 0], band[..., 1], band[..., 2]
    return int(np.sum((g > r + 60) & (g > b + 60))), int(np.sum((r > g + 80) & (r > b + 80)))


@pytest.fixture(scope="module")
def always_bag(tmp_path_factory) -> Path:
    return _scripted(tmp_path_factory.mktemp("champ") / "always-bag", _Always(8))


def test_without_a_champion_metrics_have_no_champion(result: Path) -> None:
    assert "champion" not in json.loads((result / "metrics.json").read_text())
    assert _line_colours(result / "report.png") == (0, 0)  # the matrix starts right after


def test_champion_scores_as_it_would_alone_and_the_new_model_is_unchanged(
    tiny_prepared, tiny_model, always_bag, result: Path, tmp_path: Path, capsys
) -> None:
    alone = tmp_path / "alone"
    assert run_score(tiny_prepared[1], always_bag, alone) == 0
    alone_metrics = json.loads((alone / "metrics.json").read_text())
    labels = np.load(tiny_prepared[1] / "labels.npy")
    assert alone_metrics["accuracy"] == pytest.approx(np.mean(labels == 8))
    capsys.readouterr()

    metrics = _champion_run(tiny_prepared[1], tiny_model, tmp_path / "out", always_bag, "7")
    assert metrics["champion"] == {
        "version": "7",
        "accuracy": alone_metrics["accuracy"],
        "correct": alone_metrics["correct"],
    }
    plain = json.loads((result / "metrics.json").read_text())
    del plain["seconds"], metrics["seconds"], metrics["champion"]
    assert metrics == plain  # the new model's own figures do not change
    out = capsys.readouterr()
    assert "champion v7: " in out.out and out.err == ""


def test_a_worse_champion_gets_the_lower_accuracy_and_a_green_line(
    tiny_prepared, tiny_model, always_bag, tmp_path: Path
) -> None:
    metrics = _champion_run(tiny_prepared[1], tiny_model, tmp_path, always_bag, "3")
    assert metrics["champion"]["accuracy"] < metrics["accuracy"]
    green, red = _line_colours(tmp_path / "report.png")
    assert green > 20 and red == 0


def test_a_better_champion_gets_a_red_line_and_no_version_is_null(
    tiny_prepared, always_bag, tiny_model, tmp_path: Path
) -> None:
    metrics = _champion_run(tiny_prepared[1], always_bag, tmp_path, tiny_model)  # roles swapped
    assert metrics["champion"]["version"] is None
    assert metrics["champion"]["accuracy"] > metrics["accuracy"]
    green, red = _line_colours(tmp_path / "report.png")
    assert red > 20 and green == 0


def test_the_champion_line_says_both_accuracies_and_the_difference() -> None:
    metrics = {"accuracy": 0.9271, "correct": 9271, "count": 10000}
    metrics["champion"] = {"version": "4", "accuracy": 0.921, "correct": 9210}
    text, colour = report.champion_line(metrics)
    assert text == "champion v4: 92.10% on the same test images; new model +0.61 points"
    assert colour == report.BETTER
    metrics["champion"] = {"version": "5", "accuracy": 0.9301, "correct": 9301}
    assert report.champion_line(metrics) == (
        "champion v5: 93.01% on the same test images; new model -0.30 points",
        report.WORSE,
    )
    metrics["champion"] = {"version": None, "accuracy": None, "error": "x: missing"}
    assert report.champion_line(metrics) == (
        "champion: could not be scored (x: missing)",
        report.WORSE,
    )
    assert report.champion_line({"accuracy": 0.5, "correct": 1, "count": 2}) is None


def _garbage(folder: Path) -> Path:
    folder.mkdir()
    (folder / "predictor.pt").write_bytes(b"definitely not a zip")
    return folder


BROKEN = {
    "missing": (lambda folder: folder, "predictor.pt: missing"),
    "not TorchScript": (_garbage, "not a TorchScript model"),
    "wrong shape": (lambda folder: _scripted(folder, _Always(1, width=5)), "N x 10 logits"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_champion_is_reported_and_the_step_still_succeeds(
    kind: str, tiny_prepared, tiny_model, result: Path, tmp_path: Path, capsys
) -> None:
    make, words = BROKEN[kind]
    champion = make(tmp_path / "champion")
    metrics = _champion_run(tiny_prepared[1], tiny_model, tmp_path / "out", champion, "9")
    assert metrics["champion"]["version"] == "9" and metrics["champion"]["accuracy"] is None
    error = metrics["champion"]["error"]
    assert words in error and "\n" not in error and "Traceback" not in error
    assert metrics["accuracy"] == json.loads((result / "metrics.json").read_text())["accuracy"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("score: warning: champion v9: could not be scored")
    green, red = _line_colours(tmp_path / "out" / "report.png")
    assert red > 20 and green == 0
