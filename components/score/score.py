"""Score the trained model on the test data: metrics, predictions and a PNG report.

Input  ``--input_data``: the test folder prepare_data wrote (images.npy, labels.npy, meta.json).
       ``--input_model``: the folder train wrote; only its ``predictor.pt`` (TorchScript) is
       loaded, so this step needs none of the training code.
       ``--champion_model`` (optional): the current champion's model folder (its predictor.pt),
       scored on the same test images so the service can compare like with like;
       ``--champion_version`` (optional) is its registry version, echoed into metrics.json.
Output ``--output_result``:
    metrics.json      accuracy, per-class precision and recall, the confusion matrix (rows: true
                      class, columns: predicted), counts, timings and the model's preset;
                      with a champion also ``champion``: {version, accuracy, correct}, or
                      {version, accuracy: null, error} when it could not be scored (that
                      never fails this step)
    predictions.csv   index,label,prediction,confidence for every test image
    report.png        the confusion matrix and a grid of the most confident mistakes (report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:  # a package when imported (tests), a folder of scripts when run (Azure ML, local executor)
    from .report import champion_line, render_report
except ImportError:
    from report import champion_line, render_report  # type: ignore[no-redef]

# The same names as prepare_data's: Azure ML uploads each component's folder alone, so they
# cannot share a module.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
BATCH = 500  # images per forward pass: fits the caches, unlike one 10k batch


class ScoreError(Exception):
    """Bad scoring input; the message is one line."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input_data", type=Path, required=True, help="prepared test data")
    parser.add_argument("--input_model", type=Path, required=True, help="train's output folder")
    parser.add_argument("--output_result", type=Path, required=True, help="output folder")
    parser.add_argument("--champion_model", type=Path, help="the champion's model folder")
    parser.add_argument("--champion_version", help="the champion's registry version")
    args = parser.parse_args(argv)
    try:
        metrics = score(
            args.input_data,
            args.input_model,
            args.output_result,
            champion_dir=args.champion_model,
            champion_version=args.champion_version,
        )
    except ScoreError as error:
        print(f"score: {error}", file=sys.stderr)
        return 1
    champion = champion_line(metrics)  # None without a champion
    if champion and metrics["champion"]["accuracy"] is None:
        print(f"score: warning: {champion[0]}", file=sys.stderr)
    comparison = f"; {champion[0]}" if champion else ""
    print(
        f"score: accuracy {metrics['accuracy']:.4f} on {metrics['count']} images "
        f"(scored in {metrics['seconds']['scoring']:.2f} s){comparison}; "
        f"results in {args.output_result}"
    )
    return 0


def score(
    data_dir: Path,
    model_dir: Path,
    out_dir: Path,
    *,
    champion_dir: Path | None = None,
    champion_version: str | None = None,
) -> dict:
    started = time.perf_counter()
    images, labels, class_names = load_test_data(data_dir)
    predictor = load_predictor(model_dir / "predictor.pt")
    loaded = time.perf_counter()
    probabilities = predict(predictor, images, len(class_names))
    predictions = probabilities.argmax(1)
    confidence = probabilities.max(1)
    metrics = compute_metrics(labels, predictions, class_names)
    if preset := model_preset(model_dir):
        metrics["model"] = {"preset": preset}  # for the registry's tags, without the model
    scored = time.perf_counter()
    metrics["seconds"] = {"load": loaded - started, "predict": scored - loaded}
    metrics["seconds"]["scoring"] = scored - started
    if champion_dir is not None:
        metrics["champion"] = score_champion(
            champion_dir, champion_version, images, labels, len(class_names)
        )
        metrics["seconds"]["champion"] = time.perf_counter() - scored
        scored = time.perf_counter()

    report = render_report(images, labels, predictions, confidence, metrics)
    metrics["seconds"]["report"] = time.perf_counter() - scored
    columns = (labels.tolist(), predictions.tolist(), confidence.tolist())
    lines = [f"{i},{y},{p},{c:.4f}" for i, (y, p, c) in enumerate(zip(*columns, strict=True))]
    _write_all(
        out_dir,
        {
            "metrics.json": (json.dumps(metrics, indent=2) + "\n").encode(),
            "predictions.csv": (
                "index,label,prediction,confidence\n" + "\n".join(lines) + "\n"
            ).encode(),
            "report.png": report,
        },
    )
    _log_mlflow(metrics)
    return metrics


def model_preset(model_dir: Path) -> str | None:
    """The preset train recorded in ``config.json`` beside the predictor, if it did."""
    try:
        preset = json.loads((model_dir / "config.json").read_text()).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return preset if isinstance(preset, str) else None


