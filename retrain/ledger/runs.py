"""The run ledger: Azure Table Storage, one partition, three kinds of row per run.

::

    run|<run_id>                 the record (its JSON in ``record``; ``status`` and ``job_name``
                                 beside it for people browsing the table); a point read by id
    active|<run_id>              a copy, present exactly while the run is not terminal: the
                                 sweep reads all of them with one range query, so its cost
                                 grows with active runs only
    recent|<inverted-ms>|<id>    a copy, named so that row-key order is newest first:
                                 ``GET /api/retrain`` is one range query of ``limit`` rows
    outbox|<due>|<sink>|<id>     an announcement of a terminal transition still to deliver to
                                 a notification sink, written in the transition's own
                                 transaction (never lost), deleted once delivered (outbox_rows.py);
                                 ``<due>`` ("0": at once, else an ISO time) orders the rows by
                                 when they are due, so a tick reads only those that are
    dead|<sink>|<event id>       an announcement that will never be delivered, with its reason
    slot|<k>                     a MAX_ACTIVE_RUNS slot and the run holding it (slots.py)

Every change is one entity-group transaction over the run's rows, so they can never disagree:
a claim creates all three (or, if any exists, none: exactly one of any number of concurrent
claimers wins); an update replaces all three; a terminal update replaces the record and the
listing copy and deletes the active row. No crash or storage fault leaves a run unlisted, or
active but invisible to the sweep.

Each write is guarded by the ETag of the row it read: the record's, or (for the sweep, which
reads only active rows) the active row's. Both work because while a run is active every write
replaces both rows, so a write to either changes both ETags. A lost race re-reads the record
and applies the change again. A terminal record never changes again: its active row is gone
(a guard on it fails) and ``write`` never passes a terminal record to a change.

A row whose record cannot be read is *damaged*: it harms only its own run (listed as damaged,
a 500 for its own GET, skipped by the sweep while the others go on).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from ..clock import later_than, parse_time, utcnow
from ..errors import CorruptDocumentError, NotFoundError, TransientError
from ..storage import AlreadyExists, Entity, ETagMismatch, StorageAccount, Table
from ..storage.tables import Op
from .encoding import Unencodable, dumps
from .outbox_rows import Announce, OutboxRows
from .records import RunRecord
from .slots import release

log = logging.getLogger(__name__)

RUN, ACTIVE, RECENT = "run|", "active|", "recent|"
UPDATE_ATTEMPTS = 16  # ETag races to lose before giving up (TransientError: the host retries)
MAX_OPS = 100  # operations an entity-group transaction may hold (3 rows a run, plus its outbox)
TRANSACTIONS_IN_FLIGHT = 3  # write_many's concurrent transactions
INVERT_MS = 10**13  # recent| keys sort newest first until the year 2286
MAX_RECORD_CHARS = 30_000  # below a Table property's 32K: its outbox event wraps it


@dataclass(frozen=True)
class Stored:
    """A record as read, with the ETag of the row it was read from (which guards a write)."""

    record: RunRecord
    etag: str
    row: str

    @property
    def run_id(self) -> str:
        return self.record.run_id


Change = Callable[[RunRecord], RunRecord | None]  # the new record, or None: leave it
Written = tuple[Stored, bool]  # the record now stored, and whether this call changed it
Pending = tuple[int, Stored, Change, RunRecord]  # write_many: (index, as read, change, new)


@dataclass(frozen=True)
class DamagedRun:
    """A row whose record cannot be read: named, so it can be shown and skipped."""

    run_id: str
    reason: str = "the run record is damaged"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": None, "damaged": True, "error": self.reason}


def recent_row(record: RunRecord) -> str:
    created = parse_time(record.created_at) or utcnow()
    return f"{RECENT}{INVERT_MS - int(created.timestamp() * 1000):013d}|{record.run_id}"


def _props(record: RunRecord) -> dict[str, Any]:
    """The record's row properties; ``Unencodable`` (naming the run) if strict JSON, or one
    Table property, cannot hold it."""
    try:
        text = dumps(record.to_dict(), max_chars=MAX_RECORD_CHARS)
    except RecursionError:  # asdict copies nesting recursively: far past dumps' bound
        raise Unencodable(f"run {record.run_id}: record nested too deep to store") from None
    except Unencodable as exc:
        raise Unencodable(f"run {record.run_id}: record {exc}") from None
    return {"record": text, "status": record.status.value, "job_name": record.job_name or ""}


def _record(entity: Entity) -> RunRecord:
    """The record an entity holds; CorruptDocumentError if it holds none."""
    try:
        data = json.loads(entity.props["record"])
        return RunRecord.from_dict(data)
    except (KeyError, ValueError, TypeError, AttributeError):
        run_id = entity.row.rpartition("|")[2]
        raise CorruptDocumentError(
            f"run {run_id}: the run record is damaged", entity.etag
        ) from None


class Ledger(OutboxRows):
    """Run records in one table (``RUNS_TABLE``) of the DataStorage account."""

    def __init__(
        self, account: StorageAccount, table: str, announce: Announce | None = None
    ) -> None:
        self.table = Table(account, table)
        self.announce: Announce = announce or (lambda _record: [])

    def read(self, run_id: str) -> Stored | None:
        """The record and its ETag, or None. CorruptDocumentError if it is damaged."""
        entity = self.table.get(f"{RUN}{run_id}")
        if entity is None:
            return None
        return Stored(_record(entity), entity.etag, entity.row)

    def get(self, run_id: str) -> RunRecord | None:
        found = self.read(run_id)
        return found.record if found else None

    def create(self, record: RunRecord, *, token: str = "") -> bool:
        """``claim``, as True if this call created the record."""
        return self.claim(record, token=token) is not None

    def claim(self, record: RunRecord, *, token: str = "") -> Stored | None:
        """Create ``record`` (with its active and listing rows) unless a run with its id exists.
        The record as stored (with its ETag) if this call created it, else None. ``token`` marks
        the record row as this caller's until its first update (see ``created_with``)."""
        props = _props(record)
        ops = [Op("create", f"{RUN}{record.run_id}", {**props, "token": token})]
        if not record.terminal:
            ops.append(Op("create", f"{ACTIVE}{record.run_id}", props))
        ops.append(Op("create", recent_row(record), props))
        if record.terminal:  # Rejected: announced like any other end
            ops += self._outbox_ops(record)
        try:
            etags = self.table.transact(ops)
        except AlreadyExists:
            return None
        return Stored(record, etags[0], f"{RUN}{record.run_id}")

    def created_with(self, run_id: str, token: str) -> Stored | None:
        """The run's record if it is still as the ``claim`` that carried ``token`` wrote it: how
        a caller whose answer was lost learns that its claim was applied."""
        entity = self.table.get(f"{RUN}{run_id}")
        if not token or entity is None or entity.props.get("token") != token:
            return None
        return Stored(_record(entity), entity.etag, entity.row)

    def update(
        self, run_id: str, change: Callable[[RunRecord], RunRecord | None]
    ) -> tuple[RunRecord, bool]:
        """``write`` from a fresh read: (the record now stored, whether this call changed it)."""
        stored, changed = self.write(run_id, change)
        return stored.record, changed

    def write(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        *,
        current: Stored | None = None,
        also: Callable[[RunRecord], list[Op]] | None = None,
    ) -> tuple[Stored, bool]:
        """Apply ``change`` to the record in one guarded transaction, retrying lost races.

        ``change`` returns the new record, or None for "leave it"; it never sees a terminal
        record. ``current`` (as read already) saves the first read. ``also`` adds operations on
        other rows of the partition to the same transaction (a promotion's champion row); if
        one of them loses a race, the whole change is made again from fresh reads."""
        missing_active = False
        found = current or self.read(run_id)
        for attempt in range(UPDATE_ATTEMPTS):
            if found is None:
                raise NotFoundError(f"run {run_id}: no such run")
            if found.record.terminal:
                return found, False
            new = change(found.record)
            if new is None or new == found.record:
                return found, False
            new = replace(new, updated_at=later_than(found.record.updated_at))
            ops = self._write_ops(new, found, missing_active)
            try:
                etags = self.table.transact(ops + (also(new) if also else []))
            except ETagMismatch as exc:
                # Lost a race (the next attempt starts from this read), or, guarded on a record
                # that did not change, the active row is missing: damage from outside, healed
                # by this write. Storage names the failed row; without its word, only a write
                # with no other rows can tell.
                again = self.read(run_id)
                unchanged = (
                    found.row.startswith(RUN) and again is not None and again.etag == found.etag
                )
                active = f"{ACTIVE}{run_id}"
                failed_on_active = exc.row == active if exc.row else also is None
                missing_active = unchanged and failed_on_active
                found = again
                _backoff(attempt)
                continue
            return Stored(new, etags[0], f"{RUN}{run_id}"), True
        raise TransientError(f"run {run_id}: too many concurrent updates")

    def admit(self, run: Stored, change: Change, take: Op | None) -> Stored | None:
        """Move a queued run on (``change``) and take its slot (``take``) in one transaction,
        guarded by the ETag ``run`` was read with; None if another host moved the run or took
        the slot first (the caller reads again)."""
        new = change(run.record)
        if new is None or run.record.terminal:
            return None
        new = replace(new, updated_at=later_than(run.record.updated_at))
        ops = self._write_ops(new, run, False) + ([take] if take else [])
        try:
            etags = self.table.transact(ops)
        except (AlreadyExists, ETagMismatch):
            return None
        return Stored(new, etags[0], f"{RUN}{new.run_id}")

    def write_many(self, changes: list[tuple[Stored, Change]]) -> list[Written | Exception]:
        """``write`` for many runs at once, as read already, as many runs to a transaction as
        its 100 operations hold (33 without notification sinks): a sweep tick in which many
        runs moved costs a few transactions, not one per run. A transaction that fails (a run
        in it lost a race, or met damage) is redone run by run with ``write``. Each run's
        result, or the error that stopped it."""
        results: dict[int, Written | Exception] = {}
        pending: list[Pending] = []
        for i, (found, change) in enumerate(changes):
            try:
                new = None if found.record.terminal else change(found.record)
            except Exception as exc:  # this run's own trouble: the others go on
                results[i] = exc
                continue
            if new is None or new == found.record:
                results[i] = (found, False)
            else:
                pending.append((i, found, change, replace(new, updated_at=later_than(
                    found.record.updated_at))))  # fmt: skip

        def commit(batch: tuple[list[Pending], list[Op], list[int]]) -> None:
            chunk, ops, firsts = batch
            try:
                etags = self.table.transact(ops)
            except ETagMismatch:
                for i, found, change, _ in chunk:
                    results[i] = _attempt(self.write, found.run_id, change)
                return
            except Exception as exc:  # e.g. storage unavailable: these runs wait for next tick
                results.update((i, exc) for i, *_ in chunk)
                return
            for (i, _, _, new), first in zip(chunk, firsts, strict=True):
                results[i] = (Stored(new, etags[first], f"{RUN}{new.run_id}"), True)

        # A few transactions in flight at once: while storage works on one, the next is built.
        with ThreadPoolExecutor(max_workers=TRANSACTIONS_IN_FLIGHT) as pool:
            list(pool.map(commit, self._chunks(pending, results)))
        return [results[i] for i in range(len(changes))]

    def _chunks(
        self, pending: list[Pending], results: dict[int, Written | Exception]
    ) -> Iterator[tuple[list[Pending], list[Op], list[int]]]:
        """``pending`` cut into transactions of at most MAX_OPS operations: each chunk, its ops,
        and where each run's record op is among them. A run whose rows cannot be built (too
        large, unencodable) gets its error in ``results`` and stays out of every chunk."""
        chunk: list[Pending] = []
        ops: list[Op] = []
        firsts: list[int] = []
        for item in pending:
            try:
                run_ops = self._write_ops(item[3], item[1], False)
            except Exception as exc:
                results[item[0]] = exc
                continue
            if chunk and len(ops) + len(run_ops) > MAX_OPS:
                yield chunk, ops, firsts
                chunk, ops, firsts = [], [], []
            chunk.append(item)
            firsts.append(len(ops))
            ops += run_ops
        if chunk:
            yield chunk, ops, firsts

    def _write_ops(self, new: RunRecord, guard: Stored, missing_active: bool) -> list[Op]:
        """The transaction that stores ``new`` over the version ``guard`` was read as; a run
        turning terminal (``write`` never rewrites a terminal one) gets its announcements."""
        ops = _write_ops(new, guard, missing_active)
        return ops + self._outbox_ops(new) if new.terminal else ops

    def active(self) -> list[Stored | DamagedRun]:
        """Runs not yet terminal, oldest id first: one range query."""
        found: list[Stored | DamagedRun] = []
        for entity in self.table.query(ACTIVE):
            try:
                found.append(Stored(_record(entity), entity.etag, entity.row))
            except CorruptDocumentError:
                found.append(DamagedRun(entity.row.removeprefix(ACTIVE)))
        return found

    def recent(self, limit: int = 20) -> list[RunRecord | DamagedRun]:
        """The newest ``limit`` runs, newest first: one range query."""
        runs: list[RunRecord | DamagedRun] = []
        for entity in self.table.query(RECENT, limit=limit):
            try:
                runs.append(_record(entity))
            except CorruptDocumentError as exc:
                log.error("%s (listing row %s)", exc, entity.row)
                runs.append(DamagedRun(entity.row.rpartition("|")[2]))
        return runs

    def records(self) -> list[RunRecord]:
        """Every run's record (costs O(history): for tests and tools, never a trigger)."""
        return [_record(entity) for entity in self.table.query(RUN)]


