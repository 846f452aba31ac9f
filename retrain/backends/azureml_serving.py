"""Azure ML's managed online endpoints, through the SDK: the calls a rollout makes, one each.

``ml_client.online_endpoints`` and ``ml_client.online_deployments``: create the endpoint (key
auth), create a deployment of a registered model version (scoring code: ``retrain/serving/``,
its script ``azureml_score.py``), invoke one deployment by name, move traffic, delete a
deployment. Each call is idempotent: creating what exists updates it to the same thing, deleting
what is gone succeeds. Errors are mapped by ``azureml_errors.translate`` (TransientError for
what may pass, a PermanentError naming the refusal otherwise).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .azureml_client import get_client
from .azureml_errors import translate

if TYPE_CHECKING:
    import numpy as np
    from azure.ai.ml import MLClient

    from ..settings import Settings

SERVING_CODE = Path(__file__).resolve().parent.parent / "serving"  # uploaded as the code
SCORING_SCRIPT = "azureml_score.py"
DEFAULT_SKU = "Standard_DS3_v2"  # the smallest the SDK and the docs deem workable


@dataclass(frozen=True)
class DeploymentSpec:
    """What a deployment of one model version runs on."""

    endpoint: str
    model_name: str
    model_version: str
    environment: str | None  # "name:version" of the registered environment
    instance_type: str = DEFAULT_SKU
    instance_count: int = 1
    max_images: int = 512
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The deployment's name: the model version, as Azure ML allows it (letters, digits and
        hyphens, a letter first, at most 32)."""
        return deployment_name(self.model_version)


def deployment_name(version: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in version.lower()).strip("-")
    return f"v-{cleaned}"[:32].rstrip("-")


class OnlineEndpoints:
    """The SDK calls, against the workspace ``settings`` name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def client(self) -> MLClient:
        return get_client(self._settings)

    def ensure_endpoint(self, name: str) -> None:
        """The endpoint, created (key auth) if it does not exist; its traffic left as it is."""
        from azure.ai.ml.entities import ManagedOnlineEndpoint
        from azure.core.exceptions import ResourceNotFoundError

        with translate(f"online endpoint {name}"):
            try:
                self.client.online_endpoints.get(name)
                return
            except ResourceNotFoundError:
                pass
            endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", identity=self._identity())
            self.client.online_endpoints.begin_create_or_update(endpoint).result()

    def _identity(self) -> Any:  # -> IdentityConfiguration | None
        """SERVE_IDENTITY: the user-assigned identity the endpoint pulls its image and reads its
        model as (its roles granted by `azd up`); unset: Azure ML's system-assigned one."""
        if not self._settings.serve_identity:
            return None
        from azure.ai.ml.entities import IdentityConfiguration, ManagedIdentityConfiguration

        uai = ManagedIdentityConfiguration(resource_id=self._settings.serve_identity)
        return IdentityConfiguration(type="user_assigned", user_assigned_identities=[uai])

    def traffic(self, endpoint: str) -> dict[str, int]:
        """Each deployment's share of the traffic; {} when the endpoint does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        with translate(f"online endpoint {endpoint}"):
            try:
                found = self.client.online_endpoints.get(endpoint)
            except ResourceNotFoundError:
                return {}
        return {k: int(v) for k, v in (found.traffic or {}).items()}

    def deployments(self, endpoint: str) -> list[str]:
        with translate(f"deployments of {endpoint}"):
            return [d.name for d in self.client.online_deployments.list(endpoint_name=endpoint)]

    def deployment_state(self, endpoint: str, deployment: str) -> str | None:
        """The deployment's provisioning state (Creating, Succeeded, Failed, ...), or None when
        there is no such deployment."""
        from azure.core.exceptions import ResourceNotFoundError

        with translate(f"deployment {endpoint}/{deployment}"):
            try:
                found = self.client.online_deployments.get(name=deployment, endpoint_name=endpoint)
            except ResourceNotFoundError:
                return None
        state = found.provisioning_state or "Unknown"
        return str(getattr(state, "value", state))  # the SDK's enum, or a string

    def start_deployment(self, spec: DeploymentSpec) -> None:
        """Ask for the deployment of ``spec``'s model version (0 % traffic when new), without
        waiting: it takes minutes to provision; ``deployment_state`` says when it is ready."""
        with translate(f"deployment {spec.endpoint}/{spec.name}"):
            self.client.online_deployments.begin_create_or_update(_deployment(spec))

    def invoke(self, endpoint: str, deployment: str, images: np.ndarray) -> dict[str, Any]:
        """The answer of ``deployment`` alone (by name, whatever the traffic) to a batch."""
        with tempfile.TemporaryDirectory() as tmp:
            request = Path(tmp) / "request.json"
            request.write_text(json.dumps({"images": images.tolist()}))
            with translate(f"invoking {endpoint}/{deployment}"):
                raw = self.client.online_endpoints.invoke(
                    endpoint_name=endpoint, request_file=str(request), deployment_name=deployment
                )
        document = json.loads(raw) if isinstance(raw, str | bytes) else raw
        return dict(document)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        with translate(f"traffic of {endpoint}"):
            found = self.client.online_endpoints.get(endpoint)
            found.traffic = dict(traffic)
            self.client.online_endpoints.begin_create_or_update(found).result()

    def delete_deployment(self, endpoint: str, deployment: str) -> None:
        """Delete ``deployment``; one already gone is fine."""
        from azure.core.exceptions import ResourceNotFoundError

        with translate(f"deleting {endpoint}/{deployment}"):
            try:
                poller = self.client.online_deployments.begin_delete(
                    name=deployment, endpoint_name=endpoint
                )
                poller.result()
            except ResourceNotFoundError:
                pass


def _deployment(spec: DeploymentSpec) -> Any:  # -> ManagedOnlineDeployment
    from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

    environment = f"azureml:{spec.environment}" if spec.environment else None
    return ManagedOnlineDeployment(
        name=spec.name,
        endpoint_name=spec.endpoint,
        model=f"azureml:{spec.model_name}:{spec.model_version}",
        environment=environment,
        code_configuration=CodeConfiguration(code=str(SERVING_CODE), scoring_script=SCORING_SCRIPT),
        instance_type=spec.instance_type,
        instance_count=spec.instance_count,
        environment_variables={
            "SERVE_MODEL_NAME": spec.model_name,
            "SERVE_MODEL_VERSION": spec.model_version,
            "SERVE_MAX_IMAGES": str(spec.max_images),
            **spec.extra_env,
        },
    )
