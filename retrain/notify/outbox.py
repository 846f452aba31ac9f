"""Run notifications through an outbox: every terminal transition, and every promotion of a
run's model to champion, is announced once per sink.

The announcement (a CloudEvent, see ``notify/``) is written as an ``outbox|0|<sink>|<event id>``
row in the very transaction that makes the run terminal, so it can be neither lost (the
transition and its announcement are stored together or not at all) nor doubled (a run turns
terminal once; redelivered triggers and repeated sweeps find it terminal and write nothing).
Rows are keyed by when they are due (``0``: at once), so each sweep tick reads only those
due, in one range query, and sends them ``NOTIFY_CONCURRENCY`` at a time, each within
``NOTIFY_SEND_SECONDS``, starting sends only while one can finish inside the tick's
``NOTIFY_TICK_SECONDS``: the rows not started stay due, first in line for the next tick. Before
each send the row is moved ``SEND_LEASE`` later, so a tick
killed mid-send leaves it behind the others and a second host does not send it too. A
delivered row is deleted; a sink that fails moves its row for another try with backoff
(30 s, doubling, at most an hour), so a receiver that is down delays its events and never
loses them. An event the receiver refuses for good (a 4xx
other than 401/403/408/429, a redirect), one that cannot be sent at all, or one still undelivered
``MAX_AGE`` after its first failure is dead-lettered: moved to a ``dead|<sink>|<event id>`` row with
its reason (kept, counted, logged), so it never blocks the others or fails the timer.
Delivery is at least once: if a row cannot be deleted after its event went out, the event is
sent again, under the same id, for the receiver to drop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..clock import iso, parse_time
from ..errors import ConfigurationError, PermanentError, TransientError
from ..ledger.records import RunRecord

if TYPE_CHECKING:
    from ..ledger.runs import Ledger
    from ..settings import Settings
    from ..storage import Entity
    from .sinks import Sink

BACKOFF_S = 30
BACKOFF_MAX_S = 3600
SEND_LEASE = timedelta(minutes=15)  # a send in flight: its row is due again after this
MAX_AGE = timedelta(days=7)  # an event still undelivered this long after its run ended is dead


def sink_names(settings: Settings) -> list[str]:
    """The sinks the settings configure, by the names their rows are written under."""
    names = []
    if settings.notify_webhook_url:
        names.append("webhook")
    if settings.notify_eventgrid_endpoint:
        names.append("eventgrid")
    return names


def announcer(settings: Settings):  # -> ledger.Announce
    """What the ledger writes when a run turns terminal: one event per configured sink, and a
    ``model.promoted`` event beside it when the run's model became champion."""
    names = sink_names(settings)
    source = f"/fashion-retrain/{settings.landing_container}"

    def announce(record: RunRecord) -> list[tuple[str, str, dict[str, Any]]]:
        if not names:
            return []
        from .events import PROMOTED, cloud_event, event_id, event_type

        when = parse_time(record.ended_at or record.updated_at or record.created_at)
        events = [
            cloud_event(
                id=event_id(record.run_id, record.status.value.lower()),
                source=source,
                type=event_type(record.status.value),
                subject=record.run_id,
                data=record.to_dict(),
                time=when,
            )
        ]
        if record.model and record.model.get("promoted"):  # in the same transaction
            events.append(
                cloud_event(
                    id=event_id(record.run_id, "promoted"),
                    source=source,
                    type=PROMOTED,
                    subject=f"{record.model['name']}:{record.model['version']}",
                    data=record.to_dict(),
                    time=when,
                )
            )
        return [(name, event["id"], event) for event in events for name in names]

    return announce


@dataclass(frozen=True)
class Limits:
    """How a tick delivers: ``concurrency`` sends at a time, each within ``send_s``, all within
    ``tick_s`` (a send starts only while one whole ``send_s`` is left)."""

    concurrency: int = 8
    tick_s: float = 120.0
    send_s: float = 30.0


def limits(settings: Settings) -> Limits:
    """The delivery limits the settings ask for."""
    return Limits(
        settings.notify_concurrency, settings.notify_tick_seconds, settings.notify_send_seconds
    )


@dataclass
class Delivery:
    """What one round of delivery did, and the lines to log (from the invocation's thread)."""

    sent: int = 0
    retrying: int = 0  # failed now, kept for a later try
    dropped: int = 0  # its sink is no longer configured, or its row is damaged
    dead: int = 0  # refused for good, unsendable, or past MAX_AGE: kept as a dead| row
    deferred: int = 0  # not started before the tick's deadline: still due, for the next tick
    lines: list[tuple[int, str]] = field(default_factory=list)


