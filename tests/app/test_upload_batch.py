"""scripts/upload_batch.py against the suite's Azurite and a loopback receiver standing in for
the local Functions host: the four blobs land, and exactly one BlobCreated event arrives, shaped
as the blobs extension's Event Grid webhook expects."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path

import pytest
from receivers import Receiver

from retrain.data.fashion_mnist import FILE_NAMES, write_batch
from retrain.settings import PROJECT_ROOT, Settings
from retrain.storage import BlobStore

spec = importlib.util.spec_from_file_location(
    "upload_batch", PROJECT_ROOT / "scripts/upload_batch.py"
)
assert spec and spec.loader
upload_batch = importlib.util.module_from_spec(spec)
sys.modules["upload_batch"] = upload_batch
spec.loader.exec_module(upload_batch)


@pytest.fixture
def landing(azurite, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The script's settings come from the environment, as under `func start`."""
    container = f"landing-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DataStorage", azurite.connection_string)
    monkeypatch.setenv("LANDING_CONTAINER", container)
    return Settings.from_env(
        {"DataStorage": azurite.connection_string, "LANDING_CONTAINER": container}
    )


def test_uploads_the_batch_and_posts_one_blob_created_event(landing, tmp_path: Path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, 60, 10)
    with Receiver(status=202).serve() as host:
        code = upload_batch.main(["batch-7", "--folder", str(folder), "--host", host.url])
    assert code == 0, capsys.readouterr().err

    blobs = {b.name: b for b in BlobStore(landing).list(landing.landing_container, "batch-7/")}
    assert sorted(blobs) == sorted(f"batch-7/{name}.gz" for name in FILE_NAMES)
    for name in FILE_NAMES:
        stored = BlobStore(landing).read_range(
            landing.landing_container, f"batch-7/{name}.gz", 0, 1 << 30
        )
        assert stored == (folder / f"{name}.gz").read_bytes()

    assert len(host.deliveries) == 1  # one event per batch, not one per file
    delivery = host.deliveries[0]
    assert delivery.path == "/runtime/webhooks/blobs"
    assert delivery.query == {"functionName": ["Host.Functions.landing_blob"]}
    headers = {name.lower(): value for name, value in delivery.headers.items()}
    assert headers["aeg-event-type"] == "Notification"
    assert headers["content-type"] == "application/json"
    [event] = json.loads(delivery.raw)
    last = f"batch-7/{FILE_NAMES[-1]}.gz"
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert (
        event["subject"]
        == f"/blobServices/default/containers/{landing.landing_container}/blobs/{last}"
    )
    assert event["data"]["url"].endswith(f"/{landing.landing_container}/{last}")
    assert event["data"]["eTag"] == blobs[last].etag.strip('"')
    assert event["data"]["contentLength"] == blobs[last].size
    assert {"id", "topic", "eventTime", "dataVersion", "metadataVersion"} <= set(event)
    assert "posted one BlobCreated event" in capsys.readouterr().out


def test_generates_a_batch_when_no_folder_is_given(landing, capsys):
    assert upload_batch.main(["gen-1", "--no-event"]) == 0
    names = [b.name for b in BlobStore(landing).list(landing.landing_container, "gen-1/")]
    assert sorted(names) == sorted(f"gen-1/{name}.gz" for name in FILE_NAMES)
    assert "posted" not in capsys.readouterr().out


def test_a_host_that_is_not_running_is_one_line(landing, tmp_path: Path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, 20, 10)
    with Receiver().serve() as gone:
        url = gone.url  # a port that nothing listens on once the block ends
    assert upload_batch.main(["b", "--folder", str(folder), "--host", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: no Functions host answered at {url}")
    assert "Traceback" not in err


def test_a_host_that_refuses_the_event_is_one_line(landing, tmp_path: Path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, 20, 10)
    with Receiver(status=404).serve() as host:
        assert upload_batch.main(["b", "--folder", str(folder), "--host", host.url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answered 404 to the BlobCreated event" in err


def test_a_folder_missing_a_file_is_a_usage_error(landing, tmp_path: Path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, 20, 10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert upload_batch.main(["b", "--folder", str(folder), "--no-event"]) == 2
    err = capsys.readouterr().err
    missing = "t10k-labels-idx1-ubyte"
    assert err == f"error: --folder {folder}: no {missing} (or {missing}.gz) in it\n"
    assert BlobStore(landing).list(landing.landing_container, "b/") == []


def test_unreachable_storage_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys):
    folder = tmp_path / "batch"
    write_batch(folder, 20, 10)
    with Receiver().serve() as gone:
        port = gone.url.rsplit(":", 1)[1]
    monkeypatch.setenv(
        "DataStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
    )
    assert upload_batch.main(["b", "--folder", str(folder), "--no-event"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "storage is unreachable" in err and "Azurite" in err
