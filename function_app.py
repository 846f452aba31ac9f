"""Azure Functions entry points (Python v2 programming model), bindings only: each function
turns its trigger into one call into ``retrain.service`` and answers:

- ``landing_blob``   blob trigger on ``%LANDING_CONTAINER%/{batch}/{file}``, SDK-type: names only.
- ``settle_batch``   queue trigger on ``%SETTLE_QUEUE%``: re-checks a batch still changing.
- ``start_retrain``  ``POST /api/retrain``: the webhook; 202 with the run id and status URL.
- ``get_run``, ``list_runs``  ``GET /api/retrain/{run_id}``, ``GET /api/retrain``: records.
- ``list_models``    ``GET /api/models``: registered model versions, newest first; the champion.
- ``sweep_runs``     timer on ``%SWEEP_SCHEDULE%``: records how active runs stand.
- ``job_events``     Event Grid trigger: Azure ML's RunStatusChanged, recorded within seconds.

Importing builds no SDK client, nor imports azure.ai.ml or torch (the service is built on first
use); the blob extension is: the worker reads the annotation to bind a BlobClient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

from retrain.backends import require_local_packages
from retrain.errors import ConfigurationError, PermanentError
from retrain.landing.decisions import parse_limit, parse_retrain_request, parse_run_id
from retrain.service.core import Outcome, get_service
from retrain.service.http_api import documents, json_errors, listing, respond, started
from retrain.service.job_events import handle_job_event
from retrain.settings import blob_trigger_source

log = logging.getLogger("function_app")


def _act(what: str, handle: Callable[[], Outcome]) -> None:
    """Bad data is recorded (Rejected), not retried; transient trouble and a misconfigured app
    raise: the host retries, then parks the event in the poison queue for replay."""
    try:
        outcome = handle()
    except ConfigurationError:
        raise
    except PermanentError as exc:  # retrying cannot fix it: log it, keep it out of the poison queue
        log.error("%s: %s", what, exc)
        return
    log.info("%s: %s", what, outcome)


require_local_packages(os.environ)  # local training needs torch: say so at startup, in one line
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("landing_blob")
@app.blob_trigger(arg_name="blob", path="%LANDING_CONTAINER%/{batch}/{file}",
                  connection="DataStorage", source=blob_trigger_source(os.environ))  # fmt: skip
def landing_blob(blob: blob_sdk.BlobClient) -> None:
    """A blob landed: its batch runs once complete and settled. Only its name is read."""
    path = f"{blob.container_name}/{blob.blob_name}"
    _act(f"landing_blob {path}", lambda: get_service().handle_blob(path))


@app.function_name("settle_batch")
@app.queue_trigger(arg_name="message", queue_name="%SETTLE_QUEUE%", connection="DataStorage")
def settle_batch(message: func.QueueMessage) -> None:
    """Look again at a batch that was still changing."""
    body = message.get_body().decode("utf-8", "replace")
    _act(f"settle_batch {body[:200]}", lambda: get_service().handle_settle(body))


@app.function_name("start_retrain")
@app.route(route="retrain", methods=["POST"])
@json_errors
def start_retrain(req: func.HttpRequest) -> func.HttpResponse:
    """Start a run on a landing batch or an ``azureml:NAME:VERSION`` data asset."""
    service = get_service()
    key = req.headers.get("Idempotency-Key")
    request = parse_retrain_request(req.get_body(), service.settings.landing_container, key)
    return started(req, *service.start_run(request), service.queue_positions)


@app.function_name("get_run")
@app.route(route="retrain/{run_id}", methods=["GET"])
@json_errors
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    """One run record."""
    run = get_service().get_run(parse_run_id(req.route_params.get("run_id")))
    return respond(200, documents([run], get_service().queue_positions)[0])


@app.function_name("list_runs")
@app.route(route="retrain", methods=["GET"])
@json_errors
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Recent runs, newest first (``?limit=N``, at most 100); a damaged one is marked."""
    runs = get_service().list_runs(parse_limit(req.params))
    return respond(200, listing(runs, get_service().queue_positions))


@app.function_name("list_models")
@app.route(route="models", methods=["GET"])
@json_errors
def list_models(req: func.HttpRequest) -> func.HttpResponse:
    """Registered versions of ``MODEL_NAME``, newest first (``?limit=N``), and the champion."""
    return respond(200, get_service().list_models(parse_limit(req.params)))


@app.function_name("sweep_runs")
@app.timer_trigger(arg_name="timer", schedule="%SWEEP_SCHEDULE%", run_on_startup=False)
def sweep_runs(timer: func.TimerRequest) -> None:
    """Record how active runs stand; register and promote models; announce; admit queued runs."""
    summary = get_service().sweep()
    log.log(logging.INFO if summary.eventful else logging.DEBUG, "sweep_runs: %s", summary)


@app.function_name("job_events")
@app.event_grid_trigger(arg_name="event")
def job_events(event: func.EventGridEvent) -> None:
    """A job's status changed: record that run now, as the sweep would (the event is a hint)."""
    outcome = handle_job_event(get_service(), event.event_type, event.get_json())
    log.log(outcome.level, "job_events %s: %s", str(event.subject)[:200], outcome)
