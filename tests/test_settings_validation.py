"""Settings refused at startup, as a class: queue names by Azure's rule, learning rates that are
not finite, notification URLs that cannot be reached, a webhook secret with no webhook."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrain.errors import ConfigurationError
from retrain.settings import Settings

valid_queue = st.from_regex(r"\A[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}\Z").filter(
    lambda name: 3 <= len(name) <= 63
)


def queue_rule(name: str) -> bool:
    """Azure's queue naming rule, spelled out."""
    return (
        3 <= len(name) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name)
        and name[0] != "-"
        and name[-1] != "-"
        and "--" not in name
    )


@given(valid_queue)
def test_every_queue_name_azure_accepts_is_accepted(name):
    assert Settings.from_env({"SETTLE_QUEUE": name}).settle_queue == name


@given(st.text(alphabet="abcXYZ09-_ .", min_size=1, max_size=70))
def test_a_queue_name_is_accepted_exactly_when_azure_would(name):
    name = name.strip()
    if not name:
        return
    if queue_rule(name):
        assert Settings.from_env({"SETTLE_QUEUE": name}).settle_queue == name
    else:
        with pytest.raises(ConfigurationError, match="SETTLE_QUEUE: expected"):
            Settings.from_env({"SETTLE_QUEUE": name})


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "NaN", "Infinity", "1e999"])
def test_a_learning_rate_that_is_not_finite_is_refused(raw):
    with pytest.raises(ConfigurationError, match="TRAIN_LEARNING_RATE"):
        Settings.from_env({"TRAIN_LEARNING_RATE": raw})


@pytest.mark.parametrize("setting", ["NOTIFY_WEBHOOK_URL", "NOTIFY_EVENTGRID_ENDPOINT"])
@pytest.mark.parametrize(
    "url",
    ["https://hooks.example:99999/x", "https://hooks exa.example/x", "https:///x", "ftp://a.b/x",
     "https://hooks.example:port/x"],
)  # fmt: skip
def test_a_malformed_notification_url_is_refused_without_repeating_it(setting, url):
    env = {setting: url}
    if setting == "NOTIFY_WEBHOOK_URL":
        env["NOTIFY_WEBHOOK_SECRET"] = "s"
    with pytest.raises(ConfigurationError, match=setting) as refused:
        Settings.from_env(env)
    assert "hooks" not in str(refused.value)


def test_a_webhook_secret_without_a_webhook_is_refused():
    with pytest.raises(ConfigurationError, match="NOTIFY_WEBHOOK_SECRET: set without"):
        Settings.from_env({"NOTIFY_WEBHOOK_SECRET": "s"})


def test_well_formed_notification_urls_are_kept():
    env = {
        "NOTIFY_WEBHOOK_URL": "https://hooks.example:8443/x?token=t",
        "NOTIFY_WEBHOOK_SECRET": "s",
        "NOTIFY_EVENTGRID_ENDPOINT": "https://topic.westeurope-1.eventgrid.azure.net/api/events",
    }
    settings = Settings.from_env(env)
    assert settings.notify_webhook_url == env["NOTIFY_WEBHOOK_URL"]
    assert settings.notify_eventgrid_endpoint == env["NOTIFY_EVENTGRID_ENDPOINT"]
