"""Upload a batch to Azurite and post its one BlobCreated event to a local ``func start``.

Azurite publishes no Event Grid events, so under Core Tools with ``BLOB_TRIGGER_SOURCE=EventGrid``
an upload does nothing until an event reaches the host. One event per batch is enough: each
event makes the app look at the whole batch folder. Settings (``DataStorage``,
``LANDING_CONTAINER``) come from the environment, else ``local.settings.json``, else the example.

    python scripts/upload_batch.py [BATCH] [--folder DIR] [--host URL] [--no-event]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "http://localhost:7071"
WEBHOOK = "/runtime/webhooks/blobs?functionName=Host.Functions.landing_blob"
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
)


class UploadError(Exception):
    """A one-line reason the upload or the event failed; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def app_settings(root: Path = ROOT) -> dict[str, str]:
    """The example's values, then local.settings.json's, then the environment's: as under
    ``func start``, where local.settings.json becomes the worker's environment."""
    values: dict[str, str] = {}
    for name in ("local.settings.json.example", "local.settings.json"):
        path = root / name
        if path.is_file():
            values.update(json.loads(path.read_text()).get("Values", {}))
    values.update(os.environ)
    return values


def batch_files(folder: Path) -> list[Path]:
    """The four IDX files of ``folder`` (raw or ``.gz``), in upload order."""
    from retrain.data.fashion_mnist import FILE_NAMES

    found = []
    for name in FILE_NAMES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            raise UploadError(f"--folder {folder}: no {name} (or {name}.gz) in it", code=2)
    return found


def blob_created(url: str, subject: str, etag: str, size: int) -> dict[str, Any]:
    """The Event Grid BlobCreated event, shaped as a storage system topic delivers it."""
    return {
        "id": str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": subject,
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "data": {
            "api": "PutBlob",
            "contentType": "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "eTag": etag.strip('"'),  # Event Grid sends it unquoted
            "url": url,
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def post_event(host: str, event: dict[str, Any]) -> int:
    """POST the event to the blobs extension's webhook as Event Grid would; the HTTP status."""
    request = urllib.request.Request(
        host.rstrip("/") + WEBHOOK,
        data=json.dumps([event]).encode(),
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        raise UploadError(
            f"the Functions host at {host} answered {exc.code} to the BlobCreated event "
            "(is BLOB_TRIGGER_SOURCE=EventGrid? with LogsAndContainerScan pass --no-event)"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UploadError(
            f"no Functions host answered at {host} ({reason}); start it with `func start` "
            "(the batch is uploaded: run this again with the same name to send the event)"
        ) from None


def upload(batch: str, folder: Path | None, host: str, send_event: bool, tmp: Path) -> None:
    from retrain.errors import RetrainError
    from retrain.settings import Settings
    from retrain.storage import BlobStore

    try:
        settings = Settings.from_env(app_settings())
        files = batch_files(folder) if folder else _generated(tmp)
        store = BlobStore(settings)
        container = settings.landing_container
        store.ensure_container(container)
        print(f"uploading {len(files)} files to {container}/{batch}/", flush=True)
        last: tuple[str, str, int] = ("", "", 0)
        for path in files:
            name = f"{batch}/{path.name}"
            data = path.read_bytes()
            last = (name, store.put(container, name, data), len(data))
            print(f"  {name} ({len(data):,} bytes)", flush=True)
    except RetrainError as exc:
        raise UploadError(f"{exc} (is Azurite running and DataStorage set?)") from None
    if not send_event:
        return
    name, etag, size = last
    event = blob_created(
        store.url(container, name), f"/blobServices/default/containers/{container}/blobs/{name}",
        etag, size,
    )  # fmt: skip
    status = post_event(host, event)
    print(f"posted one BlobCreated event for {container}/{name} to {host}: HTTP {status}")


def _generated(tmp: Path) -> list[Path]:
    from retrain.data.fashion_mnist import write_batch

    print("generating a batch (6000 train + 1000 test images)", flush=True)
    return batch_files(next(iter(write_batch(tmp, 6000, 1000).values())).parent)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = datetime.now(timezone.utc).strftime("batch-%Y%m%d-%H%M%S")
    parser.add_argument(
        "batch", nargs="?", default=default, help=f"batch folder (default {default})"
    )
    parser.add_argument(
        "--folder", type=Path, help="upload these four IDX files (default: generate)"
    )
    parser.add_argument("--host", default=HOST, help=f"the local Functions host (default {HOST})")
    parser.add_argument("--no-event", action="store_true", help="upload only (polling source)")
    args = parser.parse_args(argv)
    batch = args.batch.strip("/")
    if not batch or ".." in batch.split("/"):
        parser.error(f"batch: expected a folder name like batch-1, got {args.batch!r}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            upload(batch, args.folder, args.host, not args.no_event, Path(tmp))
    except UploadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run from a clone without `pip install -e .`
    raise SystemExit(main())
