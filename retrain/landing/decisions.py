"""Pure decisions (no I/O): what a blob event or an HTTP request asks the service to do.

A blob event becomes ``Ignore(reason)``, ``Wait(missing files)``, ``Settle(batch, delay)``
(complete, but changed too recently: look again later) or ``Submit(batch)``; the run key of a
Submit covers the batch and its four files' ETags. An HTTP body becomes a typed
``RetrainRequest``, or an ``InvalidRequestError`` that names the field at fault.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import keys
from ..backends.base import DataAsset
from ..errors import InvalidRequestError
from ..storage import BlobInfo
from .batches import Batch, BlobPath, base_name, select_files

MAX_BODY = 64 * 1024  # bytes of JSON a webhook call may carry
MAX_EPOCHS = 1000
MAX_LIST = 100  # runs one GET /api/retrain may return
DEFAULT_LIST = 20
MAX_DIGITS = 32  # a longer JSON integer fits no field; int() refuses over 4300 digits anyway
MAX_DATA = 1024 - len("/train-images-idx3-ubyte.gz")  # a blob name is at most 1024 characters
REQUEST_FIELDS = ("data", "epochs", "experiment")
WHAT_DATA = "a batch folder in the landing container, or azureml:NAME:VERSION"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]"
_ASSET = re.compile(rf"azureml:({_NAME}{{0,254}}):({_NAME}{{0,63}})")
_EXPERIMENT = re.compile(rf"{_NAME}{{0,254}}")
_UNSAFE = re.compile(r"[\\?#]")
_LIMIT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() also takes e.g. Arabic-Indic ones


class BodyTooLargeError(InvalidRequestError):
    """The request body is over ``MAX_BODY``."""

    http_status = 413


# --- blob events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ignore:
    """Nothing to do; ``reason`` is logged."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """The batch is not complete yet."""

    source: str
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Settle:
    """The batch is complete but one of its files changed ``age_s`` ago, less than the settle
    time: look again in ``delay_s`` seconds (a re-upload may still be under way)."""

    batch: Batch
    age_s: float
    delay_s: int


@dataclass(frozen=True)
class Submit:
    """The batch is complete: validate it, then run it once under ``run_id``."""

    batch: Batch

    @property
    def run_id(self) -> str:
        return self.batch.key


def locate(blob_path: str, landing_container: str) -> BlobPath | Ignore:
    """Where an event's blob (``container/batch/file``) sits, or why it is none of our business."""
    path = BlobPath.parse(blob_path)
    if path is None:
        return Ignore(f"{blob_path}: not inside a batch folder (<container>/<batch>/<file>)")
    if path.container != landing_container:
        return Ignore(f"{blob_path}: not in the landing container {landing_container!r}")
    if base_name(path.file) is None:
        return Ignore(f"{blob_path}: not one of the four Fashion-MNIST IDX files")
    return path


def decide_batch(
    container: str,
    batch: str,
    listing: Iterable[BlobInfo],
    *,
    now: datetime | None = None,
    settle_s: int = 0,
) -> Wait | Settle | Submit:
    """Wait for the missing files; let a complete batch settle until none of its four files has
    changed for ``settle_s`` seconds (as of ``now``); then submit it, keyed on its four ETags."""
    files, missing = select_files(batch, listing)
    if missing:
        return Wait(f"{container}/{batch}", tuple(missing))
    complete = Batch(container, batch, files)
    if settle_s > 0 and now is not None:
        newest = max(blob.last_modified for blob in files.values())
        age = (now - newest).total_seconds()
        if age < settle_s:
            # One second of margin: the storage service's clock and ours differ a little.
            return Settle(complete, age, math.ceil(settle_s - age) + 1)
    return Submit(complete)


# --- HTTP requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchData:
    """A batch folder inside the landing container."""

    name: str


