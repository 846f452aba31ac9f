"""Make sure the pipeline's components (and their environment) are registered in the workspace.

Why: a job that names registered ``azureml:<name>:<version>`` components is a single PUT; one
built from the specs makes the SDK hash, look up and maybe upload each component's code on
every submission. The versions come from the files (``pipeline_builder.versions``), so every
host agrees on them without talking to the others.

Per process and workspace, the versions seen to exist are remembered (``known_assets``): a warm
process asks nothing. A cold one GETs each component once; a missing one (fresh workspace,
changed files) is registered first, with exactly the files its version was hashed from, after
its environment (registered by the app too when ``AZUREML_ENVIRONMENT`` is empty; when set,
provisioning registered it and it must exist). Two hosts racing register one version: whoever
loses gets a conflict (or a failed upload), reads the version back, and goes on. A refusal is
one line naming the component and the role it needs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, SubmissionError
from .azureml_client import known_assets
from .azureml_errors import one_line, translate

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

    from pipeline_builder.versions import ComponentSpec, EnvironmentSpec, Registration

    from ..settings import Settings

log = logging.getLogger(__name__)

# Which role lets the app register: the built-in one, or these actions of a custom role.
WRITE_ROLE = (
    "AzureML Data Scientist (or a role with workspaces/components/write, "
    "workspaces/environments/write and workspaces/codes/write)"
)

_lock = threading.Lock()  # one registration at a time in this process


def ensure_registered(
    client: MLClient, settings: Settings, environment: str | None
) -> dict[str, str]:
    """The registered version of each component (name -> version), registering what is missing.

    ``environment`` is the registered ``NAME:VERSION`` to run in (``AZUREML_ENVIRONMENT``), or
    None for the specs' own, which the app registers as ``fashion-mnist-train:<hash>``.
    """
    from pipeline_builder import registration

    plan = registration(environment)
    known = known_assets(settings)
    if all(_key("components", s.name, s.version) in known for s in plan.components.values()):
        return plan.versions
    with _lock:
        for spec in plan.components.values():
            key = _key("components", spec.name, spec.version)
            if key in known:
                continue
            with translate(f"look up component {spec.name}:{spec.version}"):
                found = _get(client.components, spec.name, spec.version)
            if not found:
                _ensure_environment(client, plan, spec.environment, known)
                _register_component(client, spec)
            known.add(key)
    return plan.versions


def _ensure_environment(client: MLClient, plan: Registration, ref: str, known: set[str]) -> None:
    name, _, version = ref.removeprefix("azureml:").partition(":")
    key = _key("environments", name, version)
    if key in known:
        return
    with translate(f"look up environment {name}:{version}"):
        found = _get(client.environments, name, version)
    if not found:
        if plan.environment is None:  # provisioning registers it: it must be there
            raise ConfigurationError(
                f"environment {name}:{version} (AZUREML_ENVIRONMENT) not found in workspace "
                f"{client.workspace_name}: run azd provision, or leave the setting empty so the "
                "app registers the components' own"
            )
        _register_environment(client, plan.environment)
    known.add(key)


def _register_environment(client: MLClient, spec: EnvironmentSpec) -> None:
    from azure.ai.ml.entities import Environment

    environment = Environment(
        name=spec.name,
        version=spec.version,
        image=spec.image,
        conda_file=str(spec.conda_file),
        description="The environment prepare_data, train and score run in "
        "(components/environment/conda.yaml).",
    )
    _create_once(client, client.environments, environment, "environment")


def _register_component(client: MLClient, spec: ComponentSpec) -> None:
    """Register ``spec`` from a copy of exactly its hashed files (no bytecode, nothing hidden),
    so what is uploaded is what the version says."""
    from azure.ai.ml import load_component

    with tempfile.TemporaryDirectory(prefix=f"component-{spec.name}-") as tmp:
        for file in spec.files:
            target = Path(tmp) / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec.folder / file, target)
        overrides = {
            "version": spec.version,
            "environment": spec.environment,
            "is_deterministic": spec.is_deterministic,
        }
        component = load_component(  # its code, ".", is the copy
            source=Path(tmp) / f"{spec.name}.yml", params_override=[overrides]
        )
        _create_once(client, client.components, component, "component")


def _create_once(client: MLClient, operations: Any, asset: Any, kind: str) -> None:
    """Create version ``asset`` with ``operations`` (components or environments); if that
    fails because another host created it first (a conflict, or its upload of the same code),
    read it back and go on. A refusal names the asset and the role."""
    what = f"{kind} {asset.name}:{asset.version}"
    try:
        operations.create_or_update(asset)
    except Exception as exc:
        failure = exc
    else:
        log.info("registered %s in workspace %s", what, client.workspace_name)
        return
    with translate(f"look up {what}"):
        if _get(operations, asset.name, asset.version):
            log.info("%s was registered by another host meanwhile", what)
            return
    status = getattr(failure, "status_code", None)
    if status in (401, 403):
        raise SubmissionError(
            f"{what} is not in workspace {client.workspace_name} and registering it was "
            f"refused (HTTP {status}): give the app's identity {WRITE_ROLE}: {one_line(failure)}"
        ) from failure
    with translate(f"register {what}"):
        raise failure


def _get(operations: Any, name: str, version: str) -> bool:
    """Whether version ``name:version`` exists (components or environments operations)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        operations.get(name=name, version=version)
    except ResourceNotFoundError:
        return False
    return True


def _key(kind: str, name: str, version: str) -> str:
    return f"{kind}:{name}:{version}"
