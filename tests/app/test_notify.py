"""Run notifications: CloudEvents, HMAC signatures, and the sinks against loopback receivers
(a plain-HTTP webhook receiver that verifies signatures, an HTTPS Event Grid stand-in with a
throwaway trustme CA, driven by the real azure-eventgrid client)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from receivers import Receiver

from retrain.errors import ConfigurationError, PermanentError, TransientError
from retrain.notify import (
    HEADER,
    PROMOTED,
    EventGridSink,
    WebhookSink,
    body,
    cloud_event,
    event_id,
    event_type,
    signature,
    sinks_from_settings,
    verify,
)
from retrain.settings import PROJECT_ROOT, Settings

SECRET = "s3cret-signing-key"
TOKEN = "url-token-do-not-leak"  # a webhook URL may carry one in its query
SOURCE = "/fashion-retrain/landing"
STATUSES = ("Completed", "Failed", "Canceled", "Rejected")
RUN = "0123456789abcdef"
TOPIC = "https://topic.westeurope-1.eventgrid.azure.net/api/events"
WHEN = datetime(2026, 11, 30, 21, 5, 7, 123000, tzinfo=timezone.utc)


class StaticCredential:
    """A TokenCredential with a fixed token; records the scopes asked for."""

    token = "fake-eventgrid-token"

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def a_record(status: str) -> dict[str, Any]:
    return {"run_id": RUN, "status": status, "metrics": {"accuracy": 0.91}, "reason": None}


def an_event(status: str = "Completed") -> dict[str, Any]:
    kind = event_type(status)
    data = a_record(status)
    return cloud_event(
        id=event_id(RUN, status), source=SOURCE, type=kind, subject=RUN, data=data, time=WHEN
    )


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_clean(error: BaseException) -> None:
    """No URL, token or secret in the message, nor in a chained cause a traceback would print."""
    text = f"{error!s} {error!r}"
    assert TOKEN not in text and SECRET not in text and "/hook" not in text
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with Receiver(secret=SECRET).serve() as receiver:
        yield receiver


@pytest.fixture
def ca(test_ca: tuple[trustme.CA, str]) -> tuple[trustme.CA, str]:
    return test_ca


@pytest.fixture
def eventgrid(ca, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """An HTTPS stand-in for a topic's endpoint; the SDK's transport trusts the test CA."""
    authority, ca_file = ca
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    with Receiver().serve(authority) as receiver:
        yield receiver


@pytest.mark.parametrize("status", STATUSES)
def test_a_run_event_is_a_cloudevent_with_the_status_type_and_the_record(status):
    event = an_event(status)

    assert event == {
        "specversion": "1.0",
        "id": f"0123456789abcdef:{status}",
        "source": SOURCE,
        "type": f"fashion.retrain.run.{status.lower()}",
        "subject": "0123456789abcdef",
        "time": "2026-11-30T21:05:07.123Z",
        "datacontenttype": "application/json",
        "data": a_record(status),
    }


def test_a_promotion_event_and_a_default_time_in_utc():
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    event = cloud_event(
        id=event_id("r1", "promoted"), source=SOURCE, type=PROMOTED, subject="r1", data={}
    )
    assert (event["type"], event["id"]) == ("fashion.retrain.model.promoted", "r1:promoted")
    assert event["time"].endswith("Z")
    assert datetime.fromisoformat(event["time"].replace("Z", "+00:00")) >= before


@pytest.mark.parametrize("status", ["Running", "Submitted", "Waiting", "completed"])
def test_only_terminal_statuses_have_an_event_type(status):
    with pytest.raises(ValueError, match=status):
        event_type(status)


def test_a_bad_type_or_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        cloud_event(id="x", source=SOURCE, type="fashion.retrain.run.odd", subject="x", data={})
    with pytest.raises(ValueError, match="timezone-aware"):
        cloud_event(
            id="x", source=SOURCE, type=PROMOTED, subject="x", data={}, time=datetime(2026, 1, 1)
        )


def test_the_body_is_compact_sorted_and_the_same_for_the_same_event():
    event = an_event()
    reordered = dict(reversed(list(event.items())))
    raw = body(event)

    assert raw == body(reordered)
    assert json.loads(raw) == event
    assert b", " not in raw and b": " not in raw  # compact
    assert list(json.loads(raw)) == sorted(event)


def test_a_signature_verifies_only_the_body_and_secret_it_was_made_for():
    raw = body(an_event())
    header = signature(raw, SECRET)

    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify(raw, SECRET, header)
    assert not verify(raw.replace(b"0.91", b"0.99"), SECRET, header)  # tampered body
    assert not verify(raw, "another-secret", header)
    assert not verify(raw, SECRET, None)
    assert not verify(raw, SECRET, "sha256=")
    assert not verify(raw, SECRET, "sha256=ünïcode")


def test_a_webhook_event_arrives_signed_and_verifies(webhook: Receiver):
    event = an_event()
    WebhookSink(f"{webhook.url}/hooks/retrain?token={TOKEN}", SECRET).send(event)

    [delivery] = webhook.deliveries
    assert delivery.verified is True
    assert delivery.raw == body(event) and json.loads(delivery.raw) == event
    assert delivery.path == "/hooks/retrain" and delivery.query == {"token": [TOKEN]}
    assert delivery.headers["Content-Type"] == "application/cloudevents+json"
    assert delivery.headers[HEADER] == signature(body(event), SECRET)


def test_a_receiver_with_another_secret_rejects_the_body(webhook: Receiver):
    WebhookSink(webhook.url, "not-the-receivers-secret").send(an_event())

    [delivery] = webhook.deliveries
    assert delivery.verified is False


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_busy_or_failing_receiver_is_transient_and_left_to_the_outbox(webhook, status):
    webhook.status = status
    webhook.headers = {"Retry-After": "1"}
    sink = WebhookSink(f"{webhook.url}/hook?token={TOKEN}", SECRET)
    with pytest.raises(TransientError, match=f"the webhook answered {status}") as raised:
        sink.send(an_event())
    assert len(webhook.deliveries) == 1  # no in-call retry of an answer, Retry-After or not
    assert_clean(raised.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [(302, PermanentError), (400, PermanentError), (404, PermanentError), (413, PermanentError),
     (401, ConfigurationError), (403, ConfigurationError)],
)  # fmt: skip
def test_a_refusal_is_permanent_and_a_redirect_is_not_followed(webhook, status, error):
    webhook.status = status
    webhook.headers = {"Location": f"{webhook.url}/elsewhere"}
    with pytest.raises(error, match=str(status)) as raised:
        WebhookSink(f"{webhook.url}/hook?token={TOKEN}", SECRET).send(an_event())
    assert not isinstance(raised.value, TransientError)
    assert [d.path for d in webhook.deliveries] == ["/hook"]
    assert_clean(raised.value)


def test_a_receiver_that_is_down_is_transient():
    sink = WebhookSink(f"http://localhost:{closed_port()}/hook?token={TOKEN}", SECRET)
    with pytest.raises(TransientError, match="the webhook could not be reached") as raised:
        sink.send(an_event())
    assert_clean(raised.value)


def test_a_receiver_too_slow_to_answer_is_transient(webhook: Receiver):
    webhook.delay = 1.5
    sink = WebhookSink(f"{webhook.url}/hook?token={TOKEN}", SECRET, timeout=0.3)
    with pytest.raises(TransientError, match="the webhook did not answer in time") as raised:
        sink.send(an_event())
    assert_clean(raised.value)


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/retrain", "ftp://127.0.0.1/x", "hooks.example.com/retrain",
     "http://[::1/x"],
)  # fmt: skip
def test_a_webhook_url_must_be_https_unless_loopback(url):
    with pytest.raises(ConfigurationError, match="NOTIFY_WEBHOOK_URL") as raised:
        WebhookSink(f"{url}?token={TOKEN}", SECRET)
    assert TOKEN not in str(raised.value) and "example" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/retrain", "http://localhost:8080/x", "http://[::1]:9/x"]
)
def test_https_or_loopback_http_is_accepted(url):
    assert WebhookSink(url, SECRET).name == "webhook"


def test_a_webhook_url_without_a_secret_names_the_missing_setting():
    env = {"NOTIFY_WEBHOOK_URL": f"https://hooks.example.com/x?token={TOKEN}"}
    with pytest.raises(ConfigurationError, match="NOTIFY_WEBHOOK_SECRET") as raised:
        sinks_from_settings(Settings.from_env(env))
    assert TOKEN not in str(raised.value)


def test_settings_turn_on_each_sink(webhook: Receiver):
    assert sinks_from_settings(Settings.from_env({})) == []
    env = {"NOTIFY_WEBHOOK_URL": webhook.url, "NOTIFY_WEBHOOK_SECRET": SECRET}
    env["NOTIFY_EVENTGRID_ENDPOINT"] = TOPIC
    sinks = sinks_from_settings(Settings.from_env(env))
    assert [sink.name for sink in sinks] == ["webhook", "eventgrid"]
    sinks[0].send(an_event("Failed"))
    [delivery] = webhook.deliveries
    assert delivery.verified and json.loads(delivery.raw)["type"] == "fashion.retrain.run.failed"


def test_importing_and_configuring_loads_no_eventgrid_or_identity_sdk():
    code = f"""
