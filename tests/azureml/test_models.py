"""Model delivery on Azure ML, through the service and the real SDK against the loopback fake:
each Completed run's train step becomes a model version (lineage to its job and data), the
champion is tagged in the registry, and the next run is scored against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_azureml import WORKSPACE_PATH, FakeAzureML

from retrain.backends import RunStatus
from retrain.backends.azureml_errors import translate
from retrain.data.fashion_mnist import write_batch
from retrain.errors import PermanentError
from retrain.ledger.records import RunRecord
from retrain.service.core import RetrainService

MODEL = "fashion-mnist-cnn"


def land(svc: RetrainService, tmp_path: Path, batch: str) -> RunRecord:
    """Land a batch's four files and deliver their blob events: the run, as submitted."""
    landing = svc.settings.landing_container
    svc.store.ensure_container(landing)
    files = sorted(write_batch(tmp_path / batch, n_train=20, n_test=10).values())
    for path in files:
        svc.store.put(landing, f"{batch}/{path.name}", path.read_bytes())
    outcome = svc.handle_blob(f"{landing}/{batch}/{files[-1].name}")
    assert outcome.action == "submitted" and outcome.run_id, outcome
    return svc.get_run(outcome.run_id)


def finish(fake: FakeAzureML, run: RunRecord, metrics: dict[str, Any]) -> None:
    assert run.job_name
    fake.complete_job(run.job_name, {"metrics.json": json.dumps(metrics).encode()})


def model_puts(fake: FakeAzureML, version: str | None = None) -> list[Any]:
    return fake.calls("PUT", rf"^/models/{MODEL}/versions/{version or '[^/]+'}$")


def train_step(fake: FakeAzureML, run: RunRecord) -> str:
    """The run id of the train step of the run's pipeline job, as run history lists it."""
    assert run.job_name
    return str(fake.child(run.job_name, "train_node")["runId"])


