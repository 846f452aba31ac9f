"""The Azure Functions project files agree with the code: the example's values are valid, the
local profile for `func start` is quick and valid, host.json pins the bundle. (Which settings
the code reads: tests/test_settings_docs.py.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from retrain.settings import PROJECT_ROOT, Settings


def _example() -> dict:
    return json.loads((PROJECT_ROOT / "local.settings.json.example").read_text())


def _local_settings_script():
    spec = importlib.util.spec_from_file_location(
        "local_settings", PROJECT_ROOT / "scripts" / "local_settings.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_local_profile_is_quick_and_leaves_the_rest_as_documented(tmp_path: Path, capsys):
    script = _local_settings_script()
    out = tmp_path / "local.settings.json"
    assert script.main(["--out", str(out)]) == 0
    written = json.loads(out.read_text())
    example = _example()
    values = written["Values"]
    assert Settings.from_env(values).settle_seconds <= 5
    seconds = values["SWEEP_SCHEDULE"].split()[0]  # NCRONTAB: seconds first
    assert seconds.startswith("*/") and int(seconds[2:]) <= 10
    changed = {name for name in values if values[name] != example["Values"][name]}
    assert changed == {"BATCH_SETTLE_SECONDS", "SWEEP_SCHEDULE"}
    assert {k: v for k, v in written.items() if k != "Values"} == {
        k: v for k, v in example.items() if k != "Values"
    }
    assert "BATCH_SETTLE_SECONDS=3" in capsys.readouterr().out


def test_the_local_profile_never_overwrites_without_force(tmp_path: Path, capsys):
    script = _local_settings_script()
    out = tmp_path / "local.settings.json"
    out.write_text("{}")
    assert script.main(["--out", str(out)]) == 2
    assert out.read_text() == "{}"
    assert capsys.readouterr().err == f"error: {out} exists; pass --force to replace it\n"
    assert script.main(["--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text())["Values"]["BATCH_SETTLE_SECONDS"] == "3"
