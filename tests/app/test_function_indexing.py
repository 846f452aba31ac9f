"""What the host indexes: function_app.app.get_functions() and the bindings' JSON, and what
importing function_app costs (run in a fresh interpreter, as the host's worker does)."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pytest

from retrain.emulators.functions_host import indexed
from retrain.errors import ConfigurationError
from retrain.settings import PROJECT_ROOT


def bindings(name: str) -> list[dict]:
    return [json.loads(raw) for raw in indexed()[name].get_raw_bindings()]


def trigger(name: str) -> dict:
    [found] = [b for b in bindings(name) if b["direction"] == "IN" and "Trigger" in b["type"]]
    return found


def test_the_app_registers_eight_functions():
    assert sorted(indexed()) == [
        "get_run",
        "job_events",
        "landing_blob",
        "list_models",
        "list_runs",
        "settle_batch",
        "start_retrain",
        "sweep_runs",
    ]


def test_blob_trigger_binding():
    blob = trigger("landing_blob")
    assert blob["type"] == "blobTrigger"
    assert blob["path"] == "%LANDING_CONTAINER%/{batch}/{file}"
    assert blob["connection"] == "DataStorage"
    assert blob["source"] == "EventGrid"


def test_the_blob_trigger_is_an_sdk_type_binding_the_extension_converts():
    """The worker picks the SDK-type (deferred) binding from the trigger's annotation: the
    extension's converter must claim it, so the host sends names, not the blob's content."""
    from azurefunctions.extensions.base.meta import _ConverterMeta
    from azurefunctions.extensions.bindings.blob import BlobClient, BlobClientConverter

    user_function = indexed()["landing_blob"].get_user_function()
    hints = typing.get_type_hints(user_function)  # as the worker resolves annotations
    assert hints["blob"] is BlobClient
    assert _ConverterMeta.check_supported_type(hints["blob"])  # the worker's deferred check
    assert _ConverterMeta.get("blobTrigger") is BlobClientConverter
    assert BlobClientConverter.check_input_type_annotation(hints["blob"])


@pytest.mark.parametrize(
    ("route", "method", "name"),
    [("retrain", "POST", "start_retrain"), ("retrain", "GET", "list_runs"),
     ("retrain/{run_id}", "GET", "get_run"), ("models", "GET", "list_models")],
)  # fmt: skip
def test_http_routes(route, method, name):
    http = trigger(name)
    assert http["type"] == "httpTrigger"
    assert (http["route"], http["methods"], http["authLevel"]) == (route, [method], "FUNCTION")
    assert {"direction": "OUT", "type": "http", "name": "$return"} in bindings(name)


def test_settle_queue_binding():
    queue = trigger("settle_batch")
    assert queue["type"] == "queueTrigger"
    assert (queue["queueName"], queue["connection"]) == ("%SETTLE_QUEUE%", "DataStorage")


def test_timer_binding():
    timer = trigger("sweep_runs")
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%SWEEP_SCHEDULE%"
    assert timer["runOnStartup"] is False


def test_job_events_binding():
    event = trigger("job_events")
    assert (event["type"], event["name"]) == ("eventGridTrigger", "event")


def _fresh(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_blob_source_is_chosen_by_app_setting_at_indexing():
    code = (
        "import json, function_app\n"
        "[fn] = [f for f in function_app.app.get_functions() if f.get_function_name() == "
        "'landing_blob']\n"
        "print(json.loads(fn.get_raw_bindings()[0])['source'])"
    )
    out = _fresh(code, BLOB_TRIGGER_SOURCE="LogsAndContainerScan")
    assert out.strip() == "LogsAndContainerScan"


def test_an_unknown_blob_source_fails_loudly():
    from retrain.settings import blob_trigger_source as blob_source

    with pytest.raises(ConfigurationError, match="BLOB_TRIGGER_SOURCE"):
        blob_source({"BLOB_TRIGGER_SOURCE": "Polling"})
    assert blob_source({}).value == "EventGrid"


def test_importing_the_app_loads_no_heavy_sdk_and_builds_no_client():
    # azure.storage.blob and azure.identity are in by design: the blob trigger's SDK-type
    # binding needs the extension's BlobClient in its annotation at indexing, and the extension
    # imports both; every blob event uses them anyway. Nothing else heavy, and no client.
    code = (
        "import sys, function_app\n"
        "from retrain.service import core as service\n"
        "heavy = ('azure.ai.ml', 'torch', 'numpy', 'azure.storage.queue', 'azure.data.tables')\n"
        "print([m for m in sys.modules if m.startswith(heavy)], service._service)"
    )
    assert _fresh(code).strip() == "[] None"
