"""Shared by the offline IaC tests: the Bicep files parsed with pycep, and tool paths.

These tests run in their own virtualenv, ``.venv-iac`` (``make iac``), because checkov pins many
packages that must not change the app's ``.venv``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pycep = pytest.importorskip("pycep", reason="the IaC checks run in .venv-iac: make iac")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
TOOLS = Path(sys.executable).parent  # checkov and shellcheck sit beside this interpreter


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """One Bicep file as pycep's JSON tree (raises on a syntax error)."""
    return pycep.BicepParser().parse(file_path=path)


def resources(path: Path) -> dict[str, tuple[str, str | None, dict[str, Any]]]:
    """symbol -> (type, condition as JSON text or None, config) for the file's resources."""
    found = {}
    for symbol, resource in parse(path)["resources"].items():
        config = resource["config"]
        condition = None
        if "condition" in config and "config" in config:
            condition, config = json.dumps(config["condition"]), config["config"]
        found[symbol] = (resource["type"], condition, config)
    return found


def example_settings() -> dict[str, Any]:
    """local.settings.json.example: the documented app settings."""
    return json.loads((ROOT / "local.settings.json.example").read_text())
