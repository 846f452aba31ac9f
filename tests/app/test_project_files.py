"""The Azure Functions project files agree with the code: every app setting the service reads is
in local.settings.json.example, the example's values are valid, and host.json pins the bundle."""

from __future__ import annotations

import json
import re

from retrain.settings import PROJECT_ROOT, Settings

HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
BINDING_SETTINGS = {
    "DataStorage", "LANDING_CONTAINER", "SETTLE_QUEUE", "SWEEP_SCHEDULE", "BLOB_TRIGGER_SOURCE"
}  # fmt: skip


def _example() -> dict:
    return json.loads((PROJECT_ROOT / "local.settings.json.example").read_text())


def _read_by(path: str) -> set[str]:
    """App setting names a module reads from its environment mapping."""
    source = (PROJECT_ROOT / path).read_text()
    return set(re.findall(r"""env(?:\.get\(|, )["']([A-Za-z_]+)["']""", source))


def test_every_setting_the_app_reads_is_in_the_example():
    values = _example()["Values"]
    read = _read_by("retrain/settings.py") | _read_by("function_app.py")
    assert "TRAIN_EPOCHS" in read and "BLOB_TRIGGER_SOURCE" in read  # the scan works
    # identity-based connection settings: documented, but an empty value would mean "unset"
    identity_only = {
        f"DataStorage__{name}" for name in ("blobServiceUri", "queueServiceUri", "tableServiceUri")
    } | {"DataStorage__clientId"}
    assert read - identity_only - set(values) == set()
    assert set(values) - read - HOST_SETTINGS == set()
    assert set(values) >= BINDING_SETTINGS


def test_every_example_setting_is_documented_in_the_example():
    example = _example()
    documentation = example["_documentation"]  # Core Tools ignores unknown top-level keys
    assert set(documentation) == set(example["Values"])
    assert all(len(text) > 10 for text in documentation.values())


def test_the_example_values_are_valid_settings():
    example = _example()
    assert example["IsEncrypted"] is False
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == values["DataStorage"] == "UseDevelopmentStorage=true"
    settings = Settings.from_env(values)
    assert settings.backend == "local" and settings.sweep_schedule == values["SWEEP_SCHEDULE"]


def test_host_json():
    host = json.loads((PROJECT_ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["extensions"]["http"]["routePrefix"] == "api"


def test_funcignore_keeps_what_the_app_needs():
    ignored = {
        line.strip().rstrip("/")
        for line in (PROJECT_ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "tests", "node_modules", "local.settings.json"} <= ignored
    needed = {"retrain", "pipeline_builder", "components", "host.json", "requirements.txt"}
    assert not needed & ignored
