"""DATA on the command line: a local folder, a landing batch or a data asset, and its run key.

A local folder is keyed on its path and its files' sha256; a landing batch on its blobs' ETags,
exactly as the blob trigger keys it; a data asset on its URI. ``overrides`` turns the pipeline
flags (``--epochs`` ...) into settings overrides. Shared by ``pipeline show`` and ``run``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import keys
from ..errors import InvalidBatchError, InvalidRequestError, TransientError
from ..settings import Settings

if TYPE_CHECKING:
    from ..backends import DataSource


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        *("epochs", "batch_size", "learning_rate", "seed", "experiment_name"),
        *("cpu_compute", "gpu_compute"),
    )
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def local_folder(data: str) -> Path:
    """DATA as an existing folder, or a one-line error."""
    path = Path(data).expanduser()
    if not path.exists():
        if data.startswith("azureml:"):
            raise InvalidRequestError(
                "DATA",
                f"{data} is a data asset in the Azure ML workspace; the local backend runs a "
                "local folder, the azureml backend runs the asset (--backend azureml)",
            )
        raise InvalidRequestError("DATA", f"no such folder: {data}")
    if not path.is_dir():
        raise InvalidRequestError("DATA", f"{data} is a file; expected a folder of the four files")
    return path.resolve()


def folder_key(folder: Path) -> str:
    """Run key of a local batch: its absolute path and the sha256 of each of its IDX files."""
    from ..landing.batches import FILE_NAMES, base_name

    files = [p for p in sorted(folder.iterdir()) if p.is_file() and base_name(p.name)]
    if not files:
        raise InvalidBatchError(
            str(folder), f"holds none of the Fashion-MNIST files ({', '.join(FILE_NAMES)})"
        )
    return keys.run_key(str(folder), [(p.name, _sha256(p)) for p in files])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_source(data: str, settings: Settings) -> tuple[DataSource, str]:
    """DATA as a backend data source and its run key: ``azureml:NAME:VERSION``, a local folder,
    or a batch in the landing container (``[<landing-container>/]<batch>``)."""
    from ..backends import DataAsset, LocalFolder
    from ..landing.decisions import parse_data

    if data.startswith("azureml:") and isinstance(
        asset := parse_data(data, settings.landing_container), DataAsset
    ):
        return asset, keys.run_key(asset.uri, [])
    if Path(data).expanduser().exists() or data.startswith(("/", ".", "~")):
        folder = local_folder(data)
        return LocalFolder(folder), folder_key(folder)
    return landing_batch(data, settings)


def landing_batch(data: str, settings: Settings) -> tuple[DataSource, str]:
    """A complete, valid batch of the landing container, keyed on its blobs' ETags, exactly as
    the blob trigger keys it (so the CLI and the trigger agree on the run)."""
    from ..backends import BlobRef, LandingBatch
    from ..landing.decisions import BatchData, Wait, decide_batch, parse_data
    from ..landing.validation import validate_batch
    from ..storage import BlobStore

    parsed = parse_data(data, settings.landing_container)
    if not isinstance(parsed, BatchData):  # pragma: no cover - assets are handled above
        raise InvalidRequestError("DATA", f"not a landing batch: {data}")
    container = settings.landing_container
    store = BlobStore(settings)
    try:
        listing = store.list(container, f"{parsed.name}/")
    except TransientError as exc:
        raise TransientError(
            f"DATA: {data} is no local folder, and reading it as a landing batch failed: {exc}"
        ) from None
    decision = decide_batch(container, parsed.name, listing)
    if isinstance(decision, Wait):
        raise InvalidBatchError(
            decision.source,
            f"no such folder here, and as a landing batch it lacks {', '.join(decision.missing)}",
        )
    batch = decision.batch
    validate_batch(store, batch)
    blobs = tuple(BlobRef(b.name, b.url, b.etag) for b in batch.files.values())
    return LandingBatch(container, batch.name, blobs), batch.key
