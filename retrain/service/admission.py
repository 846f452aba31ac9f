"""The run queue: runs over ``MAX_ACTIVE_RUNS`` wait Queued and start oldest first.

Every new run under a cap is created Queued, then admitted: the oldest queued run takes the lowest
free slot in the transaction that claims it (``ledger.slots``), and is submitted. So the order is
first in, first out by construction, and hosts racing for one slot cannot both win. A run that
ends frees its slot in its terminal transaction; whoever recorded the end (the sweep, or a job
event) then admits the next. A queued run keeps its key (a redelivered event or a repeated webhook
call maps to it) and its data version (snapshotted when it was queued).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..backends.base import RunStatus
from ..clock import iso
from ..ledger.records import RunRecord
from ..ledger.runs import DamagedRun, Stored
from ..ledger.slots import read_slots

if TYPE_CHECKING:
    from .submission import Launcher

log = logging.getLogger(__name__)


def queued_in_order(runs: Iterable[Stored | DamagedRun]) -> list[Stored]:
    """The queued runs among ``runs``, oldest first (ties by run id)."""
    queued = [r for r in runs if isinstance(r, Stored) and r.record.status is RunStatus.QUEUED]
    return sorted(queued, key=lambda r: (r.record.created_at, r.run_id))


def queue_positions(runs: Iterable[Stored | DamagedRun]) -> dict[str, int]:
    """Each queued run's place in the queue (1: the next to start)."""
    return {r.run_id: place for place, r in enumerate(queued_in_order(runs), 1)}


def admit_queued(launcher: Launcher) -> dict[str, RunRecord | Exception]:
    """Start queued runs, oldest first, while a slot is free (all of them with no cap). Each
    admitted run's record after its submission, or the error that stopped it (its claim is
    released, so the next sweep tick submits it). Never raises for one run's trouble."""
    cap = launcher.settings.max_active_runs
    ledger = launcher.ledger
    queue = queued_in_order(ledger.active())
    done: dict[str, RunRecord | Exception] = {}
    races = 0
    while queue and races <= 2 * len(queue) + 8:
        take = None
        index: int | None = None
        if cap:
            slots = read_slots(ledger.table)
            free = slots.free(cap)
            if not free:
                break
            index = free[0]
            take = slots.take(index, queue[0].run_id)

        def claim(record: RunRecord, at: str, slot: int | None = index) -> RunRecord | None:
            if record.status is not RunStatus.QUEUED:
                return None
            return replace(record, status=RunStatus.SUBMITTED, slot=slot, claimed_at=at)

        run = queue[0]
        claimed_at = iso(launcher.clock())
        try:
            admitted = ledger.admit(run, functools.partial(claim, at=claimed_at), take)
        except Exception:  # the answer may be lost after storage applied it: ours if it did
            again = ledger.read(run.run_id)
            mine = again is not None and (again.record.claimed_at, again.record.slot) == (
                claimed_at, index
            ) and again.record.submitted_at is None  # fmt: skip
            if not mine:
                raise
            admitted = again
        if admitted is None:  # another host moved this run, or took the slot: look again
            races += 1
            again = ledger.read(run.run_id)
            if again is None or again.record.status is not RunStatus.QUEUED:
                queue.pop(0)
            else:
                queue[0] = again
            continue
        queue.pop(0)
        try:
            done[run.run_id] = launcher.submit_claimed(admitted)
        except Exception as exc:  # the claim was given back; the sweep submits it next tick
            name = type(exc).__name__
            log.warning("run %s: admitted, not submitted: %s: %s", run.run_id, name, exc)
            done[run.run_id] = exc
    return done