import sys
from retrain.notify import sinks_from_settings
from retrain.settings import Settings
heavy = [m for m in sys.modules if m.startswith(("azure", "requests"))]
assert not heavy, heavy
env = {{"NOTIFY_EVENTGRID_ENDPOINT": "{TOPIC}", "AZURE_CLIENT_ID": "abc"}}
[sink] = sinks_from_settings(Settings.from_env(env))
late = [m for m in sys.modules if m.startswith(("azure.eventgrid", "azure.identity"))]
assert not late, late
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_an_event_lands_on_the_topic_with_a_bearer_token(eventgrid: Receiver):
    credential = StaticCredential()
    sink = EventGridSink(f"{eventgrid.url}/api/events", credential)
    event = an_event("Canceled")
    try:
        sink.send(event)
    finally:
        sink.close()

    [delivery] = eventgrid.deliveries
    assert delivery.path == "/api/events" and delivery.query["api-version"]
    assert delivery.headers["Authorization"] == f"Bearer {credential.token}"
    assert delivery.headers["Content-Type"].startswith("application/cloudevents-batch+json")
    assert json.loads(delivery.raw) == [event]  # the same CloudEvent, in a batch of one
    assert credential.scopes == [("https://eventgrid.azure.net/.default",)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, TransientError), (429, TransientError), (400, PermanentError),
     (403, ConfigurationError)],
)  # fmt: skip
def test_topic_answers_map_to_the_error_tree(eventgrid: Receiver, status, error):
    eventgrid.status = status
    sink = EventGridSink(f"{eventgrid.url}/api/events", StaticCredential())
    with pytest.raises(error, match=f"Event Grid .*{status}"):
        sink.send(an_event())
    assert len(eventgrid.deliveries) == 1


