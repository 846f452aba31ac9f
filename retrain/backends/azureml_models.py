"""Azure ML's model registry: each Completed run's model becomes a version, with lineage.

The path is the *train step's* output of the job (``azureml://jobs/<child>/outputs/output_model``),
so the service records the lineage from the model to that job, and through its input to the data
asset version. A pipeline-level output path is reported not to register; the child job is found
with ``jobs.list(parent_job_name=...)``. The champion carries the tag ``champion: "true"``;
model versions are immutable except their tags and description.

Run history lists a v2 pipeline's steps with a GUID for a name and the node's name as display
name (``train_node``, unless the node sets its own display name); ``azureml.nodeid`` is an
8-hex-digit graph id, not the node's name (azure-sdk-for-python's recorded
``test_pipeline_job_get_child_run`` finds its step the same way). A step the service reused from
an earlier run (``azureml.isreused``) wrote nothing itself: its files are that run's
(``azureml.reusedrunid``), which is where ``jobs.download`` looks too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import PermanentError, TransientError
from .azureml_client import get_client
from .azureml_errors import translate
from .base import CHAMPION_TAG, MODEL_OUTPUT, TRAIN_NODE, ModelVersion, NoModelError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

    from ..settings import Settings

REUSED, REUSED_RUN = "azureml.isreused", "azureml.reusedrunid"  # a step the service reused


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
            try:
                return _version(client.models.create_or_update(model))
            except Exception:
                # Another host registered it meanwhile (the service refuses a second create)?
                if (existing := _get_model(client, name, version)) is not None:
                    return _version(existing)
                raise

    def model_input(self, name: str, version: str) -> str:
        return f"azureml:{name}:{version}"

    def mark_champion(self, name: str, version: str) -> None:
        """Untag every other tagged version (first: a failure between the two leaves no tag,
        never two), tag this one, then list the tags back: anything but this one alone
        (another host moving the tag meanwhile) is a TransientError, so the ledger is not told
        the registry is in step, and the next tick tags it again."""
        with translate(f"tag model {name}:{version} as champion"):
            client = self.client
            new = _get_model(client, name, version)
            if new is None:
                raise PermanentError(f"model {name}:{version} is not registered")
            for other in _tagged(client, name) - {version}:
                old = _get_model(client, name, other)
                if old is not None and CHAMPION_TAG in (old.tags or {}):
                    old.tags = {k: v for k, v in old.tags.items() if k != CHAMPION_TAG}
                    client.models.create_or_update(old)
            if (new.tags or {}).get(CHAMPION_TAG) != "true":
                new.tags = {**(new.tags or {}), CHAMPION_TAG: "true"}
                client.models.create_or_update(new)
            left = _tagged(client, name)
        if left != {version}:
            on = ", ".join(sorted(left)) or "no version"
            raise TransientError(
                f"model {name}: the champion tag is on {on} after tagging {version} "
                "(another host moving it?); the next tick tags it again"
            )


def _tagged(client: MLClient, name: str) -> set[str]:
    """The versions of ``name`` that carry the champion tag, as the registry lists them."""
    return {
        str(listed.version)
        for listed in client.models.list(name=name)
        if CHAMPION_TAG in (listed.tags or {})
    }


def _get_model(client: MLClient, name: str, version: str) -> Any:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.models.get(name=name, version=version)
    except ResourceNotFoundError:
        return None


def _train_step(client: MLClient, job_name: str) -> str:
    """The name of the job that wrote the pipeline job's trained model: its train step (a child
    job, found by its display name), or the earlier run the service reused for that step."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        children = list(client.jobs.list(parent_job_name=job_name))
    except ResourceNotFoundError:
        raise NoModelError(f"job {job_name} is not in the workspace") from None
    for child in children:
        if child is None or child.display_name != TRAIN_NODE or not child.name:
            continue
        props = child.properties or {}
        if str(props.get(REUSED, "")).lower() == "true" and props.get(REUSED_RUN):
            return str(props[REUSED_RUN])
        return str(child.name)
    raise NoModelError(f"job {job_name} has no {TRAIN_NODE} step to register a model from")


def _version(model: Any) -> ModelVersion:
    return ModelVersion(model.name, str(model.version), str(model.path), dict(model.tags or {}))
