"""Score the trained model on the test data: metrics, predictions and a PNG report.

Input  ``--input_data``: the test folder prepare_data wrote (images.npy, labels.npy, meta.json).
       ``--input_model``: the folder train wrote; only its ``predictor.pt`` (TorchScript) is
       loaded, so this step needs none of the training code.
Output ``--output_result``:
    metrics.json      accuracy, per-class precision and recall, the confusion matrix (rows: true
                      class, columns: predicted), counts and timings
    predictions.csv   index,label,prediction,confidence for every test image
    report.png        the confusion matrix and a grid of the most confident mistakes
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
MISTAKES_SHOWN = 36


class ScoreError(Exception):
    """Bad scoring input; the message is one line."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input_data", type=Path, required=True, help="prepared test data")
    parser.add_argument("--input_model", type=Path, required=True, help="train's output folder")
    parser.add_argument("--output_result", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        metrics = score(args.input_data, args.input_model, args.output_result)
    except ScoreError as error:
        print(f"score: {error}", file=sys.stderr)
        return 1
    print(
        f"score: accuracy {metrics['accuracy']:.4f} on {metrics['count']} images "
        f"(scored in {metrics['seconds']['scoring']:.2f} s); results in {args.output_result}"
    )
    return 0


def score(data_dir: Path, model_dir: Path, out_dir: Path) -> dict:
    started = time.perf_counter()
    images, labels, class_names = load_test_data(data_dir)
    predictor = load_predictor(model_dir / "predictor.pt")
    loaded = time.perf_counter()
    probabilities = predict(predictor, images)
    predictions = probabilities.argmax(1)
    confidence = probabilities.max(1)
    metrics = compute_metrics(labels, predictions, class_names)
    scored = time.perf_counter()
    metrics["seconds"] = {"load": loaded - started, "predict": scored - loaded}
    metrics["seconds"]["scoring"] = scored - started

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


def load_predictor(path: Path) -> torch.jit.ScriptModule:
    """The TorchScript predictor train exported (uint8 N x 1 x 28 x 28 -> logits), on the GPU
    when there is one (the full-size model trained on a GPU is 17 times the small one's work)."""
    if not path.is_file():
        raise ScoreError(f"{path}: missing (is --input_model the train step's output?)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with warnings.catch_warnings():  # TorchScript is deprecated in 2.x, still the fast loader
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise ScoreError(f"{path}: not a TorchScript model ({first})") from None


@torch.inference_mode()
def predict(predictor: torch.jit.ScriptModule, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N x classes, float32), in batches of BATCH images."""
    device = next(predictor.parameters()).device
    x = torch.from_numpy(images).unsqueeze(1).to(device)
    out = [predictor(x[i : i + BATCH]).float().softmax(1) for i in range(0, len(x), BATCH)]
    return torch.cat(out).cpu().numpy()


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


# --- report ------------------------------------------------------------------------------------


def render_report(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    confidence: np.ndarray,
    metrics: dict,
) -> bytes:
    """PNG bytes: a title, the confusion matrix, and the most confident mistakes as a grid."""
    import io

    from PIL import Image, ImageDraw

    names = [_short(name) for name in metrics["class_names"]]
    matrix = _confusion_image(np.array(metrics["confusion_matrix"]), names)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES_SHOWN]
    mistakes = _mistakes_image(images[wrong], labels[wrong], predictions[wrong], names)

    width = max(matrix.width, mistakes.width if mistakes else 0) + 2 * 16
    height = 48 + matrix.height + (40 + mistakes.height if mistakes else 40) + 16
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    title = (
        f"Fashion-MNIST test: accuracy {metrics['accuracy']:.2%} "
        f"({metrics['correct']} of {metrics['count']})"
    )
    draw.text((16, 14), title, fill="black", font=_font(20))
    page.paste(matrix, (16, 48))
    y = 48 + matrix.height + 12
    if mistakes:
        total = metrics["count"] - metrics["correct"]
        caption = f"Most confident mistakes ({len(wrong)} of {total}): true class, as predicted"
        draw.text((16, y), caption, fill="black", font=_font(15))
        page.paste(mistakes, (16, y + 28))
    else:
        draw.text((16, y), "No mistakes.", fill="black", font=_font(15))
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _confusion_image(confusion: np.ndarray, names: list[str]):
    """The confusion matrix as a heat map: blue diagonal, red errors, counts in the cells."""
    from PIL import Image, ImageDraw

    k = len(names)
    cell, left, top = 46, 96, 96
    image = Image.new("RGB", (left + k * cell + 4, top + k * cell + 24), "white")
    draw = ImageDraw.Draw(image)
    font = _font(13)
    rows = np.maximum(confusion.sum(1, keepdims=True), 1)
    share = confusion / rows  # fraction of each true class
    for i in range(k):
        for j in range(k):
            x0, y0 = left + j * cell, top + i * cell
            strength = share[i, j] if i == j else min(1.0, 4 * share[i, j])
            base = (40, 90, 200) if i == j else (210, 50, 40)
            color = tuple(round(255 + (c - 255) * strength) for c in base)
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=color, outline="#dddddd")
            text = str(confusion[i, j])
            ink = "white" if strength > 0.55 else "black"
            draw.text((x0 + cell / 2, y0 + cell / 2), text, fill=ink, font=font, anchor="mm")
        draw.text(
            (left - 6, top + i * cell + cell / 2), names[i], fill="black", font=font, anchor="rm"
        )
        label = Image.new("RGB", (top - 8, cell), "white")  # column names, turned upright
        ImageDraw.Draw(label).text((2, cell / 2), names[i], fill="black", font=font, anchor="lm")
        image.paste(label.rotate(90, expand=True), (left + i * cell, 4))
    draw.text(
        (left, top + k * cell + 6),
        "rows: true class, columns: predicted",
        fill="#555555",
        font=font,
    )
    return image


def _mistakes_image(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, names: list[str]
):
    """Misclassified images in a torchvision grid, captioned with true and predicted class."""
    if len(images) == 0:
        return None
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    scale, columns, pad = 3, 6, 34  # pad leaves room for a two-line caption above each tile
    tiles = torch.from_numpy(images).unsqueeze(1).repeat_interleave(scale, 2)
    tiles = tiles.repeat_interleave(scale, 3)
    grid = make_grid(tiles, nrow=columns, padding=pad, pad_value=255)  # 3 x H x W uint8
    image = Image.fromarray(grid.permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(image)
    font = _font(12)
    side = 28 * scale
    for n, (true, pred) in enumerate(zip(labels.tolist(), predictions.tolist(), strict=True)):
        x = pad + (n % columns) * (side + pad) + side / 2
        y = pad + (n // columns) * (side + pad)
        draw.text((x, y - 17), names[true], fill="black", font=font, anchor="md")
        draw.text((x, y - 3), f"as {names[pred]}", fill=(190, 30, 30), font=font, anchor="md")
    return image


def _short(name: str) -> str:
    return {"T-shirt/top": "T-shirt", "Ankle boot": "Boot"}.get(name, name)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


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
    """Log the test accuracy when mlflow is installed and a tracking server is configured."""
    if not (os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_RUN_ID")):
        return
    try:
        import mlflow
    except ImportError:
        return
    mlflow.log_metric("test_accuracy", metrics["accuracy"])


if __name__ == "__main__":
    sys.exit(main())