def load_test_data(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """images (N x 28 x 28 uint8), labels (N), class names (from meta.json when present)."""
    try:
        images = np.load(folder / "images.npy")
        labels = np.load(folder / "labels.npy").astype(np.int64)
    except (OSError, ValueError) as error:
        raise ScoreError(f"{folder}: cannot read images.npy/labels.npy ({error})") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ScoreError(f"{folder}/images.npy: expected uint8 N x 28 x 28, got {images.shape}")
    if labels.shape != (len(images),) or len(images) == 0:
        raise ScoreError(f"{folder}/labels.npy: {labels.shape} labels for {len(images)} images")
    names = list(CLASS_NAMES)
    meta = folder / "meta.json"
    if meta.is_file():
        names = json.loads(meta.read_text()).get("class_names", names)
    return images, labels, names


def score_champion(
    model_dir: Path, version: str | None, images: np.ndarray, labels: np.ndarray, classes: int
) -> dict:
    """The champion's accuracy on the same test images. One that cannot be scored is reported,
    not fatal: the new model's result stands, and the service decides what that means."""
    try:
        predictor = load_predictor(
            model_dir / "predictor.pt", "is --champion_model a model folder?"
        )
        correct = int((predict(predictor, images, classes).argmax(1) == labels).sum())
    except ScoreError as error:
        return {"version": version, "accuracy": None, "error": str(error)}
    except Exception as error:  # a foreign model can fail in any way; say how, in one line
        return {"version": version, "accuracy": None, "error": _one_line(error)}
    return {"version": version, "accuracy": correct / len(labels), "correct": correct}


def load_predictor(
    path: Path, hint: str = "is --input_model the train step's output?"
) -> torch.jit.ScriptModule:
    """The TorchScript predictor train exported (uint8 N x 1 x 28 x 28 -> logits), on the GPU
    when there is one (the full-size model trained on a GPU is 17 times the small one's work)."""
    if not path.is_file():
        raise ScoreError(f"{path}: missing ({hint})")
    with warnings.catch_warnings():  # TorchScript is deprecated in 2.x, still the fast loader
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location=_device()).eval()
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise ScoreError(f"{path}: not a TorchScript model ({first})") from None


@torch.inference_mode()
def predict(predictor: torch.jit.ScriptModule, images: np.ndarray, classes: int) -> np.ndarray:
    """Class probabilities (N x classes, float32), in batches of BATCH images."""
    x = torch.from_numpy(images).unsqueeze(1).to(_device())
    out = []
    for i in range(0, len(x), BATCH):
        batch = x[i : i + BATCH]
        logits = predictor(batch)
        if not isinstance(logits, torch.Tensor) or logits.shape != (len(batch), classes):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ScoreError(f"predictor output: expected N x {classes} logits, got {got}")
        out.append(logits.float().softmax(1))
    return torch.cat(out).cpu().numpy()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line; TorchScript puts the cause on its message's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else 'no message'}"[:300]


def compute_metrics(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision/recall (None where undefined) and the confusion matrix."""
    k = len(class_names)
    confusion = np.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)
    correct = np.diag(confusion)
    support = confusion.sum(1)  # true images per class
    predicted = confusion.sum(0)  # predictions per class

    def ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
        return [float(a / b) if b else None for a, b in zip(num, den, strict=True)]

    return {
        "accuracy": float(correct.sum() / len(labels)),
        "count": len(labels),
        "correct": int(correct.sum()),
        "class_names": class_names,
        "precision": ratio(correct, predicted),
        "recall": ratio(correct, support),
        "support": support.tolist(),
        "confusion_matrix": confusion.tolist(),
    }


# --- output ------------------------------------------------------------------------------------


def _write_all(folder: Path, files: dict[str, bytes]) -> None:
    """Write every file under a temporary name, then rename them all: no half-written result."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [(folder / f".{name}.tmp", folder / name) for name in files]
    try:
        for (tmp, _), data in zip(pairs, files.values(), strict=True):
            tmp.write_bytes(data)
        for tmp, final in pairs:
            os.replace(tmp, final)
    finally:
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)


def _log_mlflow(metrics: dict) -> None:
    """Log the test accuracy (and the champion's) when mlflow is installed and a tracking server
    is configured."""
    if not (os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_RUN_ID")):
        return
    try:
        import mlflow
    except ImportError:
        return
    mlflow.log_metric("test_accuracy", metrics["accuracy"])
    champion = metrics.get("champion") or {}
    if champion.get("accuracy") is not None:
        mlflow.log_metric("champion_test_accuracy", champion["accuracy"])


if __name__ == "__main__":
    sys.exit(main())
