"""The storage seam's snapshot on Azurite: Copy Blob From URL pinned to the keyed ETag, with the
account key's read SAS or the connection's own SAS as the source's authorization."""

from __future__ import annotations

from dataclasses import replace

import pytest

from retrain.storage import AlreadyExists, BlobStore, ETagMismatch
from retrain.storage.blobs import SNAPSHOT_OF


def _landed(store: BlobStore, container: str, data: bytes = b"keyed bytes") -> str:
    return store.put(container, "b/train-images-idx3-ubyte", data)


def test_a_snapshot_copies_the_keyed_bytes_and_records_their_etag(settings, store):
    etag = _landed(store, settings.landing_container)
    dst = "fashion-mnist/v1/train-images-idx3-ubyte"
    store.snapshot(settings.landing_container, "b/train-images-idx3-ubyte", etag,
                   settings.datasets_container, dst)  # fmt: skip

    assert store.read_range(settings.datasets_container, dst, 0, 100) == b"keyed bytes"
    props = store.client.get_blob_client(settings.datasets_container, dst).get_blob_properties()
    assert props.metadata[SNAPSHOT_OF] == etag.strip('"')


def test_a_source_that_changed_since_its_etag_is_not_copied(settings, store):
    etag = _landed(store, settings.landing_container)
    _landed(store, settings.landing_container, b"newer bytes")
    with pytest.raises(ETagMismatch, match="changed since"):
        store.snapshot(settings.landing_container, "b/train-images-idx3-ubyte", etag,
                       settings.datasets_container, "v1/f")  # fmt: skip
    assert store.list(settings.datasets_container) == []


def test_a_repeat_after_the_source_changed_accepts_its_own_copy(settings, store):
    src = (settings.landing_container, "b/train-images-idx3-ubyte")
    etag = _landed(store, settings.landing_container)
    store.snapshot(*src, etag, settings.datasets_container, "v1/f")
    _landed(store, settings.landing_container, b"newer bytes")

    store.snapshot(*src, etag, settings.datasets_container, "v1/f")  # e.g. the host's retry
    assert store.read_range(settings.datasets_container, "v1/f", 0, 100) == b"keyed bytes"


def test_a_destination_holding_another_copy_is_never_overwritten(settings, store):
    src = (settings.landing_container, "b/train-images-idx3-ubyte")
    store.snapshot(*src, _landed(store, src[0]), settings.datasets_container, "v1/f")
    other = _landed(store, src[0], b"other bytes")
    with pytest.raises(AlreadyExists, match="holds another copy"):
        store.snapshot(*src, other, settings.datasets_container, "v1/f")
    assert store.read_range(settings.datasets_container, "v1/f", 0, 100) == b"keyed bytes"


def test_a_sas_connection_string_copies_with_its_own_token(settings, store, sas_connection):
    etag = _landed(store, settings.landing_container)
    sas_store = BlobStore(replace(settings, storage_connection=sas_connection))
    sas_store.snapshot(settings.landing_container, "b/train-images-idx3-ubyte", etag,
                       settings.datasets_container, "v1/f")  # fmt: skip
    assert store.read_range(settings.datasets_container, "v1/f", 0, 100) == b"keyed bytes"
