"""Shared fixtures. Azurite (the real storage emulator: blob, queue and table) is started by the
suite itself, on loopback, and stopped when the session ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain import azurite as azurite_module
from retrain.azurite import Azurite, AzuriteError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite on 127.0.0.1 for the whole test session, in memory."""
    try:
        with azurite_module.running() as running:
            yield running
    except AzuriteError as exc:
        pytest.fail(str(exc))
