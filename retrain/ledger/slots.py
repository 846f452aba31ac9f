"""Slots: how ``MAX_ACTIVE_RUNS`` is held by every host together, with no lock in memory.

::

    slot|<k>    k in 0..MAX_ACTIVE_RUNS-1: ``run_id`` names the run holding it ("" when free)

A run takes slot ``k`` in the same entity-group transaction that moves it from Queued to claimed:
a create of the row (when it has never existed) or a replace guarded by the free row's ETag, so of
two hosts that both saw ``k`` free exactly one wins. The transaction that makes the run terminal
frees its slot (an upsert, so no damage elsewhere can block a run from ending). The record names
its slot (``slot``), so no read is needed to free it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..storage import Table
from ..storage.tables import Op

SLOT = "slot|"


def slot_row(index: int) -> str:
    return f"{SLOT}{index:04d}"


@dataclass(frozen=True)
class Slots:
    """The slot rows as read: who holds which, and the ETag of each free row."""

    held: dict[int, str] = field(default_factory=dict)  # index -> run id
    free_etags: dict[int, str] = field(default_factory=dict)  # index -> ETag of a free row

    def free(self, cap: int) -> list[int]:
        """Free indices below ``cap``, lowest first; none while ``cap`` runs hold one (a cap
        lowered below what is held takes effect as those runs end)."""
        if len(self.held) >= cap:
            return []
        return [k for k in range(cap) if k not in self.held]

    def take(self, index: int, run_id: str) -> Op:
        """The operation that gives ``index`` to ``run_id``; it fails if another host took it."""
        props = {"run_id": run_id}
        etag = self.free_etags.get(index)
        if etag is None:
            return Op("create", slot_row(index), props)
        return Op("replace", slot_row(index), props, etag=etag)


def read_slots(table: Table) -> Slots:
    """Every slot row: one range query."""
    held: dict[int, str] = {}
    free: dict[int, str] = {}
    for entity in table.query(SLOT):
        try:
            index = int(entity.row.removeprefix(SLOT))
        except ValueError:
            continue  # not a slot row this code wrote
        holder = str(entity.props.get("run_id") or "")
        if holder:
            held[index] = holder
        else:
            free[index] = entity.etag
    return Slots(held, free)


def release(index: int) -> Op:
    """The operation that frees ``index`` (in the run's terminal transaction)."""
    return Op("upsert", slot_row(index), {"run_id": ""})
