"""score's PNG report: a title (with the champion comparison), the confusion matrix, and the
most confident mistakes. A sibling of score.py: Azure ML uploads the whole folder as the code."""

from __future__ import annotations

import io

import numpy as np
import torch

MISTAKES_SHOWN = 36
BETTER, WORSE, SAME = (20, 130, 40), (190, 30, 30), (90, 90, 90)


def render_report(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    confidence: np.ndarray,
    metrics: dict,
) -> bytes:
    """PNG bytes: a title, the champion line when one was given, the confusion matrix, and the
    most confident mistakes as a grid."""
    from PIL import Image, ImageDraw

    names = [_short(name) for name in metrics["class_names"]]
    matrix = _confusion_image(np.array(metrics["confusion_matrix"]), names)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES_SHOWN]
    mistakes = _mistakes_image(images[wrong], labels[wrong], predictions[wrong], names)
    champion = champion_line(metrics)

    top = 48 + (28 if champion else 0)
    wide = round(_font(16).getlength(champion[0])) if champion else 0
    width = max(matrix.width, mistakes.width if mistakes else 0, wide) + 2 * 16
    height = top + matrix.height + (40 + mistakes.height if mistakes else 40) + 16
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    title = (
        f"Fashion-MNIST test: accuracy {metrics['accuracy']:.2%} "
        f"({metrics['correct']} of {metrics['count']})"
    )
    draw.text((16, 14), title, fill="black", font=_font(20))
    if champion:
        text, color = champion
        draw.text((16, 46), text, fill=color, font=_font(16))
    page.paste(matrix, (16, top))
    y = top + matrix.height + 12
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


def champion_line(metrics: dict) -> tuple[str, tuple[int, int, int]] | None:
    """The comparison with the champion and its colour (green better, red worse), or None when
    no champion was given."""
    champion = metrics.get("champion")
    if champion is None:
        return None
    name = f"champion v{champion['version']}" if champion.get("version") else "champion"
    if champion.get("accuracy") is None:
        error = str(champion.get("error"))
        error = error if len(error) <= 100 else error[:99] + "…"
        return f"{name}: could not be scored ({error})", WORSE
    points = 100 * (metrics["accuracy"] - champion["accuracy"])
    color = SAME
    if metrics["correct"] != champion["correct"]:
        color = BETTER if metrics["correct"] > champion["correct"] else WORSE
    text = (
        f"{name}: {champion['accuracy']:.2%} on the same test images; "
        f"new model {points:+.2f} points"
    )
    return text, color


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
