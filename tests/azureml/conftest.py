"""Fixtures for the Azure ML backend tests: the loopback fake, and the real SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import trustme
from amlhelpers import aml_settings, landing_batch, point_client_at, request_for
from fake_azureml import FakeAzureML

from retrain.backends import SubmitRequest, azureml_client
from retrain.backends.azureml import AzureMLBackend


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    """A throwaway CA; its PEM file is what the SDK is told to trust."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


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
    """As a fresh worker meets the fake: no client yet, components not yet resolved.

    The SDK records what it registered (code, environment, component ids) on the component
    objects the backend keeps beside its client, which keeps warm submissions from uploading
    again; repointing the client drops both.
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