def test_a_topic_that_is_down_is_transient(ca, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca[1])
    sink = EventGridSink(f"https://127.0.0.1:{closed_port()}/api/events", StaticCredential())
    with pytest.raises(TransientError, match="Event Grid could not be reached"):
        sink.send(an_event())


def test_an_eventgrid_endpoint_must_be_https():
    with pytest.raises(ConfigurationError, match="NOTIFY_EVENTGRID_ENDPOINT"):
        EventGridSink("http://127.0.0.1:9/api/events", StaticCredential())


@pytest.mark.parametrize(
    ("env", "named"),
    [({"NOTIFY_TICK_SECONDS": "600"}, "NOTIFY_TICK_SECONDS: at most 480"),
     ({"NOTIFY_SEND_SECONDS": "60", "NOTIFY_TICK_SECONDS": "30"}, "NOTIFY_SEND_SECONDS: at most"),
     ({"NOTIFY_SEND_SECONDS": "0"}, "NOTIFY_SEND_SECONDS: must be positive"),
     ({"NOTIFY_CONCURRENCY": "0"}, "NOTIFY_CONCURRENCY: must be at least 1")],
)  # fmt: skip
def test_delivery_limits_that_cannot_fit_a_tick_are_refused_at_startup(env, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(env)


def test_a_sink_built_from_settings_keeps_to_the_send_deadline():
    """A receiver that never answers, behind a socket timeout of 10 s: the send still ends at
    NOTIFY_SEND_SECONDS."""
    from receivers import Stalling

    with Stalling("silent").serve() as receiver:
        settings = Settings.from_env(
            {"NOTIFY_WEBHOOK_URL": f"{receiver.url}/hook", "NOTIFY_WEBHOOK_SECRET": SECRET,
             "NOTIFY_SEND_SECONDS": "0.5"}
        )  # fmt: skip
        [sink] = sinks_from_settings(settings)
        with pytest.raises(TransientError, match=r"did not answer within 0\.5 s") as raised:
            sink.send(an_event())
    assert_clean(raised.value)
    assert receiver.requests == 1  # a read that timed out is not sent again
