"""What is stored or sent is strict, bounded JSON: no NaN or Infinity, no lone surrogate, no
nesting past the bound, no huge integer, no text over the limit of the place it goes; one run
whose change cannot be stored harms only itself; a score step's odd metrics are cleaned (what was
left out is named) and the run still completes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from apphelpers import http, records, submitted_runs, timer_tick
from hypothesis import given
from hypothesis import strategies as st

from retrain.backends.base import JobState, RunStatus
from retrain.ledger.encoding import MAX_DEPTH, Unencodable, clean_metrics, dumps
from retrain.notify.events import body


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` as a strict parser reads: NaN and Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


ODD = {
    "nan": math.nan,
    "inf": -math.inf,
    "huge": 10**400,
    "surrogate": "x\udc80y",
    "deep": nested(900),
    "long": "z" * 40_000,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_what_dumps_writes_any_strict_parser_reads_back_and_what_it_refuses_is_named(value):
    try:
        text = dumps(value)
    except Unencodable as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert strict_loads(text) == value
    text.encode("utf-8")  # never a lone surrogate


@given(st.sampled_from(sorted(ODD)), st.integers(min_value=0, max_value=3))
def test_each_odd_value_is_refused_wherever_it_sits(name, depth):
    limit = None if name != "long" else 32_000
    with pytest.raises(Unencodable):
        dumps(nested(depth) | {"odd": ODD[name]} if depth else {"odd": ODD[name]}, max_chars=limit)


def test_nesting_up_to_the_bound_is_fine_and_past_it_is_refused():
    assert strict_loads(dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    with pytest.raises(Unencodable, match="nested"):
        dumps(nested(MAX_DEPTH + 1))


@given(st.dictionaries(st.sampled_from(sorted(ODD)), st.just(0)))
def test_clean_metrics_keeps_what_is_sound_and_names_each_thing_it_left_out(names):
    metrics: dict[str, Any] = {"accuracy": 0.9, **{name: ODD[name] for name in names}}
    kept, dropped = clean_metrics(metrics)
    assert kept == {"accuracy": 0.9}
    assert len(dropped) == len(names) and all(isinstance(d, str) for d in dropped)
    dumps({"kept": kept, "dropped": dropped})  # both can be stored


def test_the_webhook_body_refuses_nan():
    with pytest.raises(Unencodable):
        body({"id": "e1", "data": {"accuracy": math.nan}})


def test_one_run_too_large_to_store_harms_only_itself(service, store):
    big, fine = submitted_runs(service, store, 2)
    ledger = service.ledger
    found = {s.run_id: s for s in ledger.active() if not isinstance(s, type(None))}
    results = ledger.write_many(
        [
            (found[big.run_id], lambda r: replace(r, reason="x" * 40_000)),
            (found[fine.run_id], lambda r: replace(r, status=RunStatus.RUNNING)),
        ]
    )
    assert isinstance(results[0], Unencodable) and "too large" in str(results[0])
    assert ledger.get(fine.run_id).status is RunStatus.RUNNING
    assert ledger.get(big.run_id) == big


def test_odd_metrics_are_cleaned_and_every_run_still_completes(service, store, backend):
    runs = submitted_runs(service, store, len(ODD) + 1)
    for run, name in zip(runs, [*sorted(ODD), "healthy"], strict=True):
        metrics = {"accuracy": 0.9, name: ODD.get(name, 1)}
        backend.states[run.job_name] = JobState(RunStatus.COMPLETED, "Completed", metrics)

    timer_tick()
    done = {r.run_id: r for r in records(service)}
    assert all(r.status is RunStatus.COMPLETED for r in done.values())
    assert service.ledger.active() == []
    for run, name in zip(runs, [*sorted(ODD), "healthy"], strict=True):
        metrics = done[run.run_id].metrics
        assert metrics["accuracy"] == 0.9
        if name == "healthy":
            assert metrics == {"accuracy": 0.9, "healthy": 1}
        else:
            assert name not in metrics and len(metrics["left_out"]) == 1
        status, answer, _ = http("GET", f"retrain/{run.run_id}")
        assert status == 200 and answer["metrics"]["accuracy"] == 0.9