@dataclass(frozen=True)
class RetrainRequest:
    """A validated ``POST /api/retrain``."""

    data: BatchData | DataAsset
    epochs: int | None = None
    experiment: str | None = None
    idempotency_key: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The parameters asked for (None when left to settings)."""
        return {"epochs": self.epochs, "experiment": self.experiment}


def parse_retrain_request(
    body: bytes, landing_container: str, idempotency_key: str | None = None
) -> RetrainRequest:
    """Validate the JSON body ``{"data": ..., "epochs": ..., "experiment": ...}``."""
    if len(body) > MAX_BODY:
        raise BodyTooLargeError("body", f"larger than {MAX_BODY // 1024} KiB")
    document = _json_document(body)
    if not isinstance(document, dict):
        raise InvalidRequestError("body", "expected a JSON object")
    for name in document:
        if name not in REQUEST_FIELDS:
            raise InvalidRequestError(
                name[:64] or "body",
                f"unknown field {name[:64]!r} (expected {', '.join(REQUEST_FIELDS)})",
            )
    return RetrainRequest(
        data=parse_data(document.get("data"), landing_container),
        epochs=_epochs(document.get("epochs")),
        experiment=_experiment(document.get("experiment")),
        idempotency_key=parse_idempotency_key(idempotency_key),
    )


@dataclass(frozen=True)
class LongInteger:
    """A JSON integer of more than ``MAX_DIGITS`` digits, kept unconverted: no field takes one."""

    digits: int

    def __str__(self) -> str:
        return f"an integer of {self.digits} digits"


_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    LongInteger: "an integer",
    float: "a number",
}


def _json_int(text: str) -> int | LongInteger:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_DIGITS else LongInteger(digits)


def _json_document(body: bytes) -> object:
    """The body's JSON; nesting past the parser's recursion limit is the caller's fault too."""
    try:
        return json.loads(body, parse_int=_json_int)
    except RecursionError:
        raise InvalidRequestError("body", "malformed JSON (nested too deeply)") from None
    except ValueError as exc:  # includes UnicodeDecodeError
        raise InvalidRequestError("body", f"malformed JSON ({exc})") from None


def parse_data(value: object, landing_container: str) -> BatchData | DataAsset:
    """``azureml:NAME:VERSION``, or a batch folder in the landing container (its name may start
    with ``<landing-container>/``). URLs, absolute paths and ``..`` are refused."""
    if value is None:
        raise InvalidRequestError("data", f"required: {WHAT_DATA}")
    if not isinstance(value, str):
        raise InvalidRequestError("data", f"expected a string, got {_type(value)}")
    text = value.strip()
    if not text or len(text) > MAX_DATA:
        raise InvalidRequestError("data", f"expected 1 to {MAX_DATA} characters")
    if text.startswith("azureml:") and not text.startswith("azureml://"):
        match = _ASSET.fullmatch(text)
        if match is None:
            raise InvalidRequestError("data", "expected a data asset as azureml:NAME:VERSION")
        return DataAsset(match[1], match[2])
    if "://" in text:
        raise InvalidRequestError("data", f"URLs are not accepted; expected {WHAT_DATA}")
    if text.startswith("/"):
        raise InvalidRequestError("data", f"absolute paths are not accepted; expected {WHAT_DATA}")
    if not text.isprintable() or _UNSAFE.search(text):
        raise InvalidRequestError("data", "contains an unprintable character, '\\', '?' or '#'")
    parts = text.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidRequestError("data", "empty, '.' or '..' path segments are not accepted")
    if len(parts) > 1 and parts[0] == landing_container:
        parts = parts[1:]
    return BatchData("/".join(parts))


def _epochs(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, LongInteger)):
        raise InvalidRequestError("epochs", f"expected an integer, got {_type(value)}")
    if isinstance(value, LongInteger) or not 1 <= value <= MAX_EPOCHS:
        raise InvalidRequestError("epochs", f"expected 1 to {MAX_EPOCHS}, got {value}")
    return value


def _experiment(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError("experiment", f"expected a string, got {_type(value)}")
    if not _EXPERIMENT.fullmatch(value):
        raise InvalidRequestError(
            "experiment", "expected 1 to 255 letters, digits, '_', '-' or '.' (not first)"
        )
    return value


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > 255 or not value.isascii() or not value.isprintable():
        raise InvalidRequestError(
            "Idempotency-Key", "expected at most 255 printable ASCII characters"
        )
    return value


def parse_run_id(value: str | None) -> str:
    if not value or not keys.RUN_KEY.fullmatch(value):
        raise InvalidRequestError("run_id", f"expected {keys.KEY_LENGTH} hex digits")
    return value


def parse_limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIST
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIST:
        raise InvalidRequestError("limit", f"expected an integer from 1 to {MAX_LIST}")
    return int(raw)


def http_run_id(request: RetrainRequest, source: str, versions: list[tuple[str, str]]) -> str:
    """The run a webhook call names.

    With an Idempotency-Key, the key alone: a repeat returns the same run whatever happened to the
    data since. Without one, the content (source + ETags) plus any parameters asked for: the same
    request for the same content is the same run, and a plain request for a batch the blob
    trigger already ran finds that run.
    """
    if request.idempotency_key is not None:
        return keys.run_key("idempotency-key", [("key", request.idempotency_key)])
    return keys.run_key(source, keys.with_params(versions, request.params))


def _type(value: object) -> str:
    return _TYPES.get(type(value), type(value).__name__)
