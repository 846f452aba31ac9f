"""Model delivery on Azurite with the real local registry: every completed run registers a
version; the champion changes only for a model that beat it on the same test data, at most once
per race; the record, GET /api/models, the command line and the registry's tags agree; the
next submission is scored against the champion; promotions are announced once."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apphelpers import (
    FakeBackend,
    batch_files,
    blob_event,
    http,
    receiver_back_up,
    submitted_runs,
    timer_tick,
    upload,
)
from receivers import Receiver

from retrain.backends.base import JobState, RunStatus
from retrain.backends.local_models import LocalModelRegistry
from retrain.errors import SubmissionError, TransientError
from retrain.ledger.records import RunRecord
from retrain.models.delivery import ModelBook
from retrain.service import core as service_module
from retrain.service.core import RetrainService
from retrain.settings import Settings
from retrain.storage.tables import Op

MODEL = "fashion-mnist-cnn"


@dataclass
class RegistryBackend(FakeBackend):
    """The fake Azure ML edge, with the real local registry beside it (``models``)."""

    models: Any = None


@pytest.fixture
def backend(settings: Settings) -> RegistryBackend:
    return RegistryBackend(models=LocalModelRegistry(settings))


def trained(settings: Settings, run: RunRecord, weights: bytes = b"weights") -> None:
    """What the pipeline's train step leaves: ``<runs>/<job>/train_node/output_model``."""
    assert run.job_name
    folder = Path(settings.local_runs_dir) / run.job_name / "train_node" / "output_model"
    folder.mkdir(parents=True)
    (folder / "predictor.pt").write_bytes(weights)
    (folder / "config.json").write_text('{"preset": "small"}')


def completes(
    backend: FakeBackend,
    run: RunRecord,
    accuracy: float,
    champion: tuple[str, float | None] | None = None,
    ended: str = "2026-01-01T12:00:00+00:00",
) -> None:
    """The job ends Completed with these score metrics (``champion``: version, accuracy)."""

    metrics: dict[str, Any] = {"accuracy": accuracy, "model": {"preset": "small"}}
    if champion is not None:
        metrics["champion"] = {"version": champion[0], "accuracy": champion[1]}
    backend.states[run.job_name] = JobState(
        RunStatus.COMPLETED, "Completed", metrics=metrics, ended_at=datetime.fromisoformat(ended)
    )


def raising(error: Exception) -> Any:
    """A stand-in for a registry or storage call that fails with ``error``."""

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return fail


def tags(settings: Settings, version: str) -> dict[str, str]:
    document = json.loads(
        (Path(settings.local_models_dir) / MODEL / version / "model.json").read_text()
    )
    return document["tags"]


