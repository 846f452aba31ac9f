"""Azure Functions entry points (Python v2 programming model): bindings only.

Each function turns its trigger into one call into ``retrain.service`` and answers:

- ``landing_blob``   blob trigger on ``%LANDING_CONTAINER%/{batch}/{file}`` (connection
                     ``DataStorage``): a landed file; one run per complete batch content.
- ``start_retrain``  ``POST /api/retrain``: the webhook; 202 with the run id and status URL.
- ``get_run``        ``GET /api/retrain/{run_id}``: one run record.
- ``list_runs``      ``GET /api/retrain``: recent runs, newest first.
- ``sweep_runs``     timer on ``%SWEEP_SCHEDULE%``: records how active runs ended.

Nothing heavy happens at import (no SDK client, no azure.ai.ml, no torch), so the host indexes the
app fast; the service is built from app settings on first use.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from retrain.backends.base import RunStatus
from retrain.decisions import parse_limit, parse_retrain_request, parse_run_id
from retrain.errors import (
    ConfigurationError,
    InvalidBatchError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from retrain.service import get_service

log = logging.getLogger("function_app")

BLOB_SOURCES = {
    "eventgrid": func.BlobSource.EVENT_GRID,
    "logsandcontainerscan": func.BlobSource.LOGS_AND_CONTAINER_SCAN,
}


def blob_source(env: dict[str, str] | os._Environ = os.environ) -> func.BlobSource:
    """``BLOB_TRIGGER_SOURCE``: EventGrid (default; the only source on Flex Consumption) or
    LogsAndContainerScan (polling). Read when the host indexes the app."""
    raw = env.get("BLOB_TRIGGER_SOURCE", "").strip() or "EventGrid"
    try:
        return BLOB_SOURCES[raw.lower()]
    except KeyError:
        raise ConfigurationError(
            f"BLOB_TRIGGER_SOURCE: expected EventGrid or LogsAndContainerScan, got {raw!r}"
        ) from None


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("landing_blob")
@app.blob_trigger(
    arg_name="blob",
    path="%LANDING_CONTAINER%/{batch}/{file}",
    connection="DataStorage",
    source=blob_source(),
)
def landing_blob(blob: func.InputStream) -> None:
    """A blob landed. Bad data is recorded (Rejected) and not retried; transient trouble raises,
    so the host retries, and the retry can never start a second run. A misconfigured app raises
    too: the event ends in the poison queue, from where it can be replayed once fixed."""
    try:
        outcome = get_service().handle_blob(blob.name or "")
    except (TransientError, ConfigurationError):
        raise
    except PermanentError as exc:  # retrying cannot fix it: log it, keep it out of the poison queue
        log.error("landing_blob %s: %s", blob.name, exc)
        return
    log.info("landing_blob %s: %s", blob.name, outcome)


# --- HTTP ---------------------------------------------------------------------------------------


def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(document, indent=2) + "\n",
        status_code=status,
        headers=headers,
        mimetype="application/json",
    )


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> func.HttpResponse:
    headers = {"Retry-After": "30"} if status == 503 else None
    return _json(status, {"error": {"field": field, "message": message}, **extra}, headers)


def _http(handler: Callable[[func.HttpRequest], func.HttpResponse]):
    """Errors become a JSON answer that names the field: 4xx for the caller's mistakes, 503 for
    transient trouble, 500 without a stack trace for ours."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except InvalidRequestError as exc:
            return _error(getattr(exc, "http_status", 400), exc.reason, exc.field)
        except NotFoundError as exc:
            return _error(404, str(exc), getattr(exc, "field", None))
        except InvalidBatchError as exc:
            return _error(422, str(exc), "data")
        except ConfigurationError as exc:
            log.error("%s: configuration: %s", handler.__name__, exc)
            return _error(500, f"the service is misconfigured: {exc}")
        except PermanentError as exc:
            return _error(422, str(exc))
        except TransientError as exc:
            log.warning("%s: %s", handler.__name__, exc)
            return _error(503, f"temporarily unavailable, retry later: {exc}")
        except Exception:
            log.exception("%s failed", handler.__name__)
            return _error(500, "internal error; see the function's log")

    return wrapper


def _status_url(req: func.HttpRequest, run_id: str) -> str:
    """``.../api/retrain/<run_id>`` from the request's own URL (without its query, or key)."""
    parts = urlsplit(req.url)
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{run_id}", "", ""))


@app.function_name("start_retrain")
@app.route(route="retrain", methods=["POST"])
@_http
def start_retrain(req: func.HttpRequest) -> func.HttpResponse:
    """Start a run on a landing batch or an ``azureml:NAME:VERSION`` data asset."""
    service = get_service()
    request = parse_retrain_request(
        req.get_body(), service.settings.landing_container, req.headers.get("Idempotency-Key")
    )
    record, created = service.start_run(request)
    run = record.to_dict()
    if record.status is RunStatus.REJECTED or (
        record.status is RunStatus.FAILED and record.submitted_at is None
    ):
        field = "data" if record.status is RunStatus.REJECTED else None
        return _error(422, record.reason or "the run could not be submitted", field, run=run)
    url = _status_url(req, record.run_id)
    body = {
        "run_id": record.run_id,
        "job_name": record.job_name,
        "status": record.status.value,
        "status_url": url,
        "created": created,
        "run": run,
    }
    return _json(202, body, {"Location": url})


@app.function_name("get_run")
@app.route(route="retrain/{run_id}", methods=["GET"])
@_http
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    """One run record."""
    run_id = parse_run_id(req.route_params.get("run_id"))
    return _json(200, get_service().get_run(run_id).to_dict())


@app.function_name("list_runs")
@app.route(route="retrain", methods=["GET"])
@_http
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Recent runs, newest first (``?limit=N``, at most 100)."""
    runs = get_service().list_runs(parse_limit(req.params))
    return _json(200, {"runs": [record.to_dict() for record in runs], "count": len(runs)})


# --- timer --------------------------------------------------------------------------------------


@app.function_name("sweep_runs")
@app.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False)
def sweep_runs(timer: func.TimerRequest) -> None:
    """Record how every active run stands; terminal records are written once."""
    if timer.past_due:
        log.info("sweep_runs: running late")
    summary = get_service().sweep()
    log.log(logging.INFO if summary.eventful else logging.DEBUG, "sweep_runs: %s", summary)