def _attempt(
    write: Callable[[str, Change], Written], run_id: str, change: Change
) -> Written | Exception:
    try:
        return write(run_id, change)
    except Exception as exc:
        return exc


def _write_ops(new: RunRecord, guard: Stored, missing_active: bool) -> list[Op]:
    """The transaction that stores ``new`` over the version ``guard`` was read as."""
    props = _props(new)
    run_row, active_row = f"{RUN}{new.run_id}", f"{ACTIVE}{new.run_id}"

    def etag_if(row: str) -> str | None:
        return guard.etag if guard.row == row else None

    ops = [Op("replace", run_row, props, etag=etag_if(run_row))]
    if new.terminal:
        if not missing_active:
            ops.append(Op("delete", active_row, etag=etag_if(active_row)))
        if new.slot is not None:  # its MAX_ACTIVE_RUNS slot is free from this transaction on
            ops.append(release(new.slot))
    elif guard.row == active_row:
        ops.append(Op("replace", active_row, props, etag=guard.etag))
    else:
        ops.append(Op("upsert", active_row, props))
    ops.append(Op("upsert", recent_row(new), props))
    return ops


def _backoff(attempt: int) -> None:
    """A random pause after a lost race: up to 5 ms, doubling with each loss, at most 0.5 s."""
    time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
