"""The promotion rule (pure): first model, same-data comparison, a broken champion, the
minimum gain, ties, and metrics that hold no usable accuracy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrain.models.promotion import Champion, decide

CHAMPION = Champion(model="m", version="v1", run_id="r1", accuracy=0.9, since="t")


def metrics(accuracy: float, champion: float | None = 0.9, version: str | None = "v1") -> dict:
    return {"accuracy": accuracy, "champion": {"version": version, "accuracy": champion}}


def test_the_first_model_is_promoted():
    assert decide({"accuracy": 0.1}, None, 0.0).promoted


def test_a_better_model_on_the_same_data_is_promoted():
    verdict = decide(metrics(0.92), CHAMPION, 0.0)
    assert verdict.promoted and "+2.00 points" in verdict.reason


@pytest.mark.parametrize("accuracy", [0.9, 0.89])
def test_a_tie_or_worse_is_not_promoted(accuracy):
    verdict = decide(metrics(accuracy), CHAMPION, 0.0)
    assert not verdict.promoted and "promotion needs more than 0" in verdict.reason


def test_the_minimum_gain_counts():
    assert not decide(metrics(0.904), CHAMPION, 0.005).promoted
    assert decide(metrics(0.905), CHAMPION, 0.005).promoted


@pytest.mark.parametrize("version", ["v0", None])
def test_a_model_scored_against_another_champion_is_not_promoted(version):
    verdict = decide(metrics(0.99, version=version), CHAMPION, 0.0)
    assert not verdict.promoted and "never met on the same test data" in verdict.reason


@pytest.mark.parametrize(("accuracy", "promoted"), [(0.5, False), (0.95, True)])
def test_a_champion_that_could_not_be_scored_is_judged_by_its_recorded_accuracy(accuracy, promoted):
    scored = {"accuracy": accuracy, "champion": {"version": "v1", "accuracy": None, "error": "/x"}}
    verdict = decide(scored, CHAMPION, 0.0)
    assert verdict.promoted is promoted
    assert "the recorded accuracy of the champion (version v1), 90.00%" in verdict.reason
    assert "/x" not in verdict.reason  # the step's error (paths) stays in its metrics.json


@pytest.mark.parametrize("bad", [None, {}, {"accuracy": "0.9"}, {"accuracy": True},
                                 {"accuracy": math.nan}, {"accuracy": 1.5}])  # fmt: skip
def test_no_usable_accuracy_is_never_promoted(bad):
    assert not decide(bad, None, 0.0).promoted


@given(new=st.floats(0, 1), old=st.floats(0, 1), gain=st.floats(0, 0.5), less=st.floats(0, 1))
def test_a_promotion_needs_a_real_gain_and_holds_for_any_smaller_minimum(new, old, gain, less):
    verdict = decide(metrics(new, old), CHAMPION, gain)
    if new <= old:
        assert not verdict.promoted  # never a tie, never a loss
    if verdict.promoted:
        assert new - old >= gain - 1e-9
        assert decide(metrics(new, old), CHAMPION, gain * less).promoted
