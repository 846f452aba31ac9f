"""Build the Fashion-MNIST pipeline exactly as the Azure ML docs example wires it.

``pipeline_input_data -> prepare_data_node -> train_node (GPU) -> score_node``. The component
specs in ``components/<name>/<name>.yml`` are the single source of truth for each step's command,
inputs and outputs; this module only wires them together and applies settings.

Two settings make a job runnable on a deployed workspace (see docs/deploy.md):

- ``data_identity``: every step reads data (prepare_data the landed batch, a plain https blob
  URL; train and score the outputs before them), and Azure ML reads such data with identity-based
  access. ``managed`` (the default) runs each step as the compute's managed identity, or on
  serverless compute as the workspace's user-assigned identity, which provisioning grants read
  access to the landing container; ``user`` runs them as the submitter; ``None`` sets nothing.
- ``environment``: ``NAME:VERSION`` of an environment registered ahead (whose image is built at
  deployment), instead of the anonymous one each component spec declares (built on first use).

``registered`` (component name -> version, for the Azure ML backend) makes each node reference
the registered ``azureml:<name>:<version>`` instead of its spec: the job PUT then names the
components and uploads nothing. The specs still give each node its ports, so the job has the
same nodes, inputs and outputs either way; the local executor and ``pipeline show`` use them.
Step reuse is set, not left to defaults: ``settings.force_rerun`` is False, so Azure ML reuses a
deterministic step whose component version and inputs are unchanged (docs/azure-ml.md).

``champion_model`` (a registered ``azureml:NAME:VERSION`` model, or a local folder for the local
executor) is bound to score_node's optional ``champion_model`` input, with ``champion_version``,
so the step scores the champion on the same test images as the new model. Without it those
inputs stay unbound and the job is the same as before: still three nodes, the same ports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # azure.ai.ml costs ~1.5 s to import: only on first use.
    from azure.ai.ml.entities import Component, PipelineJob

COMPONENTS_DIR = Path(__file__).resolve().parent.parent / "components"
COMPONENT_NAMES = ("prepare_data", "train", "score")
SERVERLESS = "serverless"
DATA_IDENTITIES = ("managed", "user")
# The SDK's dsl keeps one process-wide stack of the pipelines being defined, so two threads
# defining at once (a Function App runs invocations on a thread pool) would mix their nodes.
_DEFINING = threading.Lock()


@dataclass(frozen=True)
class PipelineSettings:
    """What varies between runs: computes, training parameters, naming, the champion to beat."""

    cpu_compute: str = "cpu-cluster"
    gpu_compute: str = "gpu-cluster"
    gpu_instance_type: str = "Standard_NC4as_T4_v3"  # for a serverless GPU train step
    experiment_name: str = "fashion-retraining"
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float | None = None  # None: train's "auto", the model preset's own
    seed: int = 0
    data_identity: str | None = "managed"  # "managed" | "user" | None: how steps read data
    environment: str | None = None  # registered "NAME:VERSION"; None: each spec's own (anonymous)
    job_name: str | None = None  # deterministic per batch content, so a duplicate is refused
    display_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    champion_model: str | None = None  # "azureml:NAME:VERSION" or a local folder; None: first run
    champion_version: str | None = None  # the champion's registry version, echoed into metrics


def load_components(components_dir: Path = COMPONENTS_DIR) -> dict[str, Component]:
    """Load the three command component specs, as new objects (~25 ms).

    Not cached on purpose: submitting spec-built nodes to Azure ML writes what the SDK
    registered (code and environment ids) onto these objects, and fresh ones keep every build
    pointing at the local code folders. (The Azure ML backend submits registered components
    instead, see ``registered``.)
    """
    from azure.ai.ml import load_component

    return {
        name: load_component(source=components_dir / name / f"{name}.yml")
        for name in COMPONENT_NAMES
    }


def build_pipeline(
    data: Any,
    settings: PipelineSettings | None = None,
    *,
    components: Mapping[str, Component] | None = None,
    registered: Mapping[str, str] | None = None,
) -> PipelineJob:
    """Return the PipelineJob for ``data``.

    ``data`` is an ``azure.ai.ml.Input``, or a string taken as a ``uri_folder`` path: an
    ``azureml:NAME:VERSION`` data asset, an ``azureml://`` / ``https://`` URL, or a local folder.
    ``components`` defaults to freshly loaded specs (see ``load_components``); ``registered``
    maps each component name to the version registered in the workspace (see the module doc).
    """
    from azure.ai.ml import Input
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.dsl import pipeline

    settings = settings or PipelineSettings()
    components = components or load_components()
    if settings.environment and not registered:  # a registered component names its own
        for component in components.values():
            _use_environment(component, settings.environment)
    prepare_data, train, score = (components[name] for name in COMPONENT_NAMES)
    if not isinstance(data, Input):
        data = Input(type=AssetTypes.URI_FOLDER, path=str(data))
    champion: dict[str, Any] = {}  # score_node's optional inputs, bound only when given
    if settings.champion_model:
        champion["champion_model"] = Input(
            type=AssetTypes.CUSTOM_MODEL, path=settings.champion_model
        )
        if settings.champion_version:
            champion["champion_version"] = settings.champion_version
    elif settings.champion_version:
        raise ValueError("champion_version: given without champion_model")

    @pipeline(  # type: ignore[call-overload]  # the SDK's overloads want func positionally
        name="fashion_mnist_retraining",
        description="Fashion-MNIST image classification: prepare -> train (GPU) -> score",
    )
    def image_classification_with_pipeline(pipeline_input_data):
        prepare_data_node = prepare_data(input_data=pipeline_input_data)
        train_node = train(
            input_data=prepare_data_node.outputs.training_data,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate="auto" if settings.learning_rate is None else str(settings.learning_rate),
            seed=settings.seed,
        )
        _place_on_gpu(train_node, settings)
        # Its child job's display name: how the service finds the step to register the model
        # from (the component's own display name would otherwise show there).
        train_node.display_name = "train_node"
        score_node = score(
            input_data=prepare_data_node.outputs.test_data,
            input_model=train_node.outputs.output_model,
            **champion,
        )
        return {"output_result": score_node.outputs.output_result}

    with _DEFINING:
        job = image_classification_with_pipeline(pipeline_input_data=data)
    if registered is not None:
        _reference_registered(job, registered)
    job.settings.force_rerun = False  # reuse unchanged steps; a new data version reruns all
    identity = _identity(settings.data_identity)
    if identity is not None:
        for node in job.jobs.values():  # every step reads an input
            node.identity = identity
    job.settings.default_compute = settings.cpu_compute
    job.experiment_name = settings.experiment_name
    if settings.job_name:
        job.name = settings.job_name
    if settings.display_name:
        job.display_name = settings.display_name
    job.tags = dict(settings.tags)
    return job


def _place_on_gpu(train_node: Any, settings: PipelineSettings) -> None:
    """A named GPU cluster, or serverless compute sized by instance type."""
    if settings.gpu_compute == SERVERLESS:
        train_node.compute = SERVERLESS
        train_node.resources = {"instance_type": settings.gpu_instance_type, "instance_count": 1}
    else:
        train_node.compute = settings.gpu_compute


def _identity(kind: str | None) -> Any:
    """The identity configuration a step reads its data with (None: the service's default)."""
    from azure.ai.ml.entities import ManagedIdentityConfiguration, UserIdentityConfiguration

    if kind is None:
        return None
    if kind == "managed":
        return ManagedIdentityConfiguration()
    if kind == "user":
        return UserIdentityConfiguration()
    raise ValueError(
        f"data_identity: expected one of {', '.join(DATA_IDENTITIES)} or None, got {kind!r}"
    )


def _use_environment(component: Any, environment: str) -> None:
    """Point ``component`` at the registered environment ``NAME:VERSION``.

    Left alone when it already names it, in either the short form or the resource id the SDK
    writes back after a submission, so a warm process keeps its registered component.
    """
    name, _, version = environment.removeprefix("azureml:").partition(":")
    if not (name and version):
        raise ValueError(f"environment: expected NAME:VERSION, got {environment!r}")
    current = str(component.environment or "")
    if current == f"azureml:{name}:{version}" or current.endswith(
        f"/environments/{name}/versions/{version}"
    ):
        return
    component.environment = f"azureml:{name}:{version}"


def _reference_registered(job: Any, versions: Mapping[str, str]) -> None:
    """Point every node at its registered component, ``azureml:<name>:<version>``.

    The SDK resolves such a string to the version's resource id without a request (a node has
    no public setter for its component, hence ``_component``).
    """
    for node in job.jobs.values():
        name = node.component.name
        if name not in versions:
            raise ValueError(f"registered: no version for component {name!r}")
        node._component = f"azureml:{name}:{versions[name]}"
