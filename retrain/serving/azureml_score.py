"""The scoring script of an Azure ML managed online deployment: ``init()`` and ``run()``.

The deployment's code is this folder (``retrain/serving/``), its scoring script this file, its
environment the training environment (torch, numpy, Pillow, and Azure ML's inference server).
It answers exactly as ``POST /score`` does locally (``answer.py``): same request, same
response, same one-line 400s.

The variables read here belong to the deployment's container, not to the Function App:
Azure ML sets ``AZUREML_MODEL_DIR`` (where the registered model is mounted); the rollout sets
``SERVE_MODEL_NAME``, ``SERVE_MODEL_VERSION`` and ``SERVE_MAX_IMAGES`` on the deployment.

With the inference server's ``rawhttp`` decorator ``run()`` receives the request itself, so a
PNG or JPEG body and the Content-Type reach it and a refusal is a real 400; without it (an older
server) ``run()`` gets the JSON text and answers a dict.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:  # a package when imported (tests); a folder of scripts on Azure ML
    from .answer import answer
    from .payload import Limits
    from .scoring import LoadedModel, load_model
except ImportError:
    from answer import answer  # type: ignore[no-redef]
    from payload import Limits  # type: ignore[no-redef]
    from scoring import LoadedModel, load_model  # type: ignore[no-redef]

try:  # Azure ML's inference server (azureml-inference-server-http)
    from azureml.contrib.services.aml_request import rawhttp
    from azureml.contrib.services.aml_response import AMLResponse
except ImportError:
    rawhttp = None
    AMLResponse = None

log = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def init(container: Mapping[str, str] | None = None) -> None:
    """Load the deployment's model once, when the container starts."""
    container = os.environ if container is None else container
    root = Path(container.get("AZUREML_MODEL_DIR", "."))
    name = container.get("SERVE_MODEL_NAME", "").strip() or root.parent.name or "model"
    version = container.get("SERVE_MODEL_VERSION", "").strip() or root.name or "unknown"
    raw = container.get("SERVE_MAX_IMAGES", "").strip()
    limits = Limits(int(raw)) if raw.isdigit() and int(raw) > 0 else Limits()
    model: LoadedModel = load_model(root, name, version)
    _state.update(model=model, limits=limits)
    log.info("serve: %s loaded from %s in %.2f s", model.label, root, model.load_seconds)


def score_request(body: bytes, content_type: str | None) -> tuple[int, dict[str, Any]]:
    """``(status, document)`` for one request: what both forms of ``run()`` answer."""
    return answer(_state["model"], body, content_type, _state["limits"])


def _run(request: Any) -> Any:
    if isinstance(request, str | bytes):  # no rawhttp: the body, taken to be JSON
        body = request.encode() if isinstance(request, str) else request
        return score_request(body, "application/json")[1]
    status, document = score_request(request.get_data(), request.headers.get("Content-Type"))
    if AMLResponse is None:
        return document
    return AMLResponse(json.dumps(document), status, {"Content-Type": "application/json"})


run = rawhttp(_run) if rawhttp is not None else _run
