"""The settle rows of the run ledger: which re-check of a settling batch is the live one.

::

    settle|<32 hex digits of the batch's source, hashed>   source, token, until

While a batch settles, one re-check message is the live one: the row names its ``token`` and
``until``, when it should have fired by (its delay plus the host's retries). A blob event that
finds a live row does not send another message; it only touches the row (``bump``), so that
the live re-check, whose own guarded write then fails, looks at the batch again before acting.
A re-check whose token is not the row's, while the row is live, drops. The row goes when the
live re-check stops re-queuing (``release``); one whose holder died simply expires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from ..clock import iso, parse_time
from ..storage import Entity, ETagMismatch, Table
from ..storage.tables import Op

SETTLE = "settle|"


@dataclass(frozen=True)
class Hold:
    """A settle row as read: its re-check's token, until when it is live, and its ETag."""

    row: str
    source: str
    token: str
    until: datetime | None
    etag: str

    def live(self, now: datetime) -> bool:
        return self.until is not None and self.until > now


class SettleRows:
    """The settle rows, in the ledger's own table."""

    def __init__(self, table: Table) -> None:
        self.table = table

    @staticmethod
    def row(source: str) -> str:
        return f"{SETTLE}{hashlib.sha256(source.encode()).hexdigest()[:32]}"

    def get(self, source: str) -> Hold | None:
        entity = self.table.get(self.row(source))
        return _hold(entity) if entity is not None else None

    def hold(self, source: str, token: str, until: datetime, over: Hold | None) -> bool:
        """Make ``token`` the live re-check until ``until``: create the row, or replace ``over``
        as it was read. False if someone else wrote it first."""
        props = {"source": source, "token": token, "until": iso(until)}
        if over is None:
            op = Op("create", self.row(source), props)
        else:
            op = Op("replace", over.row, props, etag=over.etag)
        try:
            self.table.transact([op])
        except ETagMismatch:  # AlreadyExists is one too: a create lost
            return False
        return True

    def bump(self, hold: Hold, at: datetime) -> bool:
        """Touch a live row (a change its re-check must see); False if it changed first."""
        props = {
            "source": hold.source,
            "token": hold.token,
            "until": iso(hold.until),
            "changed_at": iso(at),
        }
        try:
            self.table.transact([Op("replace", hold.row, props, etag=hold.etag)])
        except ETagMismatch:
            return False
        return True

    def release(self, hold: Hold) -> bool:
        """Delete the row as it was read; False if it changed (a bump) or went meanwhile."""
        try:
            self.table.transact([Op("delete", hold.row, etag=hold.etag)])
        except ETagMismatch:
            return False
        return True


def _hold(entity: Entity) -> Hold:
    props = entity.props
    try:
        until = parse_time(str(props.get("until") or "")) or None
    except ValueError:  # a damaged row: not live, so the next re-check takes it over
        until = None
    if until is not None and until.tzinfo is None:
        until = None
    source, token = str(props.get("source") or ""), str(props.get("token") or "")
    return Hold(entity.row, source, token, until, entity.etag)
