"""The run ledger: one JSON record per run in ``RUNS_CONTAINER``, guarded by ETags.

Layout of the runs container::

    runs/<run_id>.json         the record (RunRecord as JSON)
    active/<run_id>            empty marker while the run is not terminal: the sweep lists these,
                               so its cost grows with active runs, not with history. Its metadata
                               mirrors what the sweep needs (job name, status, raw status,
                               submitted), so a tick reads no record whose job has not moved;
                               and, once known, the record itself with its ETag, so a run that
                               moved is written with one guarded PUT and no read (a stale copy
                               just loses the ETag race: 412, then read-modify-write as usual)
    recent/<inverted-ms>-<id>  empty marker per run, named so that a plain listing (name order)
                               yields the newest runs first: ``recent(n)`` reads n names

Claims: a record is created with If-None-Match: * so that exactly one of any number of concurrent
callers creates it. Updates are read-modify-write with If-Match on the ETag, retried when another
writer got there first (412). A terminal record (Rejected, Completed, Failed, Canceled) never
changes again. Markers are written before the record and removed after it turns terminal, so a
crash in between leaves a marker the sweep tidies up, never an active run it cannot see. (Blob
index tags would also do for the active set, but they are missing on hierarchical-namespace
accounts and eventually consistent: a marker prefix works everywhere, Azurite included.)
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from .backends.base import RunStatus
from .errors import NotFoundError, TransientError
from .storage import BlobStore, ETagMismatch

log = logging.getLogger(__name__)

RECORDS, ACTIVE, RECENT = "runs/", "active/", "recent/"
UPDATE_ATTEMPTS = 16  # ETag races to lose before giving up (TransientError: the host retries)
INVERT_MS = 10**13  # recent/ names sort newest first until the year 2286
MARKER_RECORD_MAX = 4096  # encoded record copied into a marker's metadata (limit: 8 KiB in all)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, as every time in a record is written."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass(frozen=True)
class RunRecord:
    """Everything known about one run. Times are ISO 8601 UTC strings."""

    run_id: str
    source: str  # "landing/batch-7" (container/batch) or "azureml:NAME:VERSION"
    trigger: str  # blob | http | cli
    status: RunStatus
    created_at: str
    updated_at: str | None = None
    reason: str | None = None  # why Rejected or Failed; names the file for a bad batch
    raw_status: str | None = None  # the backend's own word, e.g. "NotResponding"
    job_name: str | None = None
    data_asset: str | None = None  # "NAME:VERSION"
    studio_url: str | None = None
    run_dir: str | None = None  # local backend
    claimed_at: str | None = None  # a submission in flight (a lease); cleared when it ends
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    metrics: dict[str, Any] | None = None  # score metrics once Completed: "accuracy", ...
    blobs: list[dict[str, str]] = field(default_factory=list)  # [{"name", "etag"}] keyed on
    params: dict[str, Any] = field(default_factory=dict)  # "epochs", "experiment" asked for
    idempotency_key: str | None = None
    attempts: int = 0  # submissions tried

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # tolerate newer fields
        values["status"] = RunStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True)
class ActiveEntry:
    """A run the active index lists: when it was marked, and the record's state as of the last
    write (None where the marker carries none)."""

    run_id: str
    marked_at: datetime
    job_name: str | None = None
    status: RunStatus | None = None
    raw_status: str | None = None
    submitted: bool = False
    found: tuple[RunRecord, str] | None = None  # the record and its ETag as last written, if known

    def matches(self, record: RunRecord) -> bool:
        return _marker(record) == _marker_of(self)


def _marker(record: RunRecord) -> dict[str, str]:
    """The active marker's metadata for ``record``."""
    return {
        "job": record.job_name or "",
        "status": record.status.value,
        "raw": record.raw_status or "",
        "submitted": "1" if record.submitted_at else "0",
    }


def _marker_with(record: RunRecord, etag: str | None) -> dict[str, str]:
    """The marker's metadata plus, when ``etag`` is known and it fits, the record it belongs to
    (base64 JSON: metadata values are ASCII header values)."""
    meta = _marker(record)
    if etag:
        text = json.dumps(record.to_dict(), separators=(",", ":")).encode()
        encoded = base64.b64encode(text).decode()
        if len(encoded) <= MARKER_RECORD_MAX:
            meta.update(etag=etag, record=encoded)
    return meta


def _found_of(meta: dict[str, str]) -> tuple[RunRecord, str] | None:
    """The record copy and ETag a marker carries; None if it carries none (or a bad one)."""
    if not meta.get("etag") or not meta.get("record"):
        return None
    try:
        record = RunRecord.from_dict(json.loads(base64.b64decode(meta["record"])))
    except (ValueError, KeyError, TypeError):
        return None
    return record, meta["etag"]


def _marker_of(entry: ActiveEntry) -> dict[str, str]:
    return {
        "job": entry.job_name or "",
        "status": entry.status.value if entry.status else "",
        "raw": entry.raw_status or "",
        "submitted": "1" if entry.submitted else "0",
    }