def test_a_first_run_is_registered_and_promoted(service, store, backend, settings):
    [run] = submitted_runs(service, store, 1)
    trained(settings, run)
    completes(backend, run, 0.91)
    summary = service.sweep()
    assert (summary.completed, summary.promoted) == (1, 1)

    record = service.get_run(run.run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.model == {
        "name": MODEL,
        "version": run.run_id,
        "promoted": True,
        "reason": "the first model: there was no champion",
        "champion_before": None,
    }
    folder = Path(settings.local_models_dir) / MODEL / run.run_id
    assert (folder / "predictor.pt").read_bytes() == b"weights"
    assert tags(settings, run.run_id) == {
        "run_id": run.run_id,
        "source": run.source,
        "job_name": run.job_name,
        "data_asset": f"fashion-mnist:{run.run_id}",
        "accuracy": "0.9100",
        "preset": "small",
        "champion": "true",
    }
    status, body, _ = http("GET", "models")
    assert status == 200
    assert body["champion"]["version"] == run.run_id and body["champion"]["accuracy"] == 0.91
    assert [(v["version"], v["champion"], v["accuracy"]) for v in body["versions"]] == [
        (run.run_id, True, 0.91)
    ]
    assert service.ledger.active() == []


def test_the_next_submission_is_scored_against_the_champion(service, store, backend, settings):
    [first] = submitted_runs(service, store, 1)
    trained(settings, first)
    completes(backend, first, 0.91)
    service.sweep()
    container = settings.landing_container

    blob_event(store, upload(store, container, "next", batch_files(n_train=30))[0])
    request = backend.submits[-1]
    assert request.pipeline.champion_model == str(
        Path(settings.local_models_dir).resolve() / MODEL / first.run_id
    )
    assert request.pipeline.champion_version == first.run_id


def test_a_worse_model_is_registered_and_not_promoted(service, store, backend, settings):
    first, second = submitted_runs(service, store, 2)
    trained(settings, first)
    completes(backend, first, 0.91)
    service.sweep()
    trained(settings, second)
    completes(backend, second, 0.50, champion=(first.run_id, 0.90))
    assert service.sweep().promoted == 0

    model = service.get_run(second.run_id).model
    assert model is not None and model["version"] == second.run_id
    assert model["promoted"] is False and model["champion_before"] == first.run_id
    assert "-40.00 points against the champion" in model["reason"]
    assert service.list_models(20)["champion"]["version"] == first.run_id
    assert "champion" not in tags(settings, second.run_id)
    assert tags(settings, first.run_id)["champion"] == "true"


def test_a_better_model_takes_over_and_the_tag_moves(service, store, backend, settings):
    first, second = submitted_runs(service, store, 2)
    trained(settings, first)
    completes(backend, first, 0.90)
    service.sweep()
    trained(settings, second)
    completes(
        backend, second, 0.93, champion=(first.run_id, 0.89), ended="2026-01-02T00:00:00+00:00"
    )
    assert service.sweep().promoted == 1

    model = service.get_run(second.run_id).model
    assert model and model["promoted"] and model["champion_before"] == first.run_id
    assert "+4.00 points" in model["reason"]
    listing = service.list_models(20)
    assert listing["champion"]["version"] == second.run_id
    assert listing["champion"]["previous"] == first.run_id
    assert [(v["version"], v["champion"]) for v in listing["versions"]] == [
        (second.run_id, True),
        (first.run_id, False),
    ]
    assert tags(settings, second.run_id)["champion"] == "true"
    assert "champion" not in tags(settings, first.run_id)


@pytest.mark.parametrize(("gain", "promoted"), [(0.004, False), (0.006, True), (0.0, False)])
def test_the_minimum_gain_is_applied(settings, store, backend, clock, gain, promoted):
    strict = replace(settings, promote_min_gain=0.005)
    svc = RetrainService(strict, store=store, backend=backend, clock=clock)
    service_module.set_service(svc)
    try:
        first, second = submitted_runs(svc, store, 2)
        trained(settings, first)
        completes(backend, first, 0.90)
        svc.sweep()
        trained(settings, second)
        completes(backend, second, 0.90 + gain, champion=(first.run_id, 0.90))
        svc.sweep()
    finally:
        service_module.set_service(None)
    model = svc.get_run(second.run_id).model
    assert model and model["promoted"] is promoted


def test_two_runs_completing_in_one_tick_promote_at_most_one(service, store, backend, settings):
    runs = submitted_runs(service, store, 3)
    for i, run in enumerate(runs):  # all scored with no champion; the middle one ends first
        trained(settings, run)
        completes(backend, run, 0.9 + i / 100, ended=f"2026-01-01T12:0{(i + 1) % 3}:00+00:00")
    summary = service.sweep()
    assert (summary.completed, summary.promoted) == (3, 1)

    models = {run.run_id: service.get_run(run.run_id).model for run in runs}
    promoted = [run_id for run_id, model in models.items() if model and model["promoted"]]
    assert promoted == [runs[2].run_id]  # ended first (12:00)
    for run in runs[:2]:
        assert "they never met on the same test data" in models[run.run_id]["reason"]
    assert [v["champion"] for v in service.list_models(20)["versions"]].count(True) == 1
    assert sum("champion" in tags(settings, run.run_id) for run in runs) == 1


def test_a_promotion_racing_another_host_is_decided_again(
    service, store, backend, settings, monkeypatch
):
    """Another host writes the champion row between this completion's read of it and its
    write, twice: each time the guard fails and the completion is decided again on fresh reads
    (the second time guarded on the record row, which did not change), and it is still written
    whole in the end: its active row goes, and it beats the champion it was scored against."""
    [run] = submitted_runs(service, store, 1)
    trained(settings, run)
    completes(backend, run, 0.95, champion=("other", 0.5))
    book = service.book
    real = ModelBook.champion
    raced = []

    def champion_then_race(self):
        found = real(self)
        if len(raced) < 2:
            raced.append(True)
            other = {"version": "other", "run_id": "o", "accuracy": 0.5, "since": "x"}
            book.table.transact([Op("upsert", book.champion_row, other)])  # a new ETag
        return found

    monkeypatch.setattr(ModelBook, "champion", champion_then_race)
    assert service.sweep().promoted == 1

    record = service.get_run(run.run_id)
    assert len(raced) == 2 and record.status is RunStatus.COMPLETED
    assert record.model and record.model["promoted"] is True
    assert record.model["champion_before"] == "other"
    assert service.ledger.active() == []
    assert service.list_models(20)["champion"]["version"] == run.run_id


def test_a_run_with_nothing_to_register_completes_without_a_model(service, store, backend):
    [run] = submitted_runs(service, store, 1)  # no train output written
    completes(backend, run, 0.9)
    service.sweep()
    record = service.get_run(run.run_id)
    assert record.status is RunStatus.COMPLETED
    assert record.model and record.model["version"] is None and not record.model["promoted"]
    assert record.model["reason"].startswith("not registered: job ")
    assert service.list_models(20) == {"model": MODEL, "champion": None, "versions": [], "count": 0,
                                      "skipped": 0}  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [TransientError("the registry answered 503"),
     SubmissionError("register model: not authorized (HTTP 403)")],
    ids=["outage", "refusal"],
)  # fmt: skip
def test_registry_trouble_leaves_the_run_open_until_it_registers(
    service, store, backend, settings, monkeypatch, error
):
    """Only "the job left no model" completes a run without one; an outage or a refusal (a
    role not yet granted, say) leaves it open, so no model is lost, and a later tick registers
    it, once."""
    [run] = submitted_runs(service, store, 1)
    trained(settings, run)
    completes(backend, run, 0.9)
    real = LocalModelRegistry.register
    monkeypatch.setattr(LocalModelRegistry, "register", raising(error))
    assert service.sweep().errors == 1
    assert service.get_run(run.run_id).status is RunStatus.SUBMITTED
    monkeypatch.setattr(LocalModelRegistry, "register", real)
    assert service.sweep().promoted == 1
    for _ in range(2):  # repeated ticks: registered once, promoted once
        service.sweep()
    assert service.list_models(20)["count"] == 1