# One row's outcome, as a worker thread returns it: (Delivery counter, log level, line).
Outcome = tuple[str, int, str]


def deliver(
    ledger: Ledger, sinks: Mapping[str, Sink], now: datetime, limits: Limits = Limits()
) -> Delivery:
    """Send every announcement that is due to its sink, ``limits.concurrency`` at a time, until
    the tick's deadline; the rows not started by then stay due, first in line next tick."""
    ends = time.monotonic() + limits.tick_s
    due = ledger.outbox(due_by=iso(now))
    done = Delivery()
    if not due:
        return done

    def one(entry: Entity) -> Outcome | None:
        if time.monotonic() + limits.send_s > ends:
            return None  # it could not finish in time: left as it is, due
        return _deliver_one(ledger, sinks, entry, now)

    workers = max(1, min(limits.concurrency, len(due)))
    with ThreadPoolExecutor(workers, thread_name_prefix="notify") as pool:
        for outcome in pool.map(one, due):
            if outcome is None:
                done.deferred += 1
                continue
            counter, level, line = outcome
            if counter:
                setattr(done, counter, getattr(done, counter) + 1)
            if line:
                done.lines.append((level, line))
    if done.deferred:
        line = f"notify: {done.deferred} due events left for the next tick"
        why = f"its {limits.tick_s:g} s for sending ran out"
        done.lines.append((logging.WARNING, f"{line} ({why})"))
    return done


def _deliver_one(ledger: Ledger, sinks: Mapping[str, Sink], due: Entity, now: datetime) -> Outcome:
    """Send one due announcement and move its row as the result says (on a worker thread: it
    logs nothing itself)."""
    props = due.props
    sink = sinks.get(str(props.get("sink")))
    try:
        event = json.loads(props["event"])
    except (KeyError, TypeError, ValueError):
        event = None
    if sink is None or not isinstance(event, dict):
        why = "its sink is no longer configured" if event else "its row is damaged"
        ledger.outbox_delivered(due)
        return "dropped", logging.WARNING, f"notify: dropped {due.row}: {why}"
    # Moved back before the send: a tick killed mid-send leaves it behind the others, and
    # a host sweeping at the same time does not send it too.
    attempts_so_far = int(props.get("attempts") or 0)
    lease = iso(now + SEND_LEASE) or ""
    entry = ledger.outbox_later(due, attempts_so_far, lease, str(props.get("error") or ""))
    if entry is None:
        return "", logging.DEBUG, ""  # another host moved or sent it
    try:
        sink.send(event)
    except (TransientError, ConfigurationError) as exc:  # a fixed setting recovers it
        attempts = attempts_so_far + 1
        first = _time(props.get("failing_since")) or now
        if now - first > MAX_AGE:
            return _dead(ledger, entry, event, f"{exc}; undelivered past its maximum age", now)
        delay = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempts - 1))
        ledger.outbox_later(
            entry,
            attempts,
            iso(now + timedelta(seconds=delay)) or "",
            str(exc),
            failing_since=iso(first) or "",
        )
        line = f"notify: {event.get('id')} to {sink.name}: {exc}; trying again in {delay} s"
        return "retrying", logging.WARNING, f"{line} (attempt {attempts})"
    except PermanentError as exc:  # the receiver refused it for good (410, 400, 302...)
        return _dead(ledger, entry, event, str(exc), now)
    except Exception as exc:  # this event cannot be sent at all: the others still go
        return _dead(ledger, entry, event, f"cannot be sent ({type(exc).__name__})", now)
    ledger.outbox_delivered(entry)
    return "sent", logging.INFO, f"notify: {event.get('type')} {event.get('id')} sent"


def _dead(ledger: Ledger, entry: Entity, event: dict[str, Any], why: str, now: datetime) -> Outcome:
    """Move an announcement that will never be delivered to its dead-letter row."""
    ledger.outbox_dead(entry, why, iso(now) or "")
    return "dead", logging.ERROR, f"notify: {event.get('id')} dead-lettered: {why}"


def _time(text: object) -> datetime | None:
    try:
        return parse_time(text) if isinstance(text, str) else None
    except ValueError:
        return None
