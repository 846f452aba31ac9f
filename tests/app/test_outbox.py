"""Run notifications through the ledger's outbox (Azurite): each terminal transition is
announced exactly once per sink, in the transition's own transaction; a sink that is down
delays its events and never loses them; redelivered triggers and repeated sweeps never add one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from apphelpers import (
    batch_files,
    blob_event,
    idx_labels,
    receiver_back_up,
    submitted_runs,
    upload,
)
from receivers import Receiver, Stalling

from retrain.backends.base import JobState, RunStatus
from retrain.clock import iso
from retrain.errors import PermanentError, TransientError
from retrain.service import core as service_module
from retrain.service.core import RetrainService


@dataclass
class RecordingSink:
    """A sink that records what it is sent, and can be made to fail like a receiver that is
    down."""

    name: str = "webhook"
    down: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    def send(self, event: dict[str, Any]) -> None:
        if self.down:
            raise TransientError("the webhook answered 503")
        self.events.append(event)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def notifying(settings, store, backend, clock, sink):
    """The service with a webhook configured; its sink records instead of posting."""
    configured = replace(
        settings, notify_webhook_url="https://hooks.example/x", notify_webhook_secret="s"
    )
    svc = RetrainService(configured, store=store, backend=backend, clock=clock)
    svc._sinks = {sink.name: sink}
    service_module.set_service(svc)
    yield svc
    service_module.set_service(None)


def _ids(sink: RecordingSink) -> list[str]:
    return sorted(event["id"] for event in sink.events)


def test_each_terminal_transition_is_announced_once(notifying, store, backend, sink):
    done, broken, stopped, _running = submitted_runs(notifying, store, 4)
    backend.states[done.job_name] = JobState(
        RunStatus.COMPLETED, "Completed", metrics={"accuracy": 0.9}
    )
    backend.states[broken.job_name] = JobState(RunStatus.FAILED, "Failed", error="out of memory")
    backend.states[stopped.job_name] = JobState(RunStatus.CANCELED, "Canceled")
    assert notifying.sweep().notified == 3
    for _ in range(3):  # repeated sweeps, redelivered events: nothing more
        notifying.sweep()
        blob_event(store, f"{notifying.settings.landing_container}/b0/train-images-idx3-ubyte.gz")
    assert _ids(sink) == sorted(
        [f"{done.run_id}:completed", f"{broken.run_id}:failed", f"{stopped.run_id}:canceled"]
    )
    types = {event["subject"]: event["type"] for event in sink.events}
    assert types[done.run_id] == "fashion.retrain.run.completed"
    assert types[broken.run_id] == "fashion.retrain.run.failed"
    [completed] = [e for e in sink.events if e["subject"] == done.run_id]
    assert completed["specversion"] == "1.0" and completed["data"]["metrics"]["accuracy"] == 0.9
    assert notifying.ledger.outbox() == []


def test_a_sink_that_is_down_delays_its_events_and_loses_none(
    notifying, store, backend, sink, clock
):
    [run] = submitted_runs(notifying, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    sink.down = True
    assert notifying.sweep().notify_retrying == 1
    [kept] = notifying.ledger.outbox()
    assert kept.props["attempts"] == 1 and "503" in kept.props["error"]
    assert notifying.sweep().notify_retrying == 0  # backing off: not due yet
    clock.now += timedelta(seconds=31)
    assert notifying.sweep().notify_retrying == 1
    assert notifying.ledger.outbox()[0].props["attempts"] == 2

    sink.down = False
    clock.now += timedelta(minutes=2)
    assert notifying.sweep().notified == 1
    notifying.sweep()
    assert _ids(sink) == [f"{run.run_id}:completed"]


def test_a_rejected_batch_is_announced(notifying, store, sink):
    files = batch_files(gz=False)
    files["train-labels-idx1-ubyte"] = idx_labels(3)  # 3 labels for 12 images
    for path in upload(store, notifying.settings.landing_container, "bad", files):
        blob_event(store, path)
    notifying.sweep()
    [event] = sink.events
    assert event["type"] == "fashion.retrain.run.rejected"
    assert "train-labels-idx1-ubyte" in event["data"]["reason"]


def test_no_sink_writes_no_outbox(service, store, backend):
    [run] = submitted_runs(service, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed")
    summary = service.sweep()
    assert summary.completed == 1 and summary.notified == 0
    assert service.ledger.outbox() == []


SECRET = "outbox-signing-secret"


def test_a_loopback_webhook_gets_each_transition_once_signed_even_after_being_down(
    settings, store, backend, clock
):
    """The real webhook sink and a real HTTP receiver on 127.0.0.1: down (503) for the first
    ticks, then up; redelivered events and repeated sweeps all along."""
    with Receiver(secret=SECRET, status=503).serve() as receiver:
        configured = replace(
            settings, notify_webhook_url=f"{receiver.url}/hook", notify_webhook_secret=SECRET
        )
        svc = RetrainService(configured, store=store, backend=backend, clock=clock)
        service_module.set_service(svc)
        try:
            done, broken = submitted_runs(svc, store, 2)
            backend.states[done.job_name] = JobState(RunStatus.COMPLETED, "Completed")
            backend.states[broken.job_name] = JobState(RunStatus.FAILED, "Failed", error="x")
            for _ in range(3):  # down: every tick tries what is due, nothing is lost
                svc.sweep()
                clock.now += timedelta(minutes=5)
            assert len(receiver.deliveries) >= 2 and len(svc.ledger.outbox()) == 2

            receiver_back_up(svc, store, receiver, clock)
        finally:
            service_module.set_service(None)

    assert all(d.verified for d in receiver.deliveries)  # X-Retrain-Signature checks out
    events = [json.loads(d.raw) for d in receiver.deliveries]
    assert sorted(e["id"] for e in events) == sorted(
        [f"{done.run_id}:completed", f"{broken.run_id}:failed"]
    )
    assert {d.headers["Content-Type"] for d in receiver.deliveries} == {
        "application/cloudevents+json"
    }
    assert svc.ledger.outbox() == []


@dataclass
class PickySink(RecordingSink):
    """A sink that refuses for good (as a 410 does) or breaks (as an unsendable body does) on
    the events of the runs it is told to."""

    refuse: set[str] = field(default_factory=set)
    breaks: set[str] = field(default_factory=set)

    def send(self, event: dict[str, Any]) -> None:
        if event["subject"] in self.refuse:
            raise PermanentError("the webhook answered 410")
        if event["subject"] in self.breaks:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
        super().send(event)


def test_a_refused_or_unsendable_event_is_dead_lettered_and_blocks_no_other(
    notifying, store, backend
):
    refused, broken, fine = submitted_runs(notifying, store, 3)
    picky = PickySink(refuse={refused.run_id}, breaks={broken.run_id})
    notifying._sinks = {picky.name: picky}
    for run in (refused, broken, fine):
        backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")
    summary = notifying.sweep()  # the timer does not fail
    assert summary.notified == 1 and summary.notify_dead == 2 and summary.notify_retrying == 0
    assert [e["subject"] for e in picky.events] == [fine.run_id]
    assert notifying.ledger.outbox() == []  # never tried again
    dead = {e.props["sink"]: e for e in notifying.ledger.dead_letters()}
    reasons = sorted(e.props["error"] for e in notifying.ledger.dead_letters())
    assert len(reasons) == 2 and "UnicodeEncodeError" in reasons[0] and "410" in reasons[1]
    assert set(dead) == {"webhook"} and all(e.props["dead_at"] for e in dead.values())
    assert notifying.sweep().notify_dead == 0


def test_an_event_undelivered_past_its_maximum_age_is_dead_lettered(
    notifying, store, backend, sink, clock
):
    [run] = submitted_runs(notifying, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")
    sink.down = True
    assert notifying.sweep().notify_retrying == 1
    clock.now += timedelta(days=8)
    summary = notifying.sweep()
    assert summary.notify_dead == 1 and summary.notify_retrying == 0
    [dead] = notifying.ledger.dead_letters()
    assert "maximum age" in dead.props["error"] and notifying.ledger.outbox() == []


def test_a_tick_reads_only_the_rows_that_are_due(notifying, store, backend, sink, clock):
    runs = submitted_runs(notifying, store, 3)
    for run in runs:
        backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")
    sink.down = True
    assert notifying.sweep().notify_retrying == 3
    now = iso(clock.now)
    assert len(notifying.ledger.outbox()) == 3  # all of them are kept
    assert notifying.ledger.outbox(due_by=now) == []  # none is due: none is read
    later = iso(clock.now + timedelta(seconds=31))
    assert len(notifying.ledger.outbox(due_by=later)) == 3


def test_a_send_killed_midway_does_not_leave_its_row_first_in_line(notifying, store, backend):
    [run] = submitted_runs(notifying, store, 1)
    backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")

    @dataclass
    class Killed(RecordingSink):
        def send(self, event: dict[str, Any]) -> None:
            raise KeyboardInterrupt  # the host stops the tick mid-send

    notifying._sinks = {"webhook": Killed()}
    with pytest.raises(KeyboardInterrupt):
        notifying.sweep()
    [row] = notifying.ledger.outbox()
    assert row.props["next_at"] > iso(notifying.clock())  # moved back before the send
    assert notifying.ledger.outbox(due_by=iso(notifying.clock())) == []


def _hooked(settings, store, backend, clock, url: str, **limits: Any) -> RetrainService:
    """The service with the real webhook sink posting to ``url``, under ``limits``."""
    configured = replace(
        settings, notify_webhook_url=f"{url}/hook", notify_webhook_secret=SECRET, **limits
    )
    svc = RetrainService(configured, store=store, backend=backend, clock=clock)
    service_module.set_service(svc)
    return svc


@pytest.mark.parametrize("mode", ["trickle", "silent", "closed"])
def test_a_receiver_that_holds_a_send_holds_it_no_longer_than_its_deadline(
    settings, store, backend, clock, mode
):
    """A trickle of one byte at a time (each read within the socket timeout), a receiver that
    never answers, one that never accepts: each send ends at its own total deadline."""
    with Stalling(mode).serve() as receiver:
        svc = _hooked(settings, store, backend, clock, receiver.url, notify_send_seconds=1.0)
        try:
            [run] = submitted_runs(svc, store, 1)
            backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")
            summary = svc.sweep()
        finally:
            service_module.set_service(None)
    assert summary.notified == 0 and summary.notify_retrying == 1 and summary.notify_dead == 0
    [row] = svc.ledger.outbox()
    assert row.props["attempts"] == 1
    assert "the webhook did not answer within 1 s" in row.props["error"]


def test_due_rows_go_out_together_and_those_past_the_tick_deadline_stay_due(
    settings, store, backend, clock, caplog
):
    """Two sends at a time, each held to its 2 s by a receiver that never answers, in a tick of
    3 s: one round fits, the other rows are not started and stay due, first in line."""
    with Stalling("silent").serve() as receiver:
        svc = _hooked(
            settings, store, backend, clock, receiver.url,
            notify_send_seconds=2.0, notify_tick_seconds=3.0, notify_concurrency=2,
        )  # fmt: skip
        try:
            runs = submitted_runs(svc, store, 5)
            for run in runs:
                backend.states[run.job_name] = JobState(RunStatus.CANCELED, "Canceled")
            with caplog.at_level("WARNING"):
                summary = svc.sweep()
        finally:
            service_module.set_service(None)
    assert receiver.most_at_once == 2  # sent concurrently, never more than the pool
    assert summary.notified == 0 and summary.notify_retrying == 2
    now = iso(clock.now)
    still_due = svc.ledger.outbox(due_by=now)
    assert len(still_due) == 3 and all(row.props["attempts"] == 0 for row in still_due)
    assert len(svc.ledger.outbox()) == 5  # nothing lost
    assert "notify: 3 due events left for the next tick" in caplog.text
