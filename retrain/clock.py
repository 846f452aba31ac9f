"""Time as every record and event writes it: ISO 8601 UTC strings with a ``Z``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import overload


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, as every time in a record is written."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def later_than(previous: str | None) -> str | None:
    """Now, or 1 ms after ``previous`` if a skewed clock elsewhere wrote a later time: a
    record's ``updated_at`` only grows, so it orders the record's versions."""
    now = utcnow()
    try:
        last = parse_time(previous)
    except ValueError:
        last = None
    if last is not None and last >= now:
        now = last + timedelta(milliseconds=1)
    return iso(now)
