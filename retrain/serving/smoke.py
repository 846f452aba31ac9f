"""The rollout's smoke test: the run's own test images, replayed through the new deployment.

The images come from the run's immutable data version (``DATASETS_CONTAINER/<asset>/<version>/``,
the ``t10k`` files the score step's test split was made from). The first
``SERVE_SMOKE_IMAGES`` of them are sent to the deployment by name; its accuracy on them must
reproduce the accuracy the run recorded on the whole test set within **three standard errors of
a binomial proportion** on that many images, ``3 * sqrt(p * (1 - p) / n)`` (at least ``1 / n``):
a sample of 256 from a test set scored 0.90 may differ by 0.056 by chance alone, while a model
served wrongly (other preprocessing, another model) is far outside it.
"""

from __future__ import annotations

import gzip
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.prepare_data.prepare_data import IdxError, parse_header

from ..errors import PermanentError

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage import BlobStore

TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    correct: int
    count: int
    recorded: float
    tolerance: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.count

    def summary(self) -> str:
        verdict = "within" if self.passed else "outside"
        return (
            f"{self.correct} of {self.count} test images right ({self.accuracy:.4f}); the run "
            f"recorded {self.recorded:.4f}: {verdict} the tolerance of {self.tolerance:.4f}"
        )


def tolerance(recorded: float, count: int) -> float:
    """Three standard errors of a proportion ``recorded`` measured on ``count`` images."""
    return max(3 * math.sqrt(recorded * (1 - recorded) / count), 1 / count)


def judge(predicted: list[int], labels: np.ndarray, recorded: float) -> SmokeResult:
    count = len(labels)
    correct = int((np.asarray(predicted) == labels[:count]).sum())
    allowed = tolerance(recorded, count)
    passed = abs(correct / count - recorded) <= allowed
    return SmokeResult(passed, correct, count, recorded, allowed)


def run_test_images(
    store: BlobStore, settings: Settings, data_asset: str | None, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` test images and labels of the data version ``NAME:VERSION``."""
    name, _, version = (data_asset or "").partition(":")
    if not (name and version):
        raise PermanentError("the run names no data version to take test images from")
    prefix = f"{name}/{version}/"
    found = {b.name.removeprefix(prefix) for b in store.list(settings.datasets_container, prefix)}
    arrays = []
    with tempfile.TemporaryDirectory() as tmp:
        for base in (TEST_IMAGES, TEST_LABELS):
            file = next((f for f in (base, f"{base}.gz") if f in found), None)
            if file is None:
                raise PermanentError(
                    f"{settings.datasets_container}/{prefix}: no {base}[.gz] to smoke-test with"
                )
            path = Path(tmp) / file
            store.download(settings.datasets_container, prefix + file, path)
            data = path.read_bytes()
            arrays.append(read_idx(base, gzip.decompress(data) if file.endswith(".gz") else data))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(labels) != len(images):
        raise PermanentError(f"{prefix}: test images {images.shape}, labels {labels.shape}")
    return images[:count], labels[:count].astype(np.int64)


def read_idx(name: str, data: bytes) -> np.ndarray:
    """The uncompressed IDX file ``name`` as an array, its header checked as prepare_data
    checks it (the kind, images or labels, from the name)."""
    try:
        header = parse_header(name, data)
    except IdxError as exc:
        raise PermanentError(str(exc)) from None
    body = np.frombuffer(data, dtype=np.uint8, offset=header.header_size)
    if body.size != header.payload_size:
        raise PermanentError(f"{name}: {body.size} values, its header says {header.payload_size}")
    return body.reshape(header.shape)
