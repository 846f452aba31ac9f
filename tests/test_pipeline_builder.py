"""The shared builder: structure, wiring, settings, and azure-ai-ml's own validation. Offline."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from azure.ai.ml import Input, load_component
from azure.ai.ml.dsl import pipeline

from pipeline_builder import (
    COMPONENTS_DIR,
    SERVERLESS,
    PipelineSettings,
    build_pipeline,
    load_components,
)

NODES = ("prepare_data_node", "train_node", "score_node")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The builder is offline: any connection attempt fails the test."""

    def refuse(self, address):
        raise AssertionError(f"network call to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _binding(node, name: str):
    """The input's binding as the SDK serialises it for the service."""
    job_input = node.inputs[name]._to_job_input()
    return getattr(job_input, "path", job_input)


@pytest.fixture(scope="module")
def job():
    return build_pipeline("/data/batch-7", PipelineSettings(epochs=7, job_name="job-x"))


def test_nodes_are_named_as_in_the_docs_example(job):
    assert tuple(job.jobs) == NODES


def test_pipeline_input_feeds_prepare_data(job):
    assert set(job.inputs) == {"pipeline_input_data"}
    assert job.inputs["pipeline_input_data"]._data.path == "/data/batch-7"
    assert job.inputs["pipeline_input_data"]._data.type == "uri_folder"
    prepare = job.jobs["prepare_data_node"]
    assert _binding(prepare, "input_data") == "${{parent.inputs.pipeline_input_data}}"


def test_steps_are_wired_output_to_input(job):
    train, score = job.jobs["train_node"], job.jobs["score_node"]
    prepared = "${{parent.jobs.prepare_data_node.outputs.%s}}"
    assert _binding(train, "input_data") == prepared % "training_data"
    assert _binding(score, "input_data") == prepared % "test_data"
    assert _binding(score, "input_model") == "${{parent.jobs.train_node.outputs.output_model}}"
    result = score.outputs["output_result"]._to_job_output()
    assert result.path == "${{parent.outputs.output_result}}"
    assert set(job.outputs) == {"output_result"}


def test_train_runs_on_gpu_and_the_rest_on_the_default_cpu_compute():
    job = build_pipeline("/d", PipelineSettings(cpu_compute="cpu-a", gpu_compute="gpu-b"))
    assert job.settings.default_compute == "cpu-a"
    assert job.jobs["train_node"].compute == "gpu-b"
    assert job.jobs["prepare_data_node"].compute is None  # inherits the default
    assert job.jobs["score_node"].compute is None
    assert job.jobs["train_node"].resources is None


def test_serverless_train_step_is_sized_by_instance_type():
    settings = PipelineSettings(gpu_compute=SERVERLESS, gpu_instance_type="Standard_NC6s_v3")
    job = build_pipeline("/d", settings)
    train = job.jobs["train_node"]
    assert train.compute == SERVERLESS
    assert train.resources.instance_type == "Standard_NC6s_v3"
    assert train.resources.instance_count == 1
    rest = job._to_rest_object().properties.jobs["train_node"]  # what the service receives
    assert rest["computeId"] == SERVERLESS
    assert rest["resources"]["instance_type"] == "Standard_NC6s_v3"
    assert job._validate().passed


def test_settings_are_applied(job):
    assert job.name == "job-x"
    assert job.experiment_name == "fashion-retraining"
    train_inputs = {k: v._data for k, v in job.jobs["train_node"].inputs.items()}
    assert train_inputs["epochs"] == 7
    other = build_pipeline(
        "/d",
        PipelineSettings(
            experiment_name="exp-2",
            batch_size=64,
            learning_rate=0.1,
            seed=3,
            display_name="nightly",
            tags=(("batch", "b7"),),
        ),
    )
    assert other.experiment_name == "exp-2"
    assert other.display_name == "nightly"
    assert other.tags == {"batch": "b7"}
    assert other.name is None  # no job name: the service would pick one
    inputs = other.jobs["train_node"].inputs
    assert (inputs["batch_size"]._data, inputs["learning_rate"]._data, inputs["seed"]._data) == (
        64,
        0.1,
        3,
    )


def test_data_asset_and_urls_are_taken_as_uri_folder_paths():
    for data in ("azureml:fashion-mnist:3", "azureml://datastores/landing/paths/b7/"):
        job = build_pipeline(data)
        assert job.inputs["pipeline_input_data"]._data.path == data
    given = Input(type="uri_folder", path="azureml:fashion-mnist:4")
    assert build_pipeline(given).inputs["pipeline_input_data"]._data.path == given.path


@pytest.mark.parametrize("name", ["prepare_data", "train", "score"])
def test_each_component_passes_sdk_validation(name):
    component = load_components()[name]
    result = component._validate()
    assert result.passed, result.error_messages
    assert Path(component.base_path).resolve() == (COMPONENTS_DIR / name).resolve()


def test_pipeline_passes_sdk_validation(job):
    result = job._validate()
    assert result.passed, result.error_messages
    serverless = build_pipeline(
        "/d", PipelineSettings(cpu_compute=SERVERLESS, gpu_compute=SERVERLESS)
    )
    assert serverless._validate().passed


def test_a_wrong_input_binding_fails_component_validation_not_pipeline_validation(tmp_path):
    components = tmp_path / "components"
    shutil.copytree(COMPONENTS_DIR, components)
    spec = components / "score" / "score.yml"
    text = spec.read_text()
    assert "${{inputs.input_model}}" in text
    spec.write_text(text.replace("${{inputs.input_model}}", "${{inputs.nope}}"))
    broken = load_component(source=spec)

    # The pipeline check alone passes: it looks at wiring, not at the command's references.
    good = load_components()

    @pipeline(name="with_broken_score")
    def with_broken_score(pipeline_input_data):
        prepared = good["prepare_data"](input_data=pipeline_input_data)
        trained = good["train"](input_data=prepared.outputs.training_data)
        broken(input_data=prepared.outputs.test_data, input_model=trained.outputs.output_model)

    job = with_broken_score(pipeline_input_data=Input(type="uri_folder", path="/d"))
    job.settings.default_compute = "cpu-cluster"
    assert job._validate().passed

    # Component validation catches it, naming the bad reference.
    result = broken._validate()
    assert not result.passed
    assert "inputs.nope" in str(result.error_messages)


def test_each_build_gets_its_own_component_objects_unless_given_some():
    """A submission to Azure ML rewrites what it registered on the component objects; that must
    never leak into a later local run of another build in the same process."""
    first, second = build_pipeline("/d"), build_pipeline("/d")
    first_prepare = first.jobs["prepare_data_node"].component
    assert first_prepare is not second.jobs["prepare_data_node"].component
    first_prepare.code = "azureml:/subscriptions/x/codes/y/versions/1"  # as a submission leaves it
    assert Path(str(build_pipeline("/d").jobs["prepare_data_node"].component.code)).is_dir()

    shared = load_components()
    reused = build_pipeline("/d", components=shared)
    assert reused.jobs["train_node"].component is shared["train"]
