"""CloudEvents 1.0 (structured mode, JSON) for run transitions and promotions.

An event is a plain dict, so the outbox can store it as written and a retry sends the same
bytes. ``body`` is the one serialization: what is signed, sent and stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..clock import iso, utcnow
from ..ledger.encoding import dumps

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"  # structured mode, one event per request
PREFIX = "fashion.retrain"
PROMOTED = f"{PREFIX}.model.promoted"
DEPLOYED, DEPLOY_FAILED = f"{PREFIX}.model.deployed", f"{PREFIX}.model.deploy_failed"  # rollout
RUN_TYPES: dict[str, str] = {
    status: f"{PREFIX}.run.{status.lower()}"
    for status in ("Completed", "Failed", "Canceled", "Rejected")
}
TYPES = frozenset({*RUN_TYPES.values(), PROMOTED, DEPLOYED, DEPLOY_FAILED})


def event_type(status: str) -> str:
    """The event type of a terminal run status (``Completed`` -> ``fashion.retrain.run.completed``).

    ``status`` may be a ``RunStatus`` (a ``str`` enum) or its value; anything else, including a
    status that is not terminal, is a programming error (ValueError).
    """
    value = getattr(status, "value", status)
    try:
        return RUN_TYPES[value]
    except KeyError:
        raise ValueError(f"no event for run status {value!r}") from None


def event_id(run_id: str, transition: str) -> str:
    """The stable id of one transition of one run: receivers dedupe on it, the outbox keys on it."""
    return f"{run_id}:{transition}"


def cloud_event(
    *,
    id: str,  # the CloudEvents attribute names
    source: str,
    type: str,
    subject: str,
    data: Mapping[str, Any],
    time: datetime | None = None,
) -> dict[str, Any]:
    """A structured-mode CloudEvent; ``time`` defaults to now and must be timezone-aware."""
    if type not in TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if time is not None and time.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return {
        "specversion": SPEC_VERSION,
        "id": id,
        "source": source,
        "type": type,
        "subject": subject,
        "time": iso(time or utcnow()),
        "datacontenttype": "application/json",
        "data": dict(data),
    }


def body(event: Mapping[str, Any]) -> bytes:
    """The canonical bytes of ``event``: compact JSON with sorted keys, UTF-8.

    The same event always gives the same bytes, so a redelivery carries the same signature.
    """
    return dumps(event, sort_keys=True).encode()
