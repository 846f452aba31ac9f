"""With ``DataStorage`` set to a SAS connection string, the Azure ML backend registers the batch
by a URL without the token (its copy in the datasets container, taken with the connection's
own SAS): the data asset's path and tags, as the fake workspace received them,
and the job, carry no credential."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from retrain.backends.base import RunStatus
from retrain.data.fashion_mnist import write_batch
from retrain.service import core as service_module

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from apphelpers import blob_event, records


@pytest.fixture
def sas_app(azureml_app, sas_connection, monkeypatch):
    """The Azure ML app, its DataStorage a SAS connection string."""
    monkeypatch.setenv("DataStorage", sas_connection)
    service_module.set_service(None)
    return service_module.get_service()


def test_the_data_asset_holds_no_sas(sas_app, use_fake, sas_connection, tmp_path):
    svc, landing = sas_app, sas_app.settings.landing_container
    svc.store.ensure_container(landing)
    for path in write_batch(tmp_path / "batch", n_train=60, n_test=40).values():
        svc.store.put(landing, f"b1/{path.name}", path.read_bytes())
    blob_event(svc.store, f"{landing}/b1/train-images-idx3-ubyte.gz")

    [run] = records(svc)
    assert run.status is RunStatus.SUBMITTED, run.reason
    (data_put,) = use_fake.calls("PUT", r"^/data/")
    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    data = data_put.body["properties"]
    datasets = svc.settings.datasets_container
    version = run.data_asset.rpartition(":")[2]
    assert data["dataUri"].endswith(f"/{datasets}/fashion-mnist/{version}/")
    assert "?" not in data["dataUri"]
    signature = sas_connection.split("sig=", 1)[1].split("&", 1)[0]
    for sent in (data_put.body, job_put.body, run.to_dict()):
        text = json.dumps(sent)
        assert signature not in text and "sig=" not in text
