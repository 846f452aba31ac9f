"""The HTTP face of the service: JSON answers, and the one mapping from the error tree to status
codes. Bodies say what failed in the caller's terms; hosts, containers and SDK messages go only
to the log.

=========================  ======  ==============================================
error                      status  body
=========================  ======  ==============================================
InvalidRequestError        4xx     its field and reason (400, 409, 413, 422, ...)
NotFoundError              404     what was not found
InvalidBatchError          422     the file and why (field ``data``)
other PermanentError       422     its message
TransientError             503     "storage or the backend is unavailable" + Retry-After
CorruptDocumentError       500     "the run record is damaged"
StorageRefusedError        500     "storage refused the request"
ConfigurationError, other  500     "the service is misconfigured" / "internal error"
=========================  ======  ==============================================
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from ..backends.base import RunStatus
from ..errors import (
    ConfigurationError,
    CorruptDocumentError,
    InvalidBatchError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    StorageRefusedError,
    TransientError,
)
from ..ledger.records import RunRecord
from ..ledger.runs import DamagedRun

log = logging.getLogger("function_app")

Handler = Callable[[func.HttpRequest], func.HttpResponse]


def respond(status: int, document: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(document, indent=2) + "\n",
        status_code=status,
        headers=headers,
        mimetype="application/json",
    )


def error(status: int, message: str, field: str | None = None, **extra: Any) -> func.HttpResponse:
    headers = {"Retry-After": "30"} if status == 503 else None
    return respond(status, {"error": {"field": field, "message": message}, **extra}, headers)


def json_errors(handler: Handler) -> Handler:
    """Every error becomes a JSON answer (table above); never a stack trace."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        name = handler.__name__
        try:
            return handler(req)
        except InvalidRequestError as exc:
            return error(getattr(exc, "http_status", 400), exc.reason, exc.field)
        except NotFoundError as exc:
            return error(404, str(exc), getattr(exc, "field", None))
        except InvalidBatchError as exc:
            return error(422, str(exc), "data")
        except ConfigurationError as exc:
            log.error("%s: configuration: %s", name, exc)
            return error(500, "the service is misconfigured; see the function's log")
        except StorageRefusedError as exc:
            log.error("%s: %s", name, exc)
            return error(500, "storage refused the request; see the function's log")
        except PermanentError as exc:
            return error(422, str(exc))
        except TransientError as exc:
            log.warning("%s: %s", name, exc)
            return error(503, "storage or the backend is unavailable; retry later")
        except CorruptDocumentError as exc:
            log.error("%s: %s", name, exc)
            return error(500, "the run record is damaged")
        except Exception:
            log.exception("%s failed", name)
            return error(500, "internal error; see the function's log")

    return wrapper


def status_url(req: func.HttpRequest, run_id: str) -> str:
    """``.../api/retrain/<run_id>`` from the request's own URL (without its query, or key)."""
    parts = urlsplit(req.url)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{run_id}", "", ""))


Positions = Callable[[], dict[str, int]]  # each queued run's place in the queue (1: next)


def documents(runs: list[RunRecord | DamagedRun], positions: Positions) -> list[dict[str, Any]]:
    """The runs as JSON; a queued one with its ``queue_position`` (read only if one is)."""
    queued = any(isinstance(r, RunRecord) and r.status is RunStatus.QUEUED for r in runs)
    places = positions() if queued else {}
    found = []
    for run in runs:
        document = run.to_dict()
        if isinstance(run, RunRecord) and run.status is RunStatus.QUEUED:
            document["queue_position"] = places.get(run.run_id)
        found.append(document)
    return found


def listing(runs: list[RunRecord | DamagedRun], positions: Positions) -> dict[str, Any]:
    """``GET /api/retrain``'s body."""
    return {"runs": documents(runs, positions), "count": len(runs)}


def started(
    req: func.HttpRequest, record: RunRecord, created: bool, positions: Positions
) -> func.HttpResponse:
    """202 with where to look (a queued run: its place in the queue); 422 with the record when
    the run was refused."""
    [run] = documents([record], positions)
    if record.status is RunStatus.REJECTED or (
        record.status is RunStatus.FAILED and record.submitted_at is None
    ):
        field = "data" if record.status is RunStatus.REJECTED else None
        return error(422, record.reason or "the run could not be submitted", field, run=run)
    url = status_url(req, record.run_id)
    body = {
        "run_id": record.run_id,
        "job_name": record.job_name,
        "status": record.status.value,
        "status_url": url,
        "created": created,
        "run": run,
    }
    if "queue_position" in run:
        body["queue_position"] = run["queue_position"]
    return respond(202, body, {"Location": url})
