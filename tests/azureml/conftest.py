"""Fixtures for the Azure ML backend tests: the loopback fake, and the real SDK pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import amlhelpers
import pytest
from amlhelpers import aml_settings, landing_batch, point_client_at, request_for
from fake_azureml import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML

from retrain.backends import SubmitRequest, azureml_client
from retrain.backends.azureml import AzureMLBackend
from retrain.service import core as service_module


@pytest.fixture(autouse=True)
def aml_storage(azurite) -> Iterator[None]:
    """Landing and datasets containers of this test's own on the suite's Azurite."""
    tag = uuid.uuid4().hex[:10]
    amlhelpers.STORAGE.update(
        storage_connection=azurite.connection_string,
        landing_container=f"landing-{tag}",
        datasets_container=f"datasets-{tag}",
    )
    try:
        yield
    finally:
        amlhelpers.STORAGE.clear()


@pytest.fixture
def fake_aml(azurite, test_ca) -> Iterator[FakeAzureML]:
    """A fresh fake workspace on its own loopback port, for one test."""
    ca, ca_file = test_ca
    with FakeAzureML(azurite.connection_string).serve(ca, ca_file) as fake:
        yield fake


@pytest.fixture
def use_fake(fake_aml: FakeAzureML, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureML]:
    """Point the process-wide MLClient at the fake, as a cold process would meet it."""
    # MLClient records its cloud in this variable for the whole process; put it back afterwards.
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
    # Clients the SDK makes by itself (storage downloads) trust the CA through requests.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_aml.ca_file)
    point_client_at(fake_aml)
    try:
        yield fake_aml
    finally:
        azureml_client.configure()


@pytest.fixture
def cold_process(use_fake: FakeAzureML) -> FakeAzureML:
    """As a fresh worker meets the fake: no client yet, no component version known to exist.

    The backend remembers, beside its client, which component versions it found or registered,
    so warm submissions ask nothing about them; repointing the client drops both.
    """
    point_client_at(use_fake)  # drops the cached client
    return use_fake


@pytest.fixture
def backend(use_fake: FakeAzureML) -> AzureMLBackend:
    return AzureMLBackend(aml_settings())


@pytest.fixture
def make_request() -> Callable[..., SubmitRequest]:
    def make(batch: str = "batch-1", etag: str = "0x8DC0001", **settings: object):
        return request_for(landing_batch(batch, etag), aml_settings(**settings))

    return make


@pytest.fixture
def azureml_app(use_fake, azurite, monkeypatch):
    """App settings as on Azure, with the service built from them on first use."""
    tag = uuid.uuid4().hex[:10]
    settings = {
        "DataStorage": azurite.connection_string,
        "LANDING_CONTAINER": f"landing-{tag}",
        "DATASETS_CONTAINER": f"datasets-{tag}",
        "RUNS_TABLE": f"runs{tag}",
        "SETTLE_QUEUE": f"settle-{tag}",
        "BATCH_SETTLE_SECONDS": "0",
        "RETRAIN_BACKEND": "azureml",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
        "AZUREML_WORKSPACE_NAME": WORKSPACE,
        "AZUREML_GPU_COMPUTE": "gpu-cluster",
        "EXPERIMENT_NAME": "fashion-e2e",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    service_module.set_service(None)
    try:
        yield service_module.get_service()
    finally:
        service_module.set_service(None)
