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
    registration,
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
        "0.1",  # a string port: a number, or "auto"
        3,
    )


def test_the_learning_rate_is_the_presets_own_unless_set():
    """Unset (TRAIN_LEARNING_RATE empty), train gets "auto": 0.1 for the CPU net, 0.05 for GPU."""
    job = build_pipeline("./data")
    assert job.jobs["train_node"].inputs["learning_rate"]._data == "auto"


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


def _rest_nodes(job) -> dict:
    """The nodes as the service receives them."""
    return job._to_rest_object().properties.jobs


def test_every_step_reads_its_data_as_the_managed_identity_by_default(job):
    """Azure ML reads a plain https blob URL (a landed batch) only with identity-based access;
    with no identity on the job it would fall back to whatever the compute has."""
    for name, node in _rest_nodes(job).items():
        assert node["identity"] == {"identity_type": "Managed"}, name
    serverless = build_pipeline("/d", PipelineSettings(gpu_compute=SERVERLESS))
    assert _rest_nodes(serverless)["train_node"]["identity"] == {"identity_type": "Managed"}
    assert serverless._validate().passed


def test_data_identity_can_be_the_submitter_or_left_to_the_service():
    user = build_pipeline("/d", PipelineSettings(data_identity="user"))
    assert {n["identity"]["identity_type"] for n in _rest_nodes(user).values()} == {"UserIdentity"}
    assert user._validate().passed
    unset = build_pipeline("/d", PipelineSettings(data_identity=None))
    assert all("identity" not in node for node in _rest_nodes(unset).values())
    with pytest.raises(ValueError, match="data_identity: expected one of managed, user"):
        build_pipeline("/d", PipelineSettings(data_identity="system"))


def test_a_registered_environment_replaces_the_anonymous_one():
    anonymous = build_pipeline("/d")
    for node in anonymous.jobs.values():
        assert node.component.environment.image.startswith("mcr.microsoft.com/azureml/")
    job = build_pipeline("/d", PipelineSettings(environment="fashion-mnist-train:8f3a"))
    for node in job.jobs.values():
        assert node.component.environment == "azureml:fashion-mnist-train:8f3a"
        assert node.component._to_dict()["environment"] == "azureml:fashion-mnist-train:8f3a"
    assert job._validate().passed
    same = build_pipeline("/d", PipelineSettings(environment="azureml:fashion-mnist-train:8f3a"))
    assert same.jobs["score_node"].component.environment == "azureml:fashion-mnist-train:8f3a"
    with pytest.raises(ValueError, match="environment: expected NAME:VERSION"):
        build_pipeline("/d", PipelineSettings(environment="fashion-mnist-train"))


def test_a_component_already_registered_with_the_environment_is_left_as_it_is():
    """After a submission the SDK writes the environment's resource id onto the component; a warm
    process must not rewrite it, or the registered component would be registered again."""
    components = load_components()
    registered = (
        "azureml:/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices"
        "/workspaces/w/environments/fashion-mnist-train/versions/8f3a"
    )
    components["train"].environment = registered
    settings = PipelineSettings(environment="fashion-mnist-train:8f3a")
    job = build_pipeline("/d", settings, components=components)
    assert job.jobs["train_node"].component.environment == registered
    assert job.jobs["score_node"].component.environment == "azureml:fashion-mnist-train:8f3a"
    newer = PipelineSettings(environment="fashion-mnist-train:9b1c")
    job = build_pipeline("/d", newer, components=components)
    assert job.jobs["train_node"].component.environment == "azureml:fashion-mnist-train:9b1c"


def test_app_settings_pass_the_environment_to_the_builder():
    from retrain.errors import ConfigurationError
    from retrain.settings import Settings

    settings = Settings.from_env({"AZUREML_ENVIRONMENT": "fashion-mnist-train:8f3a"})
    assert settings.pipeline_settings().environment == "fashion-mnist-train:8f3a"
    assert Settings.from_env({}).pipeline_settings().environment is None
    for bad in ("fashion-mnist-train", "a:b:c", ":3"):
        with pytest.raises(ConfigurationError, match="AZUREML_ENVIRONMENT: expected NAME:VERSION"):
            Settings.from_env({"AZUREML_ENVIRONMENT": bad}).pipeline_settings()


# --- the champion: an optional model input of score_node ----------------------------------------


def test_a_champion_is_bound_to_score_node_as_a_custom_model():
    settings = PipelineSettings(
        champion_model="azureml:fashion-mnist-cnn:abc", champion_version="abc"
    )
    job = build_pipeline("/d", settings)
    assert tuple(job.jobs) == NODES
    assert set(job.inputs) == {"pipeline_input_data"}  # a node input, not a pipeline port
    score = _rest_nodes(job)["score_node"]["inputs"]
    assert score["champion_model"] == {
        "uri": "azureml:fashion-mnist-cnn:abc",
        "job_input_type": "custom_model",
    }
    assert score["champion_version"] == {"value": "abc", "job_input_type": "literal"}
    assert _binding(job.jobs["score_node"], "input_model") == (
        "${{parent.jobs.train_node.outputs.output_model}}"
    )
    result = job._validate()
    assert result.passed, result.error_messages


