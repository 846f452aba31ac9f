"""A registered model folder, loaded for serving, and the answer to a batch of images.

The folder is the train step's ``output_model`` (as registered): only its ``predictor.pt``
(TorchScript: uint8 N x 1 x 28 x 28 -> logits) is loaded, as the score step loads it, so serving
needs none of the training code. Its name and version come from the caller (the local registry's
``model.json``, or the deployment's settings on Azure ML).

Like ``payload``, this module imports nothing of the service: Azure ML uploads
``retrain/serving/`` alone as a deployment's code.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREDICTOR = "predictor.pt"
BATCH = 500  # images per forward pass, as the score step uses
# Fashion-MNIST's names, the same as prepare_data's and score's (a test keeps them equal): this
# folder is uploaded alone, so it cannot import theirs.
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


class ModelLoadError(RuntimeError):
    """The folder holds no model that can serve; the message (one line) says why."""


@dataclass
class LoadedModel:
    """One model version, ready to answer; safe to call from many threads at once."""

    name: str
    version: str
    folder: Path
    predictor: Any  # torch.jit.ScriptModule
    load_seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N x 10, float32) for uint8 N x 28 x 28 images."""
        x = torch.from_numpy(np.require(images, np.uint8, ["C", "W"])).unsqueeze(1)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), BATCH):
                batch = x[i : i + BATCH]
                logits = self.predictor(batch)
                if not isinstance(logits, torch.Tensor) or logits.shape != (
                    len(batch),
                    len(CLASS_NAMES),
                ):
                    got = getattr(logits, "shape", type(logits).__name__)
                    raise ModelLoadError(f"{self.label}: expected N x 10 logits, got {got}")
                out.append(logits.float().softmax(1))
        return torch.cat(out).numpy()

    def answer(self, images: np.ndarray) -> dict[str, Any]:
        """The response document: per image its label, class name and probabilities."""
        probabilities = self.probabilities(images)
        labels = probabilities.argmax(1).tolist()
        return {
            "model": {"name": self.name, "version": self.version},
            "count": len(labels),
            "predictions": [
                {
                    "label": label,
                    "class": CLASS_NAMES[label],
                    "probabilities": [round(float(p), 6) for p in row],
                }
                for label, row in zip(labels, probabilities.tolist(), strict=True)
            ],
        }


def model_folder(folder: Path) -> Path:
    """The folder holding ``predictor.pt``: ``folder`` itself or, as Azure ML mounts a
    registered folder, its one subfolder that does."""
    if (folder / PREDICTOR).is_file():
        return folder
    found = sorted(path.parent for path in folder.glob(f"*/{PREDICTOR}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"{folder}: no {PREDICTOR} (is it a registered model folder?)")
    raise ModelLoadError(f"{folder}: {len(found)} subfolders hold a {PREDICTOR}; expected one")


def load_model(folder: Path, name: str, version: str) -> LoadedModel:
    """Load a registered model folder (checked with one forward pass, so a model that loads but
    cannot score is refused here, before it serves)."""
    started = time.perf_counter()
    path = model_folder(Path(folder)) / PREDICTOR
    with warnings.catch_warnings():  # TorchScript is deprecated in 2.x, still the fast loader
        warnings.simplefilter("ignore", FutureWarning)
        try:
            predictor = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ModelLoadError(f"{path}: not a TorchScript model ({first[:200]})") from None
    model = LoadedModel(name, version, path.parent, predictor)
    try:
        model.probabilities(np.zeros((1, 28, 28), dtype=np.uint8))
    except ModelLoadError:
        raise
    except Exception as exc:  # a foreign model can fail in any way; say how, in one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = f"{type(exc).__name__}: {lines[-1] if lines else 'no message'}"[:300]
        raise ModelLoadError(f"{path}: cannot score a test image ({why})") from None
    model.load_seconds = time.perf_counter() - started
    return model
