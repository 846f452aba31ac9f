"""Shared fixtures. Azurite (the real storage emulator: blob, queue and table) is started by the
suite itself, on loopback, and stopped when the session ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from retrain.emulators import azurite as azurite_module
from retrain.emulators.azurite import Azurite, AzuriteError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite on 127.0.0.1 for the whole test session, in memory."""
    try:
        with azurite_module.running() as running:
            yield running
    except AzuriteError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def sas_connection(azurite: Azurite) -> str:
    """A connection string that authorises with an account SAS (blob, queue and table), as a
    user may set ``DataStorage``: the token must never show up in a URL, record or log."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    token = generate_account_sas(
        azurite_module.ACCOUNT,
        azurite_module.KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(
            read=True,
            write=True,
            delete=True,
            list=True,
            add=True,
            create=True,
            update=True,
            process=True,
        ),
        datetime.now(timezone.utc) + timedelta(hours=2),
        services="bqt",
    )
    endpoints = "".join(
        f"{service.capitalize()}Endpoint={azurite.endpoint(service)};"
        for service in ("blob", "queue", "table")
    )
    return f"{endpoints}SharedAccessSignature={token}"


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    """A throwaway CA for loopback HTTPS fakes; its PEM file is what clients are told to trust."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)
