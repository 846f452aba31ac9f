"""The outbox rows of the run ledger: announcements still to deliver, and dead letters.

::

    outbox|<due>|<sink>|<id>     written in the run's own terminal transaction (never lost),
                                 deleted once delivered; ``<due>`` ("0": at once, else an ISO
                                 time) orders them by when they are due, so a tick reads only those
    dead|<sink>|<event id>       an announcement that will never be delivered, with its reason

``Ledger`` inherits these methods; ``notify.outbox`` decides when each is called.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ..storage import Entity, ETagMismatch, Table
from ..storage.tables import Op
from .encoding import TABLE_PROPERTY_CHARS, Unencodable, dumps
from .records import RunRecord

OUTBOX, DEAD = "outbox|", "dead|"
DUE_NOW = "0"  # an outbox row due at once: sorts before every ISO time

# What to announce when a run turns terminal: (sink name, event id, event) for each sink.
Announce = Callable[[RunRecord], list[tuple[str, str, dict[str, Any]]]]


class OutboxRows:
    """The ledger's outbox and dead-letter rows, in the ledger's own table."""

    table: Table
    announce: Announce

    def _outbox_ops(self, record: RunRecord) -> list[Op]:
        """The run's announcements, due at once (``next_at`` empty)."""
        return [
            Op(
                "upsert",
                f"{OUTBOX}{DUE_NOW}|{sink}|{event_id}",
                {"event": _event_text(record, event), "attempts": 0, "next_at": "", "sink": sink},
            )
            for sink, event_id, event in self.announce(record)
        ]

    def outbox(self, due_by: str | None = None, limit: int | None = None) -> list[Entity]:
        """Announcements not yet delivered, soonest due first; given ``due_by`` (an ISO time),
        only those due by then: one range query that grows with those only."""
        below = f"{OUTBOX}{due_by}~" if due_by else None  # "~" sorts after "|" and digits
        return self.table.query(OUTBOX, limit, below=below)

    def outbox_delivered(self, entry: Entity) -> None:
        """Drop a delivered announcement (unless someone else changed it meanwhile)."""
        with suppress(ETagMismatch):
            self.table.transact([Op("delete", entry.row, etag=entry.etag)])

    def outbox_later(
        self, entry: Entity, attempts: int, next_at: str, error: str, failing_since: str = ""
    ) -> Entity | None:
        """Move an announcement to be due at ``next_at`` (its sink failed, or a send is about to
        start); the row as moved, or None if someone else moved or sent it meanwhile."""
        props = {**entry.props, "attempts": attempts, "next_at": next_at, "error": error[:500]}
        if failing_since:
            props["failing_since"] = failing_since
        moved = f"{OUTBOX}{next_at}|{_outbox_name(entry.row)}"
        try:
            etags = self.table.transact(
                [Op("delete", entry.row, etag=entry.etag), Op("upsert", moved, props)]
            )
        except ETagMismatch:
            return None
        return Entity(moved, props, etags[1])

    def outbox_dead(self, entry: Entity, error: str, at: str) -> None:
        """Move an announcement that will never be delivered to its ``dead|`` row, with why."""
        props = {**entry.props, "error": error[:500], "dead_at": at}
        dead = f"{DEAD}{_outbox_name(entry.row)}"
        with suppress(ETagMismatch):
            self.table.transact(
                [Op("delete", entry.row, etag=entry.etag), Op("upsert", dead, props)]
            )

    def dead_letters(self) -> list[Entity]:
        """Announcements dead-lettered: kept for people to read and replay."""
        return self.table.query(DEAD)


def _outbox_name(row: str) -> str:
    """``<sink>|<event id>`` of an outbox row."""
    return row.removeprefix(OUTBOX).partition("|")[2]


def _event_text(record: RunRecord, event: dict[str, Any]) -> str:
    try:
        return dumps(event, max_chars=TABLE_PROPERTY_CHARS)
    except Unencodable as exc:
        raise Unencodable(f"run {record.run_id}: event {exc}") from None
