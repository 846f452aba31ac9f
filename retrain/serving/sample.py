"""Score a few of a run's test images through the local server, and print the answer.

``make demo`` ends with it: the champion of the demo's registry is served on a free port of
127.0.0.1 (exactly what ``python -m retrain serve`` runs), a handful of the run's own test
images (``RUN_DIR/prepare_data_node/test_data``) are posted to ``/score`` as JSON, and the
predictions are printed beside the true labels. Only the standard library speaks HTTP here, as
any client would.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .local import LocalServing
from .scoring import CLASS_NAMES

TEST_DATA = Path("prepare_data_node") / "test_data"


def post_images(url: str, images: np.ndarray, timeout: float = 30.0) -> dict[str, Any]:
    """POST uint8 N x 28 x 28 images to ``url`` (``.../score``) as JSON; the answer."""
    body = json.dumps({"images": images.tolist()}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read()))


def run_test_images(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's test images and labels, as prepare_data wrote them."""
    folder = Path(run_dir) / TEST_DATA
    return np.load(folder / "images.npy"), np.load(folder / "labels.npy")


def serve_and_score(
    models_dir: Path,
    model_name: str,
    run_dir: Path,
    *,
    count: int = 4,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Serve the champion of ``models_dir``, score ``count`` of ``run_dir``'s test images
    through it, print one line per image (``say``, default stderr) and return the answer."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    images, labels = run_test_images(run_dir)
    picked = images[:count]
    with LocalServing(models_dir, model_name, port=0) as serving:
        say(serving.banner())
        started = time.perf_counter()
        document = post_images(f"{serving.url}/score", picked)
        elapsed = time.perf_counter() - started
    model = document["model"]
    say(
        f"POST /score with {len(picked)} of the run's test images: answered by "
        f"{model['name']}:{model['version']} in {elapsed * 1000:.0f} ms"
    )
    for n, (prediction, label) in enumerate(zip(document["predictions"], labels, strict=False)):
        verdict = "right" if prediction["label"] == int(label) else "wrong"
        confidence = max(prediction["probabilities"])
        say(
            f"   image {n}: {prediction['class']} ({confidence:.0%}); "
            f"labelled {CLASS_NAMES[int(label)]}: {verdict}"
        )
    return document
