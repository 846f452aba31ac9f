"""A scoring request's body -> a batch of 28x28 uint8 images, or a one-line refusal.

Two kinds of body are accepted:

- ``application/json``: ``{"images": [IMAGE, ...]}``, each IMAGE 28 rows of 28 integers or 784
  integers (row by row), every one 0-255 (Fashion-MNIST's gray levels: 0 black, 255 white);
- ``image/png`` or ``image/jpeg``: one picture of any size or mode, made 28x28 gray the way
  ``python -m retrain data pack`` does: EXIF orientation applied, ``convert("L")``, then a LANCZOS
  resize that stretches it to 28x28 (no crop, no padding). Fashion-MNIST is light clothes on
  black: a photo of a dark item on a light background wants inverting before it is sent.

Everything else raises ``BadRequest`` with one line naming what is wrong. This module needs
only numpy and Pillow (no code of the service), because Azure ML uploads ``retrain/serving/``
alone as a deployment's code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

SIDE = 28
PIXELS = SIDE * SIDE
BYTES_PER_IMAGE = 16 * 1024  # room for one image as indented JSON (784 values of up to 255)
BODY_OVERHEAD = 64 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # a picture larger than this is refused before it is decoded
JSON_TYPES = ("application/json",)
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}


class BadRequest(ValueError):
    """The request cannot be scored; the message (one line) says why."""


@dataclass(frozen=True)
class Limits:
    """How much one request may hold: ``SERVE_MAX_IMAGES`` images, and a body of at most
    16 KiB per image plus 64 KiB (so a body too large is refused before it is read)."""

    max_images: int = 512

    @property
    def max_body(self) -> int:
        return BODY_OVERHEAD + BYTES_PER_IMAGE * self.max_images


def parse(body: bytes, content_type: str | None, limits: Limits) -> np.ndarray:
    """The images of a request as uint8 N x 28 x 28; BadRequest when it holds none."""
    if len(body) > limits.max_body:
        raise BadRequest(body_too_large(len(body), limits))
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return parse_json(body, limits)
    if kind in IMAGE_TYPES:
        return decode_image(body, IMAGE_TYPES[kind])[None]
    shown = kind or "none"
    raise BadRequest(
        f"Content-Type {shown!r} is not accepted: send application/json, image/png or image/jpeg"
    )


def body_too_large(size: int, limits: Limits) -> str:
    return (
        f"body too large: {size} bytes; at most {limits.max_body} "
        f"(SERVE_MAX_IMAGES={limits.max_images} images)"
    )


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes, limits: Limits) -> np.ndarray:
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadRequest("body: not UTF-8 text") from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, or a NaN/Infinity refused below
        raise BadRequest(f"body: not valid JSON ({_first_line(exc)})") from None
    if not isinstance(document, dict):
        raise BadRequest(f'body: expected a JSON object {{"images": [...]}}, got {_kind(document)}')
    if "images" not in document:
        raise BadRequest('body: expected a JSON object {"images": [...]}, without "images"')
    images = document["images"]
    if not isinstance(images, list):
        raise BadRequest(f"images: expected a list of images, got {_kind(images)}")
    if not images:
        raise BadRequest("images: the list is empty")
    if len(images) > limits.max_images:
        raise BadRequest(
            f"images: {len(images)} images; at most {limits.max_images} per request "
            "(SERVE_MAX_IMAGES)"
        )
    batch = np.empty((len(images), SIDE, SIDE), dtype=np.uint8)
    for n, image in enumerate(images):
        batch[n] = _image(image, f"images[{n}]")
    return batch


def _image(image: Any, where: str) -> np.ndarray:
    """One JSON image (28 lists of 28, or 784 values) as 28 x 28 uint8."""
    if not isinstance(image, list):
        raise BadRequest(
            f"{where}: expected 28 rows of 28 values or 784 values, got {_kind(image)}"
        )
    if len(image) == PIXELS:
        _values(image, where)
        return _pixels(image).reshape(SIDE, SIDE)
    if len(image) != SIDE:
        raise BadRequest(
            f"{where}: expected 28 rows of 28 values or 784 values, got {len(image)} items"
        )
    for r, row in enumerate(image):
        if not isinstance(row, list):
            raise BadRequest(f"{where}[{r}]: expected a row of 28 values, got {_kind(row)}")
        if len(row) != SIDE:
            raise BadRequest(f"{where}[{r}]: expected a row of 28 values, got {len(row)}")
        _values(row, f"{where}[{r}]")
    return _pixels(image)


def _values(values: list[Any], where: str) -> None:
    """Every value an integer 0-255 (JSON true/false and 1.0 are not gray levels)."""
    if all(type(v) is int for v in values) and min(values) >= 0 and max(values) <= 255:
        return
    i, value = next((i, v) for i, v in enumerate(values) if type(v) is not int or not 0 <= v <= 255)
    if type(value) is not int:
        raise BadRequest(f"{where}[{i}]: expected an integer 0-255, got {_kind(value)}")
    shown = str(value) if len(str(value)) <= 20 else f"{str(value)[:17]}..."
    raise BadRequest(f"{where}[{i}]: {shown} is out of range 0-255")


def _pixels(values: list[Any]) -> np.ndarray:
    return np.array(values, dtype=np.uint8)  # every value checked by _values


def decode_image(body: bytes, fmt: str) -> np.ndarray:
    """A PNG or JPEG picture as 28 x 28 uint8 (see the module docstring for how)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = "PNG" if fmt == "PNG" else "JPEG"
    if not body:
        raise BadRequest(f"body: empty; expected a {name} image")
    try:
        with Image.open(io.BytesIO(body), formats=[fmt]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise BadRequest(
                    f"body: a {width}x{height} image is too large to decode "
                    f"(at most {MAX_IMAGE_PIXELS} pixels)"
                )
            gray = ImageOps.exif_transpose(image).convert("L")
            small = gray.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    except BadRequest:
        raise
    except UnidentifiedImageError:
        raise BadRequest(f"body: not a {name} image (the Content-Type says it is)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadRequest(f"body: the {name} image cannot be decoded ({_first_line(exc)})") from None
    return np.array(small, dtype=np.uint8)  # a copy torch may write to


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _kind(value: Any) -> str:
    """What a JSON value is, for a message: its type, and a short form of small values."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             float: "a number with a fraction", int: "an integer", type(None): "null"}  # fmt: skip
    kind = names.get(type(value), type(value).__name__)
    if isinstance(value, bool | float | int) or value is None:
        return f"{kind} ({json.dumps(value)})"
    if isinstance(value, str) and len(value) <= 20:
        return f"{kind} ({json.dumps(value)})"
    return kind


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
