"""DATA on the command line: a local folder, a landing batch or a data asset, and its run keys.

Content is keyed as the service keys it: a local folder on its path and the sha256 of the four
files the pipeline reads; a landing batch on its blobs' ETags, exactly as the blob trigger keys
it; a data asset on its URI. The content key names the data version. The run key adds the
training parameters (``keys.with_params``, as the webhook does), so a change of parameters is a
new run, never the old one's result. ``overrides`` turns the pipeline flags (``--epochs`` ...)
into settings overrides. Shared by ``pipeline show`` and ``run``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import keys
from ..errors import InvalidBatchError, InvalidRequestError, TransientError
from ..settings import Settings

if TYPE_CHECKING:
    from pipeline_builder import PipelineSettings

    from ..backends import DataSource

# The job's train step picks its model preset by device ("auto"); the pipeline passes no other.
PRESET = "auto"
HEAD_BYTES = 4096  # enough of a raw or gzip file for its IDX header
LABELS_MAX = 1 << 20  # label files up to 1 MiB are read whole and every label checked


@dataclass(frozen=True)
class Keyed:
    """DATA's keys: ``content`` (the data version) and ``run`` (content plus ``params``: the
    run id and job name)."""

    content: str
    run: str
    params: dict[str, str]


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        *("epochs", "batch_size", "learning_rate", "seed", "experiment_name"),
        *("cpu_compute", "gpu_compute"),
    )
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def run_params(pipeline: PipelineSettings) -> dict[str, str]:
    """The parameters a run is keyed on: everything that changes what it trains or scores."""
    params = {
        "epochs": pipeline.epochs,
        "batch_size": pipeline.batch_size,
        "learning_rate": "auto" if pipeline.learning_rate is None else pipeline.learning_rate,
        "seed": pipeline.seed,
        "preset": PRESET,
        "champion_model": pipeline.champion_model,
        "champion_version": pipeline.champion_version,
    }
    return {name: str(value) for name, value in params.items() if value is not None}


def asked_params(args: argparse.Namespace, champion: Mapping[str, str]) -> dict[str, str]:
    """The parameters given as flags, under the webhook's names: the azureml backend keys a run
    as the webhook does, so a plain ``run batch-7`` finds the blob trigger's run and
    ``run batch-7 --epochs 5`` the webhook's ``{"data": "batch-7", "epochs": 5}``."""
    given = {
        "epochs": getattr(args, "epochs", None),
        "experiment": getattr(args, "experiment_name", None),
        "batch_size": getattr(args, "batch_size", None),
        "learning_rate": getattr(args, "learning_rate", None),
        "seed": getattr(args, "seed", None),
        **champion,
    }
    return {name: str(value) for name, value in given.items() if value is not None}


def keyed(source: str, versions: list[tuple[str, str]], params: Mapping[str, str]) -> Keyed:
    """The content key of ``source`` at ``versions``, and its run key with ``params``."""
    return Keyed(
        content=keys.run_key(source, versions),
        run=keys.run_key(source, keys.with_params(versions, params)),
        params=dict(params),
    )


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
        hint = ""
        if not data.startswith(("/", ".", "~")):
            hint = (
                "; a batch of the landing container or a data asset (azureml:NAME:VERSION) "
                "runs with --backend azureml"
            )
        raise InvalidRequestError("DATA", f"no such folder: {data}{hint}")
    if not path.is_dir():
        raise InvalidRequestError("DATA", f"{data} is a file; expected a folder of the four files")
    return path.resolve()


def folder_files(folder: Path) -> dict[str, Path]:
    """The four files the pipeline will read from ``folder`` (raw over .gz, as prepare_data
    picks them), each header-checked as the blob trigger checks a landed batch: magic number,
    28x28 images, a non-zero count, a raw file's size, image count == label count, labels 0-9.
    An InvalidBatchError names the file, before any run folder exists."""
    from components.prepare_data.prepare_data import FILE_NAMES, IdxError, find_inputs

    from ..landing.batches import SPLITS, base_name

    if not any(p.is_file() and base_name(p.name) for p in folder.iterdir()):
        raise InvalidBatchError(
            str(folder), f"holds none of the Fashion-MNIST files ({', '.join(FILE_NAMES)})"
        )
    missing = [n for n in FILE_NAMES if not any((folder / f).is_file() for f in (n, f"{n}.gz"))]
    if missing:
        raise InvalidBatchError(
            str(folder), f"lacks {', '.join(missing)} (each raw or .gz; nothing was run)"
        )
    try:
        files = find_inputs(folder)
        counts = {name: _check_file(path) for name, path in files.items()}
    except IdxError as exc:
        raise InvalidBatchError(str(folder / exc.file), exc.reason) from None
    for images, labels in SPLITS.values():
        if counts[images] != counts[labels]:
            raise InvalidBatchError(
                str(files[labels]),
                f"holds {counts[labels]} labels but {files[images].name} holds "
                f"{counts[images]} images",
            )
    return files


def _check_file(path: Path) -> int:
    """One file's header checks (labels: every label); returns its count."""
    from components.prepare_data.prepare_data import IdxError, check_labels, peek_header

    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    header = peek_header(path.name, head)
    compressed = head.startswith(b"\x1f\x8b")
    size = path.stat().st_size
    if not compressed and size != header.total_size:
        raise IdxError(
            path.name,
            f"header declares {header.count} {header.kind} ({header.total_size} bytes) but the "
            f"file holds {size} bytes",
        )
    if header.kind == "labels" and header.total_size <= LABELS_MAX:
        data = _read_whole(path, header.total_size + 1) if compressed else path.read_bytes()
        if len(data) != header.total_size:
            raise IdxError(
                path.name,
                f"header declares {header.count} labels ({header.total_size} bytes) but the "
                f"file holds {len(data)} bytes",
            )
        check_labels(path.name, data[header.header_size :])
    return header.count


def _read_whole(path: Path, limit: int) -> bytes:
    from components.prepare_data.prepare_data import IdxError

    try:
        with gzip.open(path, "rb") as f:
            return f.read(limit)
    except EOFError:
        raise IdxError(path.name, "truncated gzip data (the stream ends early)") from None
    except (OSError, zlib.error) as exc:
        raise IdxError(path.name, f"corrupt gzip data ({exc})") from None


def folder_keys(folder: Path, params: Mapping[str, str]) -> Keyed:
    """A local batch's keys: its absolute path and the sha256 of each of its four files."""
    files = folder_files(folder)
    versions = [(path.name, _sha256(path)) for path in files.values()]
    return keyed(str(folder), versions, params)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_source(
    data: str, settings: Settings, params: Mapping[str, str]
) -> tuple[DataSource, Keyed]:
    """DATA as a backend data source and its keys: ``azureml:NAME:VERSION``, a local folder,
    or a batch in the landing container (``[<landing-container>/]<batch>``)."""
    from ..backends import DataAsset, LocalFolder
    from ..landing.decisions import parse_data

    if data.startswith("azureml:") and isinstance(
        asset := parse_data(data, settings.landing_container), DataAsset
    ):
        return asset, keyed(asset.uri, [], params)
    if Path(data).expanduser().exists() or data.startswith(("/", ".", "~")):
        folder = local_folder(data)
        return LocalFolder(folder), folder_keys(folder, params)
    return landing_batch(data, settings, params)


def landing_batch(
    data: str, settings: Settings, params: Mapping[str, str]
) -> tuple[DataSource, Keyed]:
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
    return LandingBatch(container, batch.name, blobs), keyed(batch.source, batch.versions, params)
