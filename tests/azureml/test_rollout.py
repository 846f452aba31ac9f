"""The Azure ML rollout against the fake: the real SDK creates the endpoint and a deployment,
invokes it by name with the run's own test images (answered by the project's scoring code),
moves the traffic and deletes the old deployment; a fault at each step leaves the traffic on the
serving deployment; two promotions race; a crash between steps is resumed by the next tick."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pytest
from fake_azureml import FakeAzureML
from serving_helpers import NAME, build_model

from retrain.backends.azureml_serving import OnlineEndpoints, deployment_name
from retrain.clock import iso, utcnow
from retrain.data.fashion_mnist import write_batch
from retrain.ledger.records import RunRecord, RunStatus
from retrain.service import core as service_module
from retrain.serving.rollout import Rollouts, advance_rollouts
from retrain.serving.scoring import load_model
from retrain.serving.smoke import read_idx
from retrain.storage.tables import Op

EP = "fashion-ep"


class World:
    """The service (azureml backend, SERVE_ENDPOINT on), the fake, and runs to promote."""

    def __init__(self, service, fake: FakeAzureML, root: Path) -> None:
        self.service, self.fake, self.root = service, fake, root
        self.accuracy: dict[str, float] = {}

    def run(self, version: str, seed: int, recorded: float | None = None) -> None:
        """A Completed run ``version`` whose data version holds 256 test images, its model
        registered (the fake's deployments score with it) and its accuracy recorded."""
        batch = self.root / version
        write_batch(batch, 20, 256, seed=seed)
        settings = self.service.settings
        self.service.store.ensure_container(settings.datasets_container)
        for file in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            blob = f"{settings.data_asset_name}/{version}/{file}"
            self.service.store.put(settings.datasets_container, blob, (batch / file).read_bytes())
        folder = build_model(self.root / f"model-{version}", seed=seed)
        self.fake.serve_model(NAME, version, folder)
        images, labels = (
            read_idx(name, gzip.decompress((batch / f"{name}.gz").read_bytes()))
            for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        )
        answer = load_model(folder, NAME, version).answer(images)
        actual = float(np.mean([p["label"] for p in answer["predictions"]] == labels))
        self.accuracy[version] = actual
        now = iso(utcnow())
        self.service.ledger.create(
            RunRecord(
                run_id=version,
                source="landing/b",
                trigger="blob",
                status=RunStatus.COMPLETED,
                created_at=now,
                data_asset=f"{settings.data_asset_name}:{version}",
            )
        )
        self.promote(version, actual if recorded is None else recorded)

    def promote(self, version: str, accuracy: float) -> None:
        props = {"version": version, "run_id": version, "accuracy": accuracy, "since": "now"}
        self.service.ledger.table.transact([Op("upsert", f"champion|{NAME}", props)])

    def tick(self):
        return advance_rollouts(self.service)

    def state(self) -> dict:
        return self.rollouts().state() or {}

    def rollouts(self) -> Rollouts:
        service = self.service
        endpoints = OnlineEndpoints(service.settings)
        return Rollouts(service.settings, service.ledger, service.store, service.book, endpoints)

    def events(self) -> list[str]:
        rows = self.service.ledger.table.query("outbox|")
        return sorted(r.row.rsplit("|", 1)[1] for r in rows if ":deploy" in r.row)


@pytest.fixture
def world(azureml_app, use_fake: FakeAzureML, monkeypatch, tmp_path: Path):
    for name, value in {
        "SERVE_ENDPOINT": EP,
        "AZUREML_ENVIRONMENT": "fashion-train:1",
        "NOTIFY_WEBHOOK_URL": "https://127.0.0.1:9/hook",
        "NOTIFY_WEBHOOK_SECRET": "s3cret",
    }.items():
        monkeypatch.setenv(name, value)
    service_module.set_service(None)
    try:
        yield World(service_module.get_service(), use_fake, tmp_path)
    finally:
        use_fake.stop_scoring()
        service_module.set_service(None)


def v(version: str) -> str:
    return deployment_name(version)


def test_a_rollout_end_to_end(world: World) -> None:
    world.run("r1", seed=1)
    tick = world.tick()
    assert tick.deployed == 1, tick.lines
    assert world.fake.traffic(EP) == {v("r1"): 100}
    assert list(world.fake.deployments(EP)) == [v("r1")]
    state = world.state()
    assert state["step"] == "done" and state["serving"] == ""
    assert state["smoke"].startswith(f"{round(world.accuracy['r1'] * 256)} of 256 test images")
    deployment = world.fake.deployments(EP)[v("r1")]["properties"]
    assert deployment["environmentVariables"]["SERVE_MODEL_VERSION"] == "r1"
    assert deployment["instanceType"] == "Standard_DS3_v2"
    assert deployment["codeConfiguration"]["scoringScript"] == "azureml_score.py"
    assert world.fake._scoring.invocations == [(v("r1"), 256)]  # the smoke test, by name
    assert world.events() == [f"r1:deployed:{EP}"]
    assert world.tick().lines == []  # nothing more to do

    world.run("r2", seed=2)
    assert world.tick().deployed == 1
    assert world.fake.traffic(EP) == {v("r2"): 100}
    assert list(world.fake.deployments(EP)) == [v("r2")]  # the previous one deleted
    assert world.state()["serving"] == v("r1")
    assert world.events() == [f"r1:deployed:{EP}", f"r2:deployed:{EP}"]


def _serving_r1(world: World) -> None:
    world.run("r1", seed=1)
    assert world.tick().deployed == 1


@pytest.mark.parametrize(
    ("fault", "step"),
    [
        ("deployment PUT refused", "deploying"),
        ("provisioning Failed", "deploying"),
        ("smoke accuracy off", "smoke"),
        ("traffic update refused", "shift"),
    ],
)
def test_a_failure_at_any_step_leaves_the_traffic_and_removes_the_new_deployment(
    world: World, fault: str, step: str
) -> None:
    _serving_r1(world)
    recorded = 0.99 if fault == "smoke accuracy off" else None
    if fault == "deployment PUT refused":
        world.fake.fail_next(rf"/deployments/{v('r2')}$", 1, status=400, method="PUT")
    elif fault == "provisioning Failed":
        world.fake.fail_provisioning(v("r2"))
    elif fault == "traffic update refused":
        world.fake.fail_next(rf"/onlineEndpoints/{EP}$", 1, status=400, method="PUT")
    world.run("r2", seed=2, recorded=recorded)
    tick = world.tick()
    assert tick.failed == 1 and tick.deployed == 0, tick.lines
    assert world.fake.traffic(EP) == {v("r1"): 100}
    assert list(world.fake.deployments(EP)) == [v("r1")]
    state = world.state()
    assert state["step"] == "failed"
    expected = "smoke test: " if step == "smoke" else f"{step}: "
    assert state["reason"].startswith(expected) and "\n" not in state["reason"]
    assert world.events() == [f"r1:deployed:{EP}", f"r2:deploy_failed:{EP}"]
    assert world.tick().lines == []  # a failed rollout is not retried for the same champion


def test_the_endpoint_refused_fails_with_nothing_created(world: World) -> None:
    world.fake.fail_next(rf"/onlineEndpoints/{EP}$", 1, status=400, method="PUT")
    world.run("r1", seed=1)
    tick = world.tick()
    assert tick.failed == 1, "\n".join(tick.lines)
    assert world.fake.endpoint(EP) is None and world.state()["reason"].startswith("endpoint: ")


def test_an_outage_waits_for_the_next_tick(world: World) -> None:
    _serving_r1(world)
    world.run("r2", seed=2)
    world.fake.fail_next(rf"/deployments/{v('r1')}$", 20, status=503, method="DELETE")
    tick = world.tick()
    assert tick.deployed == 0 and tick.failed == 0
    assert world.state()["step"] == "cleanup"
    assert world.fake.traffic(EP) == {v("r2"): 100}
    world.fake.clear_faults()
    assert world.tick().deployed == 1
    assert list(world.fake.deployments(EP)) == [v("r2")]


def test_a_newer_promotion_supersedes_a_rollout_that_has_not_moved_traffic(world: World) -> None:
    _serving_r1(world)
    world.fake.hold_provisioning(v("r2"))
    world.run("r2", seed=2)
    world.tick()
    assert world.state()["step"] == "deploying"  # still Creating
    world.run("r3", seed=3)
    tick = world.tick()
    assert tick.failed == 1 and tick.deployed == 1, tick.lines
    assert world.fake.traffic(EP) == {v("r3"): 100}
    assert list(world.fake.deployments(EP)) == [v("r3")]
    assert world.events() == [f"r1:deployed:{EP}", f"r2:deploy_failed:{EP}", f"r3:deployed:{EP}"]


def test_two_ticks_racing_make_one_rollout(world: World) -> None:
    world.run("r1", seed=1)
    ticks, barrier = [], threading.Barrier(2)

    def tick() -> None:
        barrier.wait()
        ticks.append(world.rollouts().tick())

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(t.deployed for t in ticks) == 1 and sum(t.failed for t in ticks) == 0
    assert world.fake.traffic(EP) == {v("r1"): 100}
    assert world.events() == [f"r1:deployed:{EP}"]
    assert len(world.fake.calls("PUT", rf"/deployments/{v('r1')}$")) <= 2  # the same, twice


def test_a_crash_between_steps_is_resumed_by_the_next_tick(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The traffic moved, then the process died before it wrote so: the next tick repeats the
    step (idempotent) and goes on; never two deployments with traffic, never none."""
    _serving_r1(world)
    world.run("r2", seed=2)
    real_move = Rollouts._move

    def crash_after_shift(self, found, changes, tick):
        if found.props["step"] == "shift":
            raise SystemExit("crash")
        return real_move(self, found, changes, tick)

    monkeypatch.setattr(Rollouts, "_move", crash_after_shift)
    with pytest.raises(SystemExit):
        world.tick()
    assert world.fake.traffic(EP) == {v("r2"): 100} and world.state()["step"] == "shift"
    monkeypatch.setattr(Rollouts, "_move", real_move)
    assert world.tick().deployed == 1
    assert world.fake.traffic(EP) == {v("r2"): 100}
    assert list(world.fake.deployments(EP)) == [v("r2")]


def test_off_unless_serve_endpoint_is_set(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVE_ENDPOINT")
    service_module.set_service(None)
    world.service = service_module.get_service()
    world.run("r1", seed=1)
    assert world.tick().lines == [] and world.fake.endpoint(EP) is None


def test_the_endpoint_runs_as_serve_identity_when_it_is_set(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.fake.endpoint(EP) is None
    uai = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-serve"
    )
    monkeypatch.setenv("SERVE_IDENTITY", uai)
    service_module.set_service(None)
    world.service = service_module.get_service()
    _serving_r1(world)
    identity = world.fake.endpoint(EP)["identity"]
    assert identity["type"].lower() == "userassigned"
    assert [key.lower() for key in identity["userAssignedIdentities"]] == [uai.lower()]


def test_the_state_reads_in_one_line(world: World) -> None:
    from retrain.serving.rollout import describe

    _serving_r1(world)
    line = describe(world.state())
    assert line.startswith(f"rollout onto {EP}: version r1, done: serving 100% on {v('r1')} (")
    world.run("r2", seed=2, recorded=0.99)
    world.tick()
    assert describe(world.state()).endswith("traffic unchanged")


def test_a_deployment_that_never_provisions_fails_after_an_hour(world: World) -> None:
    _serving_r1(world)
    world.fake.hold_provisioning(v("r2"))
    world.run("r2", seed=2)
    world.tick()
    assert world.state()["step"] == "deploying"
    row = world.service.ledger.table.get(f"rollout|{EP}")
    hours_ago = iso(utcnow().replace(year=utcnow().year - 1))
    world.service.ledger.table.transact(
        [Op("replace", row.row, {**row.props, "updated_at": hours_ago}, etag=row.etag)]
    )
    tick = world.tick()
    assert tick.failed == 1
    assert world.state()["reason"].startswith("deploying: no progress for 60 minutes")
    assert world.fake.traffic(EP) == {v("r1"): 100}
    assert list(world.fake.deployments(EP)) == [v("r1")]


def test_the_timer_advances_the_rollout_and_the_models_listing_shows_it(world: World) -> None:
    world.run("r1", seed=1)
    summary = world.service.sweep()  # what sweep_runs calls each tick
    assert summary.deployed == 1 and summary.eventful
    assert world.fake.traffic(EP) == {v("r1"): 100}
    rollout = world.service.list_models(5)["rollout"]
    assert (rollout["endpoint"], rollout["version"], rollout["step"]) == (EP, "r1", "done")
    assert world.service.sweep().deployed == 0  # nothing more to do
