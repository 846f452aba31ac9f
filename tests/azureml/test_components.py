"""Components and their environment registered once, by content version, through the real SDK
against the fake: what a submission sends before and after they exist, races, refusals, reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import amlhelpers
import pytest
from amlhelpers import aml_settings, point_client_at
from fake_azureml import WORKSPACE_PATH, FakeAzureML

from pipeline_builder import registration
from retrain.backends.azureml import AzureMLBackend
from retrain.errors import ConfigurationError, SubmissionError

PLAN = registration()
NAMES = ("prepare_data", "train", "score")
REGISTERING = r"^/(codes|components|environments)/"


def _component_id(name: str) -> str:
    return f"{WORKSPACE_PATH}/components/{name}/versions/{PLAN.components[name].version}"


def _uploads(fake: FakeAzureML) -> list:
    """Code uploads: pending-upload requests and blob writes under LocalUpload/."""
    return fake.calls("POST", r"/startPendingUpload$") + [
        r for r in fake.calls("PUT", r"^/devstoreaccount1/.*/LocalUpload/")
    ]


def _restart_process(fake: FakeAzureML) -> None:
    """A new worker: no client, nothing known to be registered."""
    point_client_at(fake)


def test_a_fresh_workspace_gets_the_environment_and_each_component_once(cold_process, make_request):
    backend = AzureMLBackend(aml_settings())
    backend.submit(make_request("batch-1"))

    env = PLAN.environment
    assert env is not None
    (env_put,) = cold_process.calls("PUT", r"^/environments/")
    assert env_put.tail == f"/environments/{env.name}/versions/{env.version}"
    assert env_put.body["properties"]["image"] == env.image
    assert "torch==2.14.1" in env_put.body["properties"]["condaFile"]
    puts = cold_process.calls("PUT", r"^/components/")
    assert [p.tail for p in puts] == [
        f"/components/{n}/versions/{PLAN.components[n].version}" for n in NAMES
    ]
    for put in puts:
        spec = put.body["properties"]["componentSpec"]
        assert spec["is_deterministic"] is True
        assert spec["environment"].endswith(f"/environments/{env.name}/versions/{env.version}")
    # Exactly the hashed files went up: no bytecode, nothing hidden.
    uploaded = {r.path.rsplit("/", 1)[1] for r in _uploads(cold_process) if r.method == "PUT"}
    assert uploaded == {f for s in PLAN.components.values() for f in s.files}

    (job_put,) = cold_process.calls("PUT", r"^/jobs/")
    nodes = job_put.body["properties"]["jobs"]
    assert {key: node["componentId"] for key, node in nodes.items()} == {
        f"{name}_node": _component_id(name) for name in NAMES
    }
    assert cold_process.requests.index(puts[-1]) < cold_process.requests.index(job_put)


def test_submitting_makes_no_code_upload_once_the_components_are_registered(
    cold_process, make_request
):
    AzureMLBackend(aml_settings()).submit(make_request("batch-1"))
    registered = {p: dict(r) for p, r in cold_process.resources.items() if "/components/" in p}
    _restart_process(cold_process)
    before = len(cold_process.requests)

    backend = AzureMLBackend(aml_settings())
    backend.submit(make_request("batch-2"))  # a new process: one GET per component
    cold = cold_process.requests[before:]
    assert not [r for r in cold if r.tail.startswith(("/codes", "/environments"))]
    assert [r.tail for r in cold if r.tail.startswith("/components")] == [
        f"/components/{n}/versions/{PLAN.components[n].version}" for n in NAMES
    ]
    assert all(r.method == "GET" for r in cold if r.tail.startswith("/components"))
    assert not [r for r in cold if r.path.startswith("/devstoreaccount1/")]
    middle = len(cold_process.requests)

    backend.submit(make_request("batch-3"))  # warm: nothing about components at all
    warm = cold_process.requests[middle:]
    assert not [r for r in warm if r.path.startswith("/devstoreaccount1/")]
    assert not [r for r in warm if r.tail.startswith(("/codes", "/components", "/environments"))]
    assert [r.tail.split("/")[1] for r in warm if r.method != "GET"] == ["data", "jobs"]
    assert {p: r for p, r in cold_process.resources.items() if "/components/" in p} == registered


def test_a_host_that_lost_the_race_reads_the_version_back(cold_process, make_request):
    """Host A registered train; host B looked before A's PUT landed (404), so it registers too,
    and the service answers its PUT with a conflict: B reads the version back and goes on."""
    AzureMLBackend(aml_settings()).submit(make_request("batch-1"))
    _restart_process(cold_process)
    train = rf"/components/train/versions/{PLAN.components['train'].version}$"
    cold_process.fail_next(train, status=404, method="GET")
    cold_process.fail_next(train, status=409, method="PUT")

    submission = AzureMLBackend(aml_settings()).submit(make_request("batch-2"))

    assert [p.status for p in cold_process.calls("PUT", r"^/components/train/")] == [201, 409]
    reads = [g.status for g in cold_process.calls("GET", r"^/components/train/")]
    assert reads == [404, 404, 200]  # A's look-up, B's look-up, B's read-back
    versions = [p for p in cold_process.resources if "/components/train/versions/" in p]
    assert len(versions) == 1
    assert submission.already_existed is False
    assert len(cold_process.calls("POST", r"/startPendingUpload$")) == 3  # B found A's code


def test_two_hosts_racing_on_a_fresh_workspace_register_one_version_each(cold_process, tmp_path):
    """Two worker processes start at once against an empty workspace."""
    script = Path(__file__).with_name("amlhost.py")
    hosts = [
        subprocess.Popen(
            [sys.executable, str(script), cold_process.url, cold_process.ca_file, f"race-{i}"],
            env={**os.environ, "AMLHOST_STORAGE": json.dumps(amlhelpers.STORAGE)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outcomes = [host.communicate(timeout=120) for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], [err[-2000:] for _, err in outcomes]

    for name in NAMES:
        prefix = f"{WORKSPACE_PATH}/components/{name}/versions/"
        assert [p for p in cold_process.resources if p.startswith(prefix)] == [
            prefix + PLAN.components[name].version
        ]
    assert len([p for p in cold_process.resources if "/environments/" in p]) == 1
    assert len(cold_process.calls("PUT", r"^/jobs/")) == 2
    created = [p for p in cold_process.calls("PUT", r"^/components/") if p.status == 201]
    assert len(created) == 3  # whoever lost got a 200 (same body) or a 409 and read it back


def test_concurrent_submissions_in_one_process_register_once(cold_process, make_request):
    backend = AzureMLBackend(aml_settings())
    errors: list[BaseException] = []

    def submit(batch: str) -> None:
        try:
            backend.submit(make_request(batch))
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(f"batch-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert len(cold_process.calls("PUT", r"^/components/")) == 3
    assert len(cold_process.calls("PUT", r"^/environments/")) == 1
    assert len(cold_process.calls("POST", r"/startPendingUpload$")) == 3
    assert len(cold_process.calls("PUT", r"^/jobs/")) == 3


def test_a_refused_registration_names_the_component_and_the_role(cold_process, make_request):
    version = PLAN.components["prepare_data"].version
    cold_process.fail_next(r"^.*/components/prepare_data/versions/", status=403, method="PUT")

    with pytest.raises(SubmissionError) as caught:
        AzureMLBackend(aml_settings()).submit(make_request())

    message = str(caught.value)
    assert "\n" not in message
    assert f"component prepare_data:{version} is not in workspace ws-retrain" in message
    assert "HTTP 403" in message and "AzureML Data Scientist" in message
    assert "components/write" in message
    assert not cold_process.calls("PUT", r"^/jobs/")


def test_a_registered_environment_is_used_and_must_exist(cold_process, make_request):
    """Deployed: provisioning registered AZUREML_ENVIRONMENT; the app registers no other."""
    settings = aml_settings(environment="fashion-mnist-train:prov1")
    request = make_request(environment="fashion-mnist-train:prov1")
    with pytest.raises(ConfigurationError, match=r"fashion-mnist-train:prov1 \(AZUREML_ENV"):
        AzureMLBackend(settings).submit(request)
    assert not cold_process.calls("PUT", REGISTERING)

    cold_process.handle(  # as provisioning registers it
        "PUT",
        f"{WORKSPACE_PATH}/environments/fashion-mnist-train/versions/prov1",
        {},
        {"properties": {"image": "mcr.microsoft.com/azureml/x:latest"}},
    )
    AzureMLBackend(settings).submit(request)

    assert not cold_process.calls("PUT", r"^/environments/")
    plan = registration("fashion-mnist-train:prov1")
    puts = cold_process.calls("PUT", r"^/components/")
    assert [p.tail.rsplit("/", 1)[1] for p in puts] == [plan.versions[n] for n in NAMES]
    for put in puts:
        environment = put.body["properties"]["componentSpec"]["environment"]
        assert environment.endswith("/environments/fashion-mnist-train/versions/prov1")


def test_a_new_data_version_never_reuses_an_old_runs_steps(cold_process, make_request):
    """Reuse is on for unchanged steps (deterministic components, force_rerun off, both sent
    explicitly), and keyed by component version and inputs: a new data version changes
    prepare_data_node's input, so prepare reruns, and with its new outputs, train and score."""
    backend = AzureMLBackend(aml_settings())
    first, second = make_request("batch-1"), make_request("batch-2")
    backend.submit(first)
    backend.submit(second)

    jobs = [p.body["properties"] for p in cold_process.calls("PUT", r"^/jobs/")]
    assert [job["settings"]["force_rerun"] for job in jobs] == [False, False]
    for put in cold_process.calls("PUT", r"^/components/"):
        assert put.body["properties"]["componentSpec"]["is_deterministic"] is True
    one, two = jobs
    assert one["inputs"]["pipeline_input_data"]["uri"].endswith(f"/versions/{first.data_version}")
    assert two["inputs"]["pipeline_input_data"]["uri"].endswith(f"/versions/{second.data_version}")
    for job in jobs:  # the same components, the new input at the head of the chain
        nodes = job["jobs"]
        assert nodes["prepare_data_node"]["componentId"] == _component_id("prepare_data")
        assert nodes["prepare_data_node"]["inputs"]["input_data"]["value"] == (
            "${{parent.inputs.pipeline_input_data}}"
        )
        assert nodes["train_node"]["inputs"]["input_data"]["value"] == (
            "${{parent.jobs.prepare_data_node.outputs.training_data}}"
        )
        assert nodes["score_node"]["inputs"]["input_model"]["value"] == (
            "${{parent.jobs.train_node.outputs.output_model}}"
        )
    # Everything else about the steps is the same: only the data decides.
    assert one["jobs"] == two["jobs"] and one["inputs"] != two["inputs"]