def test_the_api_and_the_command_line_agree(service, store, backend, settings, monkeypatch, capsys):
    first, second = submitted_runs(service, store, 2)
    for run, accuracy in ((first, 0.9), (second, 0.8)):
        trained(settings, run)
        completes(backend, run, accuracy, champion=(first.run_id, 0.9) if run is second else None)
        timer_tick()
    status, body, _ = http("GET", "models")
    assert status == 200 and body["count"] == 2

    from retrain.cli.main import main

    monkeypatch.setenv("DataStorage", settings.storage_connection or "")
    monkeypatch.setenv("RUNS_TABLE", settings.runs_table)
    monkeypatch.delenv("MODEL_NAME", raising=False)
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == body
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert f"champion version {first.run_id} (test accuracy 90.00%" in table
    assert f"{first.run_id} *" in table and "80.00%" in table
    status, body, _ = http("GET", "models", params={"limit": "0"})
    assert status == 400 and body["error"]["field"] == "limit"


def test_a_loopback_webhook_gets_the_promotion_once_signed_even_after_being_down(
    settings, store, backend, clock
):
    """The real webhook sink and a real HTTP receiver on 127.0.0.1, down (503) for the first
    ticks: the completion and the promotion each arrive once, signed; redelivered blob events
    and repeated sweeps add nothing."""

    secret = "promotion-secret"
    with Receiver(secret=secret, status=503).serve() as receiver:
        configured = replace(
            settings, notify_webhook_url=f"{receiver.url}/hook", notify_webhook_secret=secret
        )
        svc = RetrainService(configured, store=store, backend=backend, clock=clock)
        service_module.set_service(svc)
        try:
            [run] = submitted_runs(svc, store, 1)
            trained(settings, run)
            completes(backend, run, 0.9)
            for _ in range(2):  # down: nothing is lost
                svc.sweep()
                clock.now += timedelta(minutes=5)
            assert receiver.deliveries and len(svc.ledger.outbox()) == 2
            receiver_back_up(svc, store, receiver, clock)
        finally:
            service_module.set_service(None)

    assert all(d.verified for d in receiver.deliveries)
    events = [json.loads(d.raw) for d in receiver.deliveries]
    assert sorted(e["id"] for e in events) == [f"{run.run_id}:completed", f"{run.run_id}:promoted"]
    [promoted] = [e for e in events if e["id"].endswith(":promoted")]
    assert promoted["type"] == "fashion.retrain.model.promoted"
    assert promoted["subject"] == f"{MODEL}:{run.run_id}"
    assert promoted["data"]["model"]["promoted"] is True
    assert svc.ledger.outbox() == []


def test_the_champion_tag_follows_when_the_registry_comes_back(
    service, store, backend, settings, monkeypatch
):
    first, _still_active = submitted_runs(service, store, 2)
    trained(settings, first)
    completes(backend, first, 0.9)
    real = LocalModelRegistry.mark_champion

    monkeypatch.setattr(
        LocalModelRegistry, "mark_champion", raising(TransientError("the registry answered 503"))
    )
    summary = service.sweep()
    assert (summary.promoted, summary.errors) == (1, 1)
    assert service.list_models(20)["champion"]["registry_synced"] is False
    assert "champion" not in tags(settings, first.run_id)

    monkeypatch.setattr(LocalModelRegistry, "mark_champion", real)
    service.sweep()  # the second run is still active: the tick catches up
    assert service.list_models(20)["champion"]["registry_synced"] is True
    assert tags(settings, first.run_id)["champion"] == "true"


