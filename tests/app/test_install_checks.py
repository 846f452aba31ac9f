"""`pip install -r requirements.txt` then `func start`: with the local backend the app needs the
training packages too, and says so in one line when it starts, not as a Failed run later.
A package counts as not installed when ``sys.modules`` maps it to None, as Python itself does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from retrain.backends import get_backend, require_local_packages
from retrain.errors import ConfigurationError
from retrain.settings import PROJECT_ROOT, Settings

MESSAGE = (
    "RETRAIN_BACKEND=local trains on this machine and needs torch, torchvision: "
    "pip install -r requirements-train.txt (or set RETRAIN_BACKEND=azureml)"
)
IMPORT_WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = sys.modules['torchvision'] = None; import function_app"
)


@pytest.fixture
def without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)


def test_the_local_backend_names_what_to_install(without_torch):
    for env in ({}, {"RETRAIN_BACKEND": "local"}, {"RETRAIN_BACKEND": " Local "}):
        with pytest.raises(ConfigurationError) as caught:
            require_local_packages(env)
        assert str(caught.value) == MESSAGE
    with pytest.raises(ConfigurationError) as caught:
        get_backend(Settings.from_env({}))
    assert str(caught.value) == MESSAGE


def test_the_azureml_backend_needs_no_training_packages(without_torch):
    require_local_packages({"RETRAIN_BACKEND": "azureml"})  # the deployed app has no torch


def test_with_everything_installed_nothing_is_said():
    require_local_packages({})  # this suite's venv has requirements-train.txt


def _import_app(backend: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RETRAIN_BACKEND": backend}
    return subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_TORCH],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_app_refuses_to_start_without_torch_in_one_line():
    """As the host's worker indexes the app: the import fails, the last line says it all."""
    result = _import_app("local")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"retrain.errors.ConfigurationError: {MESSAGE}"
    assert _import_app("azureml").returncode == 0, _import_app("azureml").stderr