def _entry(name: str, marked_at: datetime, meta: dict[str, str]) -> ActiveEntry:
    try:
        status = RunStatus(meta["status"])
    except (KeyError, ValueError):
        return ActiveEntry(name, marked_at)
    return ActiveEntry(
        name,
        marked_at,
        job_name=meta.get("job") or None,
        status=status,
        raw_status=meta.get("raw") or None,
        submitted=meta.get("submitted") == "1",
        found=_found_of(meta),
    )


class Ledger:
    """Run records in one container of a BlobStore."""

    def __init__(self, store: BlobStore, container: str) -> None:
        self.store = store
        self.container = container

    def _ready(self) -> None:
        self.store.ensure_container(self.container)

    def get(self, run_id: str) -> RunRecord | None:
        found = self.read(run_id)
        return found[0] if found else None

    def read(self, run_id: str) -> tuple[RunRecord, str] | None:
        """The record and its ETag, or None."""
        self._ready()
        found = self.store.read_json(self.container, f"{RECORDS}{run_id}.json")
        if found is None:
            return None
        data, etag = found
        return RunRecord.from_dict(data), etag

    def create(self, record: RunRecord) -> bool:
        """Create ``record`` unless a record with its id exists. True if this call created it."""
        self._ready()
        if not record.terminal:
            self.mark(record)
        name = f"{RECORDS}{record.run_id}.json"
        etag = self.store.create_json(self.container, name, record.to_dict())
        if etag is None:
            return False
        if record.submitted_at and not record.terminal:  # the sweep's next write needs no read
            self.mark(record, etag)
        created = parse_time(record.created_at) or utcnow()
        inverted = INVERT_MS - int(created.timestamp() * 1000)
        self.store.put(self.container, f"{RECENT}{inverted:013d}-{record.run_id}")
        return True

    def update(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        *,
        current: tuple[RunRecord, str] | None = None,
        unmark: bool = True,
    ) -> tuple[RunRecord, bool]:
        """Apply ``change`` to the current record under an ETag guard, retrying lost races.

        ``change`` returns the new record, or None for "leave it". A terminal record is never
        passed to ``change``. ``current`` (record, ETag) just read saves the first read;
        ``unmark=False`` leaves a terminal run's marker for the caller to drop in bulk
        (``unmark_many``). Returns (record now stored, whether this call changed it).
        """
        for attempt in range(UPDATE_ATTEMPTS):
            found = current if attempt == 0 and current is not None else self.read(run_id)
            if found is None:
                raise NotFoundError(f"run {run_id}: no such run")
            record, etag = found
            if record.terminal:
                if unmark:
                    self._unmark(record)
                return record, False
            new = change(record)
            if new is None or new == record:
                return record, False
            new = replace(new, updated_at=iso(utcnow()))
            try:
                new_etag = self.store.replace_json(
                    self.container, f"{RECORDS}{run_id}.json", new.to_dict(), etag=etag
                )
            except ETagMismatch:
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
                continue
            if new.terminal:
                if unmark:
                    self._unmark(new)
            elif _marker(new) != _marker(record):
                self.mark(new, new_etag, exists=True)
            return new, True
        raise TransientError(f"run {run_id}: too many concurrent updates")

    def mark(self, record: RunRecord, etag: str | None = None, *, exists: bool = False) -> None:
        """Put ``record`` in the active index, with the state the sweep compares against (and,
        given the ``etag`` it was stored with, the record). ``exists``: the marker is there, so
        setting its metadata will do (a lighter request); it is written whole if it is not."""
        name, meta = f"{ACTIVE}{record.run_id}", _marker_with(record, etag)
        if exists:
            try:
                self.store.set_metadata(self.container, name, meta)
                return
            except NotFoundError:
                pass
        self.store.put(self.container, name, metadata=meta)

    def _unmark(self, record: RunRecord) -> None:
        if record.terminal:
            self.store.delete(self.container, f"{ACTIVE}{record.run_id}")

    def unmark(self, run_id: str) -> None:
        """Drop ``run_id`` from the active index (a stale marker)."""
        self.store.delete(self.container, f"{ACTIVE}{run_id}")

    def unmark_many(self, run_ids: list[str]) -> None:
        """Drop many runs from the active index, in batch requests (256 per request)."""
        self.store.delete_many(self.container, [f"{ACTIVE}{run_id}" for run_id in run_ids])

    def active(self) -> list[ActiveEntry]:
        """Runs not yet terminal, from the active index: cost grows with active runs only."""
        self._ready()
        return [
            _entry(blob.name[len(ACTIVE) :], blob.last_modified, dict(blob.metadata))
            for blob in self.store.list(self.container, ACTIVE, metadata=True)
        ]

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first."""
        self._ready()
        ids: list[str] = []
        for blob in self.store.list(self.container, RECENT, limit=limit):
            run_id = blob.name.rpartition("-")[2]
            if run_id not in ids:
                ids.append(run_id)
        with ThreadPoolExecutor(max_workers=8) as pool:
            records = list(pool.map(self.get, ids))
        return [record for record in records if record is not None]