def test_the_tag_moves_from_the_version_that_carries_it(
    service, store, backend, settings, monkeypatch
):
    """A is tagged; B is promoted but the registry is down; C is promoted before it is back:
    the tag moves from A (the version that carries it), not from B (the one C replaced)."""
    a, b, c = submitted_runs(service, store, 3)
    for run in (a, b, c):
        trained(settings, run)
    completes(backend, a, 0.90)
    service.sweep()
    real = LocalModelRegistry.mark_champion

    monkeypatch.setattr(
        LocalModelRegistry, "mark_champion", raising(TransientError("the registry answered 503"))
    )
    completes(backend, b, 0.92, champion=(a.run_id, 0.90))
    service.sweep()
    completes(backend, c, 0.95, champion=(b.run_id, 0.91))
    service.sweep()
    champion = service.list_models(20)["champion"]
    assert (champion["version"], champion["registry_synced"]) == (c.run_id, False)
    assert tags(settings, a.run_id)["champion"] == "true"  # still on A

    monkeypatch.setattr(LocalModelRegistry, "mark_champion", real)
    service.sweep()  # nothing active: the idle tick catches up
    assert service.list_models(20)["champion"]["registry_synced"] is True
    assert [("champion" in tags(settings, r.run_id)) for r in (a, b, c)] == [False, False, True]


def test_two_hosts_both_seeing_no_champion_promote_once(
    settings, store, backend, clock, monkeypatch
):
    """Another host creates the first champion row after this completion read "none": the
    create fails, the completion is decided again, loses ("never met"), and announces no
    promotion; only the other host's version is champion."""
    configured = replace(
        settings, notify_webhook_url="https://hooks.example/x", notify_webhook_secret="s"
    )
    svc = RetrainService(configured, store=store, backend=backend, clock=clock)
    service_module.set_service(svc)
    try:
        [run] = submitted_runs(svc, store, 1)
    finally:
        service_module.set_service(None)
    trained(settings, run)
    completes(backend, run, 0.95)
    real = ModelBook.champion
    raced: list[bool] = []

    def none_then_another_host_promotes(self):
        found = real(self)
        if not raced:
            raced.append(True)
            other = {"version": "theirs", "run_id": "t", "accuracy": 0.8, "since": "x"}
            self.table.transact([Op("create", self.champion_row, other)])
        return found

    monkeypatch.setattr(ModelBook, "champion", none_then_another_host_promotes)
    svc.sweep()

    model = svc.get_run(run.run_id).model
    assert model and model["promoted"] is False and model["champion_before"] == "theirs"
    assert "never met on the same test data" in model["reason"]
    assert [row.row.rsplit("|", 1)[1] for row in svc.ledger.outbox()] == [f"{run.run_id}:completed"]
    assert svc.list_models(20)["champion"]["version"] == "theirs"


def test_a_tag_left_behind_by_a_failed_write_is_removed(
    service, store, backend, settings, monkeypatch
):
    """B is tagged but noting it in the ledger fails; C is promoted: tagging C untags every
    other version, so B does not keep a tag for good."""
    a, b, c = submitted_runs(service, store, 3)
    for run in (a, b, c):
        trained(settings, run)
    completes(backend, a, 0.90)
    service.sweep()
    real = ModelBook.mark_tagged

    monkeypatch.setattr(ModelBook, "mark_tagged", raising(TransientError("storage answered 503")))
    completes(backend, b, 0.92, champion=(a.run_id, 0.90))
    service.sweep()
    monkeypatch.setattr(ModelBook, "mark_tagged", real)
    completes(backend, c, 0.95, champion=(b.run_id, 0.91))
    service.sweep()
    assert [("champion" in tags(settings, r.run_id)) for r in (a, b, c)] == [False, False, True]
    assert service.list_models(20)["champion"]["registry_synced"] is True


def test_a_tag_that_cannot_be_set_is_noted_and_not_retried(
    service, store, backend, settings, monkeypatch
):

    first, _second = submitted_runs(service, store, 2)
    trained(settings, first)
    completes(backend, first, 0.9)
    real = LocalModelRegistry.mark_champion
    calls: list[str] = []

    def gone(self, name, version):
        calls.append(version)
        shutil.rmtree(Path(settings.local_models_dir) / name / version)  # deleted by hand
        return real(self, name, version)

    monkeypatch.setattr(LocalModelRegistry, "mark_champion", gone)
    summary = service.sweep()
    assert (summary.promoted, summary.errors) == (1, 1)
    champion = service.list_models(20)["champion"]
    assert champion["registry_synced"] is False
    assert (
        champion["registry_error"] == f"model {MODEL}:{first.run_id} is not in the local registry"
    )
    for _ in range(2):  # active and idle ticks alike: not retried
        service.sweep()
    assert calls == [first.run_id]
