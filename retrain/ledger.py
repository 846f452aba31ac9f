"""The run ledger: one JSON record per run in ``RUNS_CONTAINER``, guarded by ETags.

Layout of the runs container::

    runs/<run_id>.json          the record (RunRecord as JSON)
    index/active-<k>.json       the active index, in ``SHARDS`` JSON documents: shard k maps the
                                ids of runs not yet terminal (hashed to k) to what the sweep
                                needs: when the run was indexed, its job name, status, raw
                                status and whether it was submitted, so a tick reads no record
                                whose job has not moved; and, once known, the record itself with
                                its ETag, so a run that moved is written with one guarded PUT and
                                no read (a stale copy just loses the ETag race: 412, then
                                read-modify-write as usual)
    recent/<inverted-ms>-<id>   empty marker per run, named so that a plain listing (name order)
                                yields the newest runs first: ``recent(n)`` reads n names

Claims: a record is created with If-None-Match: * so that exactly one of any number of concurrent
callers creates it. Updates are read-modify-write with If-Match on the ETag, retried when another
writer got there first (412). A terminal record (Rejected, Completed, Failed, Canceled) never
changes again.

The active index: a run is indexed before its record is created and dropped after the record
turns terminal, so a crash in between leaves an entry the sweep tidies up, never an active run it
cannot see. Shards are edited read-modify-write with If-Match too, so concurrent writers lose no
entry. Why shards, not a marker blob per run: the sweep rewrites each shard once per tick, so a
tick in which 1,000 runs move or end costs at most 16 index writes instead of 1,000 metadata
writes or deletes (figures: docs/function-app.md, Performance), and the cost still grows with
active runs only. (Blob index tags would also do for the active set, but they are missing on
hierarchical-namespace accounts and eventually consistent.)
"""

from __future__ import annotations

import json
import logging
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from .backends.base import RunStatus
from .errors import CorruptDocumentError, NotFoundError, TransientError
from .storage import BlobStore, ETagMismatch

log = logging.getLogger(__name__)

RECORDS, INDEX, RECENT = "runs/", "index/active-", "recent/"
SHARDS = 16  # active-index documents; a run's shard is crc32(id) % SHARDS, so this stays fixed
UPDATE_ATTEMPTS = 16  # ETag races to lose before giving up (TransientError: the host retries)
INVERT_MS = 10**13  # recent/ names sort newest first until the year 2286
ENTRY_RECORD_MAX = 8192  # a record copied into its index entry, as compact JSON (bigger: no copy)
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)  # an entry whose indexing time is unreadable
STALE_ENTRY = timedelta(minutes=5)  # an index entry with no record, older than this, is junk
REFRESH_ENTRY = STALE_ENTRY / 5  # a claim retried on an entry older than this renews its time


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
    """A run the active index lists: the shard it is in, when it was indexed, and the record's
    state as of the last index write (None where the entry carries none)."""

    run_id: str
    shard: str
    marked_at: datetime
    job_name: str | None = None
    status: RunStatus | None = None
    raw_status: str | None = None
    submitted: bool = False
    found: tuple[RunRecord, str] | None = None  # the record and its ETag as last written, if known

    def matches(self, record: RunRecord) -> bool:
        """Whether the entry mirrors ``record``'s state (job, status, raw status, submitted)."""
        return (self.job_name, self.status, self.raw_status, self.submitted) == (
            record.job_name,
            record.status,
            record.raw_status,
            record.submitted_at is not None,
        )


@dataclass(frozen=True)
class IndexChange:
    """One change the sweep makes to the active index at the end of its tick."""

    entry: ActiveEntry  # as the sweep read it
    found: tuple[RunRecord, str] | None = None  # the record and its ETag now; None: drop the entry
    orphan: bool = False  # drop only if untouched since it was read (its record never appeared)


def shard_of(run_id: str) -> str:
    """The index document ``run_id``'s entry lives in (a stable hash of the id)."""
    return f"{INDEX}{zlib.crc32(run_id.encode()) % SHARDS:02d}.json"


def _entry_doc(record: RunRecord, etag: str | None, marked_at: str) -> dict[str, Any]:
    """``record``'s index entry; with ``etag`` (and if it is small enough), the record too."""
    doc: dict[str, Any] = {
        "marked_at": marked_at,
        "job": record.job_name,
        "status": record.status.value,
        "raw": record.raw_status,
        "submitted": record.submitted_at is not None,
    }
    if etag:
        copy = record.to_dict()
        if len(json.dumps(copy, separators=(",", ":"))) <= ENTRY_RECORD_MAX:
            doc.update(etag=etag, record=copy)
    return doc


def _marked_at(doc: Any) -> str:
    """When an existing entry was first indexed ("" if it does not say)."""
    value = doc.get("marked_at") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else ""


def _time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def _newer(doc: Any, record: RunRecord) -> bool:
    """Whether entry ``doc`` already carries a later version of the record than ``record``: an
    index write that arrives late must not roll the entry back."""
    copy = doc.get("record") if isinstance(doc, dict) else None
    theirs = copy.get("updated_at") if isinstance(copy, dict) else None
    return isinstance(theirs, str) and (record.updated_at is None or theirs > record.updated_at)


