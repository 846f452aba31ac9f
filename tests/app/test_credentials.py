"""No credential in any URL, record, log line or HTTP answer: with ``DataStorage`` set to a SAS
connection string on Azurite, the whole flow runs, and the token appears nowhere."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from apphelpers import batch_files, blob_event, http, records, upload

from retrain.backends.base import RunStatus
from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.storage import BlobStore


def _token(connection: str) -> str:
    return connection.split("SharedAccessSignature=", 1)[1]


def test_a_sas_connection_string_leaks_nowhere(
    settings, backend, sas_connection, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DataStorage", sas_connection)  # the host's app setting, for the trigger
    sas = replace(settings, storage_connection=sas_connection)
    store = BlobStore(sas)
    store.ensure_container(sas.landing_container)
    svc = RetrainService(sas, store=store, backend=backend)
    service_module.set_service(svc)
    try:
        paths = upload(store, sas.landing_container, "secret", batch_files())
        for path in paths:
            blob_event(store, path)
        status, answer, headers = http("POST", "retrain", {"data": "secret", "epochs": 2})
        listed = http("GET", "retrain")[1]
    finally:
        service_module.set_service(None)

    [first, second] = sorted(records(svc), key=lambda r: r.trigger)
    assert first.status is second.status is RunStatus.SUBMITTED and status == 202
    token = _token(sas_connection)
    signature = token.split("sig=", 1)[1].split("&", 1)[0]
    url = store.url(sas.landing_container, "secret/x")
    assert "?" not in url and url.endswith(f"/{sas.landing_container}/secret/x")
    [request, _] = backend.submits
    blob_urls = [blob.url for blob in request.data.blobs]
    assert all("?" not in u and "sig" not in u for u in blob_urls)
    exposed = [
        json.dumps([r.to_dict() for r in records(svc)]),
        json.dumps(answer),
        json.dumps(listed),
        json.dumps(headers),
        json.dumps([str(b) for b in blob_urls]),
        caplog.text,
    ]
    for text in exposed:
        assert signature not in text and "sig=" not in text
