"""The process-wide MLClient: where the workspace comes from, one client, lazy SDK import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amlhelpers import aml_settings

from retrain.backends import azureml_client
from retrain.backends.azureml_client import Workspace, resolve_workspace
from retrain.errors import ConfigurationError
from retrain.settings import PROJECT_ROOT, Settings

CONFIG = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": "ws-1"}


def test_workspace_from_app_settings():
    settings = Settings.from_env(
        {
            "AZURE_SUBSCRIPTION_ID": "sub-9",
            "AZURE_RESOURCE_GROUP": "rg-9",
            "AZUREML_WORKSPACE_NAME": "ws-9",
        }
    )
    assert resolve_workspace(settings) == Workspace("sub-9", "rg-9", "ws-9")


def test_partial_workspace_settings_name_what_is_missing():
    settings = Settings(subscription_id="sub-9")
    with pytest.raises(ConfigurationError, match="AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME"):
        resolve_workspace(settings)


@pytest.mark.parametrize("folder", [".", ".azureml", "aml_config"])
def test_workspace_from_a_config_json_in_a_parent_folder(tmp_path: Path, folder: str):
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / "config.json").write_text(json.dumps(CONFIG))
    start = tmp_path / "deep" / "inside"
    start.mkdir(parents=True)
    assert resolve_workspace(Settings(), start=start) == Workspace("sub-1", "rg-1", "ws-1")


def test_app_settings_win_over_config_json(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    workspace = resolve_workspace(aml_settings(), start=tmp_path)
    assert workspace.name != "ws-1"


def test_a_broken_config_json_is_named(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"subscription_id": "x"}))
    with pytest.raises(ConfigurationError, match=r"config\.json: expected JSON with"):
        resolve_workspace(Settings(), start=tmp_path)


def test_no_workspace_anywhere_says_how_to_configure_one(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"AZUREML_WORKSPACE_NAME.*config\.json"):
        resolve_workspace(Settings(), start=tmp_path)


def test_one_client_per_process_and_workspace(use_fake):
    first = azureml_client.get_client(aml_settings())
    assert azureml_client.get_client(aml_settings()) is first
    other = azureml_client.get_client(aml_settings(workspace_name="other"))
    assert other is not first
    assert not use_fake.requests, "making a client calls nothing"


def test_importing_the_backend_does_not_import_the_sdk():
    code = (
        "import sys, retrain.backends.azureml, retrain.backends.azureml_client;"
        "print('azure.ai.ml' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
