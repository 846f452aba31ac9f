"""Fixtures for the Function App tests: settings on the suite's Azurite with containers of their
own per test, the fake backend, a settable clock, and the service the functions use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from apphelpers import FakeBackend

from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.settings import Settings
from retrain.storage import BlobStore


@pytest.fixture
def settings(azurite, tmp_path: Path) -> Settings:
    """Settings on Azurite with a container, table and queue of their own, so tests never see
    each other's runs."""
    tag = uuid.uuid4().hex[:10]
    return Settings.from_env(
        {
            "DataStorage": azurite.connection_string,
            "LANDING_CONTAINER": f"landing-{tag}",
            "DATASETS_CONTAINER": f"datasets-{tag}",
            "RUNS_TABLE": f"runs{tag}",
            "SETTLE_QUEUE": f"settle-{tag}",
            "BATCH_SETTLE_SECONDS": "0",  # tests of settling set their own
            "RETRAIN_BACKEND": "local",
            "LOCAL_RUNS_DIR": str(tmp_path / "runs"),
            "LOCAL_MODELS_DIR": str(tmp_path / "models"),
            "SWEEP_CONCURRENCY": "4",
            "MAX_ACTIVE_RUNS": "0",  # tests of the cap set their own
        }
    )


@pytest.fixture
def store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> BlobStore:
    """The test's blobs; the host's environment names their connection, as the blob trigger's
    SDK-type binding reads it."""
    monkeypatch.setenv("DataStorage", settings.storage_connection or "")
    store = BlobStore(settings)
    store.ensure_container(settings.landing_container)
    return store


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@dataclass
class Clock:
    """A settable clock for leases and durations."""

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(
    settings: Settings, store: BlobStore, backend: FakeBackend, clock: Clock
) -> Iterator[RetrainService]:
    """The service the functions use, with the fake backend injected."""
    svc = RetrainService(settings, store=store, backend=backend, clock=clock)
    service_module.set_service(svc)
    yield svc
    service_module.set_service(None)