def _entry(run_id: str, shard: str, doc: Any) -> ActiveEntry:
    """The entry ``doc`` describes; one it cannot read fully still names the run (the sweep then
    reads the record)."""
    doc = doc if isinstance(doc, dict) else {}
    marked_at = _time_or_none(_marked_at(doc)) or EARLIEST
    try:
        status = RunStatus(doc["status"])
    except (KeyError, ValueError, TypeError):
        return ActiveEntry(run_id, shard, marked_at)
    found = None
    if isinstance(doc.get("etag"), str) and isinstance(doc.get("record"), dict):
        try:
            found = RunRecord.from_dict(doc["record"]), doc["etag"]
        except (KeyError, ValueError, TypeError):
            found = None
    return ActiveEntry(
        run_id,
        shard,
        marked_at,
        job_name=doc.get("job") or None,
        status=status,
        raw_status=doc.get("raw") or None,
        submitted=bool(doc.get("submitted")),
        found=found,
    )


IndexEdit = Callable[[dict[str, Any]], bool]  # changes a shard's entries in place; True if it did


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
        if not record.terminal:  # indexed first: a crash now leaves junk, never a lost run
            self.mark(record, new=True)
        name = f"{RECORDS}{record.run_id}.json"
        if self.store.create_json(self.container, name, record.to_dict()) is None:
            return False
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
    ) -> tuple[RunRecord, bool]:
        """Apply ``change`` to the current record under an ETag guard (see ``write``), then bring
        its index entry up to date. Returns (record now stored, whether this call changed it).

        The index write is best effort: the record is what counts, and it is written by then;
        the sweep sets a stale entry right (or drops the entry of a run that ended)."""
        stored, etag, changed = self.write(run_id, change, current=current)
        try:
            if stored.terminal:
                self.unmark(run_id)
            elif changed:
                self.mark(stored, etag)
        except Exception as exc:
            log.warning("run %s: index entry left stale (%s); the sweep will catch up", run_id, exc)
        return stored, changed

    def write(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        *,
        current: tuple[RunRecord, str] | None = None,
    ) -> tuple[RunRecord, str, bool]:
        """Apply ``change`` to the current record under an ETag guard, retrying lost races, and
        leave the active index alone (the sweep re-indexes a whole tick at once: ``reindex``).

        ``change`` returns the new record, or None for "leave it". A terminal record is never
        passed to ``change``. ``current`` (record, ETag) already known saves the first read.
        Returns (record now stored, its ETag, whether this call changed it).
        """
        for attempt in range(UPDATE_ATTEMPTS):
            found = current if attempt == 0 and current is not None else self.read(run_id)
            if found is None:
                raise NotFoundError(f"run {run_id}: no such run")
            record, etag = found
            if record.terminal:
                return record, etag, False
            new = change(record)
            if new is None or new == record:
                return record, etag, False
            new = replace(new, updated_at=_later_than(record.updated_at))
            try:
                new_etag = self.store.replace_json(
                    self.container, f"{RECORDS}{run_id}.json", new.to_dict(), etag=etag
                )
            except ETagMismatch:
                _backoff(attempt)
                continue
            return new, new_etag, True
        raise TransientError(f"run {run_id}: too many concurrent updates")

    # --- the active index ------------------------------------------------------------------------

    def mark(self, record: RunRecord, etag: str | None = None, *, new: bool = False) -> None:
        """Index ``record`` as active, with the state the sweep compares against (and, given
        the ``etag`` it was stored with, the record). ``new``: a claim about to create the
        record, which leaves an existing entry as it is, except that it renews an aging one
        without a record copy (a retried claim), so the sweep does not take it for junk."""
        run_id = record.run_id

        def edit(runs: dict[str, Any]) -> bool:
            old = runs.get(run_id)
            marked_at = _marked_at(old)
            if old is not None and new:
                stamp = _time_or_none(marked_at)
                if isinstance(old, dict) and old.get("etag"):
                    return False
                if stamp is not None and utcnow() - stamp < REFRESH_ENTRY:
                    return False
                marked_at = ""
            elif _newer(old, record):
                return False
            doc = _entry_doc(record, etag, marked_at or iso(utcnow()) or "")
            if doc == old:
                return False
            runs[run_id] = doc
            return True

        self._edit(shard_of(run_id), edit)

    def unmark(self, run_id: str) -> None:
        """Drop ``run_id`` from the active index (its record is terminal)."""
        self._edit(shard_of(run_id), lambda runs: runs.pop(run_id, None) is not None)

    def reindex(self, changes: Iterable[IndexChange]) -> None:
        """The sweep's index changes, in one guarded write per shard touched. An entry dropped
        meanwhile is not brought back, and one that meanwhile got a later record is kept. An
        orphan is dropped only if its record still does not exist and nobody has touched its
        entry since the sweep read it (a claim that came back to life renews it)."""
        by_shard: dict[str, list[IndexChange]] = defaultdict(list)
        for change in changes:
            if change.orphan and self.read(change.entry.run_id) is not None:
                continue  # its claim created the record after all; the next tick sees it
            by_shard[change.entry.shard].append(change)

        def apply(shard: str) -> None:
            def edit(runs: dict[str, Any]) -> bool:
                changed = False
                for change in by_shard[shard]:
                    run_id = change.entry.run_id
                    current = runs.get(run_id)
                    if current is None:
                        continue
                    if change.found is None:
                        if change.orphan and _entry(run_id, shard, current) != change.entry:
                            continue  # its claim came back to life since the sweep read it
                        del runs[run_id]
                    elif _newer(current, change.found[0]):
                        continue
                    else:
                        runs[run_id] = _entry_doc(*change.found, _marked_at(current))
                    changed = True
                return changed

            self._edit(shard, edit)

        with _pool(len(by_shard)) as pool:
            list(pool.map(apply, by_shard))

    def active(self) -> list[ActiveEntry]:
        """Runs not yet terminal, from the active index: cost grows with active runs only."""
        self._ready()
        shards = [blob.name for blob in self.store.list(self.container, INDEX)]
        with _pool(len(shards)) as pool:
            docs = list(pool.map(self._read_shard, shards))
        return [
            _entry(run_id, shard, doc)
            for shard, (runs, _) in zip(shards, docs, strict=True)
            for run_id, doc in runs.items()
        ]

    def _read_shard(self, shard: str) -> tuple[dict[str, Any], str | None]:
        """A shard's entries and its ETag (None: no such shard yet). One that is not a JSON
        object is rebuilt from the records (``_repair``) instead of failing every reader."""
        try:
            found = self.store.read_json(self.container, shard)
        except CorruptDocumentError as exc:
            return self._repair(shard, exc)
        if found is None:
            return {}, None
        data, etag = found
        runs = data.get("runs")
        return (runs if isinstance(runs, dict) else {}), etag

    def _repair(self, shard: str, damage: CorruptDocumentError) -> tuple[dict[str, Any], str]:
        """Rebuild a damaged shard from the records (every run hashed to it that is not
        terminal) and write it back in place of the damaged one. This lists all records, so it
        costs O(history), but only after something outside the ledger broke the shard."""
        log.error("%s: rebuilding it from the run records", damage)
        runs: dict[str, Any] = {}
        for blob in self.store.list(self.container, RECORDS):
            run_id = blob.name[len(RECORDS) :].removesuffix(".json")
            if shard_of(run_id) != shard:
                continue
            try:
                found = self.read(run_id)
            except CorruptDocumentError as exc:
                log.error("%s: left out of the rebuilt index", exc)
                continue
            if found is not None and not found[0].terminal:
                runs[run_id] = _entry_doc(found[0], found[1], iso(utcnow()) or "")
        try:
            etag = self.store.replace_json(
                self.container, shard, {"runs": runs}, etag=damage.etag, compact=True
            )
        except ETagMismatch:  # someone else replaced it meanwhile: read theirs
            return self._read_shard(shard)
        return runs, etag

    def _edit(self, shard: str, edit: IndexEdit) -> None:
        """Read-modify-write one shard under an ETag guard (create it if missing), retrying lost
        races: concurrent writers never lose each other's entries."""
        self._ready()
        for attempt in range(UPDATE_ATTEMPTS):
            runs, etag = self._read_shard(shard)
            if not edit(runs):
                return
            document = {"runs": runs}
            if etag is None:
                if self.store.create_json(self.container, shard, document, compact=True):
                    return
            else:
                try:
                    self.store.replace_json(
                        self.container, shard, document, etag=etag, compact=True
                    )
                    return
                except ETagMismatch:
                    pass
            _backoff(attempt)
        raise TransientError(f"active index {shard}: too many concurrent updates")

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first."""
        self._ready()
        ids: list[str] = []
        for blob in self.store.list(self.container, RECENT, limit=limit):
            run_id = blob.name.rpartition("-")[2]
            if run_id not in ids:
                ids.append(run_id)
        with _pool(len(ids)) as pool:
            records = list(pool.map(self.get, ids))
        return [record for record in records if record is not None]


def _later_than(previous: str | None) -> str | None:
    """Now, or 1 ms after ``previous`` if a skewed clock elsewhere wrote a later time: a
    record's ``updated_at`` only grows, so it orders the record's versions."""
    now = utcnow()
    last = _time_or_none(previous or "")
    if last is not None and last >= now:
        now = last + timedelta(milliseconds=1)
    return iso(now)


def _pool(tasks: int) -> ThreadPoolExecutor:
    """Threads for ``tasks`` independent storage requests (at most 8 at a time)."""
    return ThreadPoolExecutor(max_workers=max(1, min(8, tasks)))


def _backoff(attempt: int) -> None:
    """A random pause after a lost ETag race: up to 5 ms, doubling with each loss, at most 0.5 s
    (16 losses wait about 2.5 s in all, on average)."""
    time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
