"""Azure ML's model registry: each Completed run's model becomes a version, with lineage.

The path is the *train step's* output of the job (``azureml://jobs/<child>/outputs/output_model``),
so the service records the lineage from the model to that job, and through its input to the data
asset version. A pipeline-level output path is reported not to register; the child job is found
with ``jobs.list(parent_job_name=...)``. The champion carries the tag ``champion: "true"``;
model versions are immutable except their tags and description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError
from .azureml_client import get_client
from .azureml_errors import translate
from .base import MODEL_OUTPUT, TRAIN_NODE, ModelVersion

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

    from ..settings import Settings

CHAMPION_TAG = "champion"
NODE_PROPERTY = "azureml.nodeid"  # a pipeline child job's node name, where the service sets it


class AzureMLModelRegistry:
    """Model versions in the workspace's registry, registered from pipeline jobs."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def client(self) -> MLClient:
        return get_client(self._settings)

    def register(
        self, name: str, version: str, job_name: str, tags: Mapping[str, str]
    ) -> ModelVersion:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        with translate(f"register model {name}:{version}"):
            client = self.client
            existing = _get_model(client, name, version)
            if existing is not None:
                return _version(existing)
            child = _train_step(client, job_name)
            model = Model(
                name=name,
                version=version,
                path=f"azureml://jobs/{child}/outputs/{MODEL_OUTPUT}",
                type=AssetTypes.CUSTOM_MODEL,
                description=f"Fashion-MNIST CNN trained by pipeline job {job_name}",
                tags=dict(tags),
            )
            return _version(client.models.create_or_update(model))

    def model_input(self, name: str, version: str) -> str:
        return f"azureml:{name}:{version}"

    def mark_champion(self, name: str, version: str, previous: str | None) -> None:
        with translate(f"tag model {name}:{version} as champion"):
            client = self.client
            if previous and previous != version:
                old = _get_model(client, name, previous)
                if old is not None and CHAMPION_TAG in (old.tags or {}):
                    old.tags = {k: v for k, v in old.tags.items() if k != CHAMPION_TAG}
                    client.models.create_or_update(old)
            new = _get_model(client, name, version)
            if new is None:
                raise PermanentError(f"model {name}:{version} is not registered")
            if (new.tags or {}).get(CHAMPION_TAG) != "true":
                new.tags = {**(new.tags or {}), CHAMPION_TAG: "true"}
                client.models.create_or_update(new)


def _get_model(client: MLClient, name: str, version: str) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.models.get(name=name, version=version)
    except ResourceNotFoundError:
        return None


def _train_step(client: MLClient, job_name: str) -> str:
    """The name of the pipeline job's train step (its child job)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        children = list(client.jobs.list(parent_job_name=job_name))
    except ResourceNotFoundError:
        raise PermanentError(f"job {job_name} is not in the workspace") from None
    for child in children:
        node = (child.properties or {}).get(NODE_PROPERTY)
        if TRAIN_NODE in (child.display_name, node) and child.name:
            return str(child.name)
    raise PermanentError(f"job {job_name} has no {TRAIN_NODE} step to register a model from")


def _version(model: Any) -> ModelVersion:
    return ModelVersion(model.name, str(model.version), str(model.path), dict(model.tags or {}))
