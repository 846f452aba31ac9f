"""One request in, one response out: what ``POST /score`` and the Azure ML ``run()`` share.

The result is an HTTP status and a JSON document: 200 with the predictions; 400 with
``{"error": "<one line>"}`` for anything wrong with the request; 500 with a one-line error (and
the trace in the log, never in the answer) only for a fault of the model or this code.
"""

from __future__ import annotations

import logging
from typing import Any

try:  # a package here; a folder of scripts on Azure ML (azureml_score.py)
    from .payload import BadRequest, Limits, parse
    from .scoring import LoadedModel
except ImportError:
    from payload import BadRequest, Limits, parse  # type: ignore[no-redef]
    from scoring import LoadedModel  # type: ignore[no-redef]

log = logging.getLogger(__name__)


def answer(
    model: LoadedModel, body: bytes, content_type: str | None, limits: Limits
) -> tuple[int, dict[str, Any]]:
    """``(status, document)`` for one scoring request."""
    try:
        images = parse(body, content_type, limits)
    except BadRequest as exc:
        return 400, {"error": str(exc)}
    try:
        return 200, model.answer(images)
    except Exception as exc:
        log.exception("serve: %s failed to score %d image(s)", model.label, len(images))
        return 500, {"error": f"internal error: {type(exc).__name__} while scoring ({model.label})"}