def test_without_a_champion_score_node_binds_neither_input(job):
    assert set(_rest_nodes(job)["score_node"]["inputs"]) == {"input_data", "input_model"}
    folder_only = build_pipeline("/d", PipelineSettings(champion_model="/models/champion"))
    inputs = _rest_nodes(folder_only)["score_node"]["inputs"]
    assert set(inputs) == {"input_data", "input_model", "champion_model"}
    assert inputs["champion_model"]["uri"] == "/models/champion"
    with pytest.raises(ValueError, match="champion_version: given without champion_model"):
        build_pipeline("/d", PipelineSettings(champion_version="3"))


def test_score_component_declares_the_champion_inputs_optional():
    inputs = load_components()["score"].inputs
    assert inputs["champion_model"].type == "custom_model" and inputs["champion_model"].optional
    assert inputs["champion_version"].type == "string" and inputs["champion_version"].optional
    assert not inputs["input_model"].optional


def test_the_train_step_is_named_so_its_model_can_be_found():
    """The service finds the child job to register the model from by this display name."""
    job = build_pipeline("./data")
    assert job.jobs["train_node"].display_name == "train_node"


# --- registered components (the Azure ML backend) and their versions ------------------------------


def test_registered_components_are_referenced_by_name_and_version(job):
    versions = registration().versions
    registered = build_pipeline(
        "/data/batch-7", PipelineSettings(epochs=7, job_name="job-x"), registered=versions
    )
    rest, spec_built = _rest_nodes(registered), _rest_nodes(job)
    assert tuple(rest) == NODES
    for key, name in zip(NODES, ("prepare_data", "train", "score"), strict=True):
        assert rest[key]["componentId"] == f"azureml:{name}:{versions[name]}"
        assert rest[key]["inputs"] == spec_built[key]["inputs"]  # the same ports, bound alike
        assert rest[key].get("outputs") == spec_built[key].get("outputs")
    assert set(registered.inputs) == {"pipeline_input_data"}
    assert set(registered.outputs) == {"output_result"}
    assert registered._validate().passed
    with pytest.raises(ValueError, match="registered: no version for component 'score'"):
        build_pipeline("/d", registered={"prepare_data": "1", "train": "1"})


def test_step_reuse_is_set_explicitly(job):
    """force_rerun off: Azure ML reuses a step only when its component version and inputs are
    the same, so a new data version reruns every step."""
    assert job._to_rest_object().properties.settings["force_rerun"] is False


def test_threads_defining_pipelines_at_once_each_get_their_own_three_nodes():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        jobs = list(pool.map(lambda i: build_pipeline(f"/d/{i}"), range(8)))
    for i, built in enumerate(jobs):
        assert tuple(built.jobs) == NODES
        assert built.inputs["pipeline_input_data"]._data.path == f"/d/{i}"


@pytest.fixture
def components_copy(tmp_path) -> Path:
    target = tmp_path / "components"
    shutil.copytree(COMPONENTS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_versions_are_derived_from_the_files_and_nothing_else(components_copy):
    first = registration(components_dir=components_copy)
    assert first == registration(components_dir=components_copy)
    assert first.versions == registration().versions  # the same files elsewhere: same versions
    assert first.environment is not None and first.environment.name == "fashion-mnist-train"
    assert all(len(v) == 16 for v in first.versions.values())
    # Bytecode and hidden files are not part of a component.
    (components_copy / "train" / "__pycache__").mkdir()
    (components_copy / "train" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"x")
    (components_copy / "train" / ".amlignore").write_text("*.tmp\n")
    assert registration(components_dir=components_copy) == first
    assert "model.py" in first.components["train"].files


def test_a_changed_file_changes_only_its_components_version(components_copy):
    before = registration(components_dir=components_copy).versions
    script = components_copy / "train" / "train.py"
    script.write_text(script.read_text() + "\n# changed\n")
    after = registration(components_dir=components_copy).versions
    assert after["train"] != before["train"]
    assert (after["prepare_data"], after["score"]) == (before["prepare_data"], before["score"])


def test_a_changed_environment_changes_every_version(components_copy):
    before = registration(components_dir=components_copy)
    conda = components_copy / "environment" / "conda.yaml"
    conda.write_text(conda.read_text() + "      - tqdm\n")
    after = registration(components_dir=components_copy)
    assert after.environment and before.environment
    assert after.environment.version != before.environment.version
    assert all(after.versions[n] != before.versions[n] for n in before.versions)
    given = registration("fashion-mnist-train:prov1", components_copy)
    assert given.environment is None  # provisioning registered it
    assert given.components["train"].environment == "azureml:fashion-mnist-train:prov1"
    assert given.versions != after.versions