def test_a_completed_run_registers_its_train_steps_model_as_the_first_champion(
    azureml_app, use_fake, tmp_path
):
    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    finish(use_fake, run, {"accuracy": 0.91, "count": 10})

    summary = svc.sweep()

    assert (summary.completed, summary.promoted, summary.errors) == (1, 1, 0)
    create, tag = model_puts(use_fake)
    assert (create.tail, create.status) == (f"/models/{MODEL}/versions/{run.run_id}", 201)
    sent = create.body["properties"]
    assert sent["modelUri"] == f"azureml://jobs/{train_step(use_fake, run)}/outputs/output_model"
    assert sent["modelType"] == "custom_model"
    assert sent["tags"] == {
        "run_id": run.run_id,
        "source": run.source,
        "job_name": run.job_name,
        "data_asset": run.data_asset,
        "accuracy": "0.9100",
    }
    done = svc.get_run(run.run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.model == {
        "name": MODEL,
        "version": run.run_id,
        "promoted": True,
        "reason": "the first model: there was no champion",
        "champion_before": None,
    }
    listing = svc.list_models(20)
    assert listing["champion"]["version"] == run.run_id
    assert listing["champion"]["registry_synced"] is True
    assert [(v["version"], v["champion"]) for v in listing["versions"]] == [(run.run_id, True)]
    # The registry shows it too: the same version again, same path, tagged champion.
    assert (tag.tail, tag.status) == (create.tail, 200)
    assert tag.body["properties"]["modelUri"] == sent["modelUri"]
    assert tag.body["properties"]["tags"] == {**sent["tags"], "champion": "true"}
    stored = use_fake.model(MODEL, run.run_id)
    assert stored is not None and stored["properties"]["tags"]["champion"] == "true"


def test_a_second_sweep_registers_nothing_more(azureml_app, use_fake, tmp_path):
    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    finish(use_fake, run, {"accuracy": 0.9})
    svc.sweep()
    puts, listings = len(model_puts(use_fake)), len(use_fake.calls("GET", r"/children$"))

    assert svc.sweep().active == 0
    assert svc.sweep().active == 0
    again = svc.backend.models.register(MODEL, run.run_id, run.job_name, {})  # type: ignore[attr-defined]

    assert (len(model_puts(use_fake)), len(use_fake.calls("GET", r"/children$"))) == (
        puts,
        listings,
    )
    assert again.version == run.run_id and again.tags["champion"] == "true"


def test_a_registry_outage_leaves_the_run_open_until_the_next_tick(azureml_app, use_fake, tmp_path):
    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    assert run.job_name
    use_fake.set_job_status(run.job_name, "Running")
    svc.sweep()
    finish(use_fake, run, {"accuracy": 0.9})
    use_fake.fail_next(rf"/models/{MODEL}/versions/{run.run_id}$", count=50, method="PUT")

    summary = svc.sweep()

    assert (summary.completed, summary.errors) == (0, 1)
    assert svc.get_run(run.run_id).status is RunStatus.RUNNING
    assert {p.status for p in model_puts(use_fake)} == {503}
    assert svc.list_models(20)["versions"] == []

    use_fake.clear_faults()  # the registry is back
    summary = svc.sweep()

    assert (summary.completed, summary.promoted, summary.errors) == (1, 1, 0)
    done = svc.get_run(run.run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.model and done.model["version"] == run.run_id and done.model["promoted"]
    assert [p.status for p in model_puts(use_fake) if p.status < 300] == [201, 200]


def test_the_next_run_is_scored_against_the_champion_and_replaces_it(
    azureml_app, use_fake, tmp_path
):
    svc = azureml_app
    first = land(svc, tmp_path, "batch-1")
    finish(use_fake, first, {"accuracy": 0.9})
    svc.sweep()

    second = land(svc, tmp_path, "batch-2")

    job_put = use_fake.calls("PUT", rf"^/jobs/{second.job_name}$")[0]
    inputs = job_put.body["properties"]["jobs"]["score_node"]["inputs"]
    assert inputs["champion_model"] == {
        "uri": f"{WORKSPACE_PATH}/models/{MODEL}/versions/{first.run_id}",
        "job_input_type": "custom_model",
    }
    assert inputs["champion_version"] == {"value": first.run_id, "job_input_type": "literal"}

    finish(
        use_fake, second, {"accuracy": 0.93, "champion": {"version": first.run_id, "accuracy": 0.9}}
    )
    summary = svc.sweep()

    assert (summary.completed, summary.promoted) == (1, 1)
    model = svc.get_run(second.run_id).model
    assert model is not None
    assert (model["version"], model["promoted"], model["champion_before"]) == (
        second.run_id,
        True,
        first.run_id,
    )
    assert model["reason"].startswith(f"beats the champion (version {first.run_id}) by +3.00")
    (created,) = [p for p in model_puts(use_fake, second.run_id) if p.status == 201]
    uri = created.body["properties"]["modelUri"]
    assert uri == f"azureml://jobs/{train_step(use_fake, second)}/outputs/output_model"
    assert train_step(use_fake, first) not in uri
    # The champion tag moved: off the old version (by a PUT without it), onto the new one.
    untag = model_puts(use_fake, first.run_id)[-1]
    assert "champion" not in untag.body["properties"]["tags"]
    old, new = use_fake.model(MODEL, first.run_id), use_fake.model(MODEL, second.run_id)
    assert old is not None and new is not None
    assert "champion" not in old["properties"]["tags"]
    assert new["properties"]["tags"]["champion"] == "true"
    champion = svc.list_models(20)["champion"]
    assert (champion["version"], champion["previous"]) == (second.run_id, first.run_id)


def test_a_job_without_a_train_step_completes_with_no_model(azureml_app, use_fake, tmp_path):
    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    assert run.job_name
    use_fake.children(run.job_name).clear()  # run history lists no steps
    finish(use_fake, run, {"accuracy": 0.9})

    summary = svc.sweep()

    assert (summary.completed, summary.promoted, summary.errors) == (1, 0, 0)
    done = svc.get_run(run.run_id)
    assert done.status is RunStatus.COMPLETED
    assert done.model is not None and done.model["version"] is None
    assert done.model["promoted"] is False
    assert done.model["reason"].startswith("not registered: ")
    assert "has no train_node step" in done.model["reason"]
    assert not model_puts(use_fake)
    assert svc.list_models(20)["champion"] is None


def test_the_train_step_is_found_by_its_display_name_not_its_node_id(
    backend, use_fake, make_request
):
    request = make_request("batch-1")
    backend.submit(request)
    use_fake.complete_job(request.job_name, {})
    steps = use_fake.children(request.job_name)
    assert [c["displayName"] for c in steps] == ["prepare_data_node", "train_node", "score_node"]
    assert all(len(c["properties"]["azureml.nodeid"]) == 8 for c in steps)
    decoy = {**steps[1], "runId": "decoy", "displayName": "debug_node"}  # listed first, with
    decoy["properties"] = {**decoy["properties"], "azureml.nodeid": "train_node"}  # our key
    steps.insert(0, decoy)

    version = backend.models.register(MODEL, request.run_id, request.job_name, {})

    train = use_fake.child(request.job_name, "train_node")["runId"]
    assert version.path == f"azureml://jobs/{train}/outputs/output_model"
    children = list(backend.models.client.jobs.list(parent_job_name=request.job_name))
    assert {c.status for c in children} == {"Completed"}  # they follow their pipeline job


def test_a_reused_train_step_registers_the_model_of_the_run_that_wrote_it(
    backend, use_fake, make_request
):
    request = make_request("batch-1")
    backend.submit(request)
    use_fake.complete_job(request.job_name, {})
    use_fake.reuse_step(request.job_name, "train_node", "0c4e6a2b-earlier-train-step")

    version = backend.models.register(MODEL, request.run_id, request.job_name, {})

    assert version.path == "azureml://jobs/0c4e6a2b-earlier-train-step/outputs/output_model"
    (created,) = model_puts(use_fake)
    assert created.body["properties"]["modelUri"] == version.path


def test_a_model_versions_path_cannot_be_changed(backend, use_fake, make_request):
    from azure.ai.ml.entities import Model

    request = make_request("batch-1")
    backend.submit(request)
    use_fake.complete_job(request.job_name, {})
    registered = backend.models.register(MODEL, request.run_id, request.job_name, {"a": "1"})
    client = backend.models.client
    moved = Model(name=MODEL, version=request.run_id, path="azureml://jobs/other/outputs/x")

    refused = pytest.raises(PermanentError, match=r"HTTP 400: \(UserError\) Asset paths cannot be")
    with refused, translate("re-register"):
        client.models.create_or_update(moved)

    model = client.models.get(MODEL, request.run_id)
    assert model.path == registered.path
    model.description, model.tags = "retagged", {"a": "2"}  # tags and description may change
    updated = client.models.create_or_update(model)
    assert (updated.path, updated.description, updated.tags) == (
        registered.path,
        "retagged",
        {"a": "2"},
    )


def test_a_champion_tag_that_failed_is_set_by_a_later_tick_with_nothing_active(
    azureml_app, use_fake, tmp_path
):
    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    finish(use_fake, run, {"accuracy": 0.9})
    path = rf"/models/{MODEL}/versions/{run.run_id}$"
    use_fake.fail_next(path, count=1, status=404, method="GET")  # registering: not there yet
    use_fake.fail_next(path, count=50, method="GET")  # tagging: the registry is down

    summary = svc.sweep()

    assert (summary.completed, summary.promoted, summary.errors) == (1, 1, 1)
    assert svc.list_models(20)["champion"]["registry_synced"] is False
    use_fake.clear_faults()

    svc.sweep()  # nothing is active any more

    assert svc.list_models(20)["champion"]["registry_synced"] is True
    stored = use_fake.model(MODEL, run.run_id)
    assert stored is not None and stored["properties"]["tags"].get("champion") == "true"


def test_a_version_another_host_registered_meanwhile_is_taken_as_it_is(
    azureml_app, use_fake, tmp_path, monkeypatch
):
    """Both hosts saw no version; the other one's create landed first and the service refuses
    ours (409): the version registered is the run's model all the same."""
    from retrain.backends import azureml_models

    svc = azureml_app
    run = land(svc, tmp_path, "batch-1")
    finish(use_fake, run, {"accuracy": 0.91})
    real = azureml_models._get_model
    reads: list[str] = []

    def not_yet_then_real(client, name, version):
        reads.append(version)
        if len(reads) == 1:  # our first look: before the other host's create
            return None
        return real(client, name, version)

    monkeypatch.setattr(azureml_models, "_get_model", not_yet_then_real)
    first = svc.models
    assert first is not None
    first.registry.register(MODEL, run.run_id, run.job_name or "", {"run_id": run.run_id})
    use_fake.fail_next(rf"/models/{MODEL}/versions/{run.run_id}$", status=409, method="PUT")
    reads.clear()

    assert svc.sweep().promoted == 1
    done = svc.get_run(run.run_id)
    assert done.model and done.model["version"] == run.run_id


def champion_tagged(fake: FakeAzureML, *versions: str) -> list[str]:
    found = {v: fake.model(MODEL, v) for v in versions}
    return [v for v, m in found.items() if m and m["properties"]["tags"].get("champion") == "true"]


@pytest.mark.parametrize("when", ["before", "tagging"])
def test_two_hosts_overlapping_ticks_leave_one_champion_tag_in_step_with_the_ledger(
    azureml_app, use_fake, tmp_path, monkeypatch, when
):
    """v1 is champion, untagged (the registry was down). Host A starts moving the tag to v1;
    meanwhile host B completes v2, which beats it, and tags v2 (before A's first write, or
    between A's untagging and its tag). The ledger never says "in step" with the tag on v1 or
    on two, and the next tick leaves exactly v2 tagged."""
    from azure.ai.ml.operations import ModelOperations

    from retrain.backends.azureml_models import AzureMLModelRegistry
    from retrain.errors import TransientError

    host_b = azureml_app
    v1, v2 = land(host_b, tmp_path, "batch-1"), land(host_b, tmp_path, "batch-2")
    finish(use_fake, v1, {"accuracy": 0.9})
    real_mark, real_put = AzureMLModelRegistry.mark_champion, ModelOperations.create_or_update

    def down(*_: Any) -> None:
        raise TransientError("the registry answered 503")

    monkeypatch.setattr(AzureMLModelRegistry, "mark_champion", down)
    host_b.sweep()
    monkeypatch.setattr(AzureMLModelRegistry, "mark_champion", real_mark)
    assert host_b.list_models(20)["champion"]["registry_synced"] is False
    ran: list[bool] = []

    def b_tick() -> None:
        if not ran:
            ran.append(True)
            scored = {"accuracy": 0.95, "champion": {"version": v1.run_id, "accuracy": 0.9}}
            finish(use_fake, v2, scored)
            assert host_b.sweep().promoted == 1

    def mark_after_b(self: Any, name: str, version: str) -> None:
        if when == "before":
            b_tick()
        real_mark(self, name, version)

    def put_after_b(self: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        if when == "tagging" and model.version == v1.run_id and "champion" in (model.tags or {}):
            b_tick()
        return real_put(self, model, *args, **kwargs)

    monkeypatch.setattr(AzureMLModelRegistry, "mark_champion", mark_after_b)
    monkeypatch.setattr(ModelOperations, "create_or_update", put_after_b)
    host_a = RetrainService(host_b.settings, store=host_b.store)
    host_a.sweep()  # A read the champion row (v1) before B's tick
    assert ran

    champion = host_a.list_models(20)["champion"]
    on = champion_tagged(use_fake, v1.run_id, v2.run_id)
    assert champion["version"] == v2.run_id
    assert on == [v2.run_id] or champion["registry_synced"] is False, (on, champion)

    host_b.sweep()  # the next tick, on either host
    assert host_a.list_models(20)["champion"]["registry_synced"] is True
    assert champion_tagged(use_fake, v1.run_id, v2.run_id) == [v2.run_id]
