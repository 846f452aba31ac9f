"""The one ``MLClient`` of this process, made on first use.

Why one: building a client costs the SDK import (~1.5 s) plus ~20 service clients, and its
credential caches tokens; a Function App worker reuses it across invocations. Transient trouble
(429, 5xx, timeouts, dropped connections) is retried by azure-core's ``RetryPolicy``, configured
through the keyword arguments below, never by a loop of ours.

Tests (and private clouds) point the client elsewhere with ``configure(credential=...,
endpoint=...)``; the endpoint becomes a custom cloud of the SDK's (``cloud=``/``cloud_metadata=``),
the documented way to reach a sovereign cloud.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import TokenCredential

    from ..settings import Settings

# azure-core RetryPolicy / transport settings, passed to every service client of MLClient.
# Backoff doubles from 0.8 s up to 30 s (the first retry is immediate), honouring Retry-After.
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 6,
    "retry_connect": 3,
    "retry_read": 3,
    "retry_status": 4,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
    "connection_timeout": 20,
    "read_timeout": 120,
}
CONFIG_DIRS = (".azureml", "aml_config", ".")
WORKSPACE_SETTINGS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")


@dataclass(frozen=True)
class Workspace:
    subscription_id: str
    resource_group: str
    name: str


@dataclass(frozen=True)
class _Overrides:
    credential: TokenCredential | None = None
    endpoint: str | None = None  # base URL of the Azure ML REST API (Azure Resource Manager)
    ca_file: str | None = None  # CA bundle that endpoint's certificate chains to
    client_kwargs: tuple[tuple[str, Any], ...] = ()


_lock = threading.Lock()
_overrides = _Overrides()
_clients: dict[Workspace, MLClient] = {}
_known: dict[Workspace, set[str]] = {}  # registered "kind:name:version" seen to exist


def configure(
    *,
    credential: TokenCredential | None = None,
    endpoint: str | None = None,
    ca_file: str | None = None,
    **client_kwargs: Any,
) -> None:
    """Replace how clients are made (credential, REST endpoint, extra MLClient keywords).

    Drops cached clients; ``configure()`` with no arguments restores the defaults.
    """
    global _overrides
    with _lock:
        _overrides = _Overrides(credential, endpoint, ca_file, tuple(client_kwargs.items()))
        _clients.clear()
        _known.clear()


def get_client(settings: Settings) -> MLClient:
    """The process-wide client for the workspace ``settings`` name (made once, thread-safe)."""
    workspace = resolve_workspace(settings)
    with _lock:
        client = _clients.get(workspace)
        if client is None:
            client = _clients[workspace] = _make_client(workspace, settings, _overrides)
        return client


def known_assets(settings: Settings) -> set[str]:
    """This process's record of the versions (``kind:name:version``) found or registered in the
    workspace ``settings`` name, so a warm process asks nothing before submitting. Kept beside
    its client, and dropped with it by ``configure``; callers add to it under their own lock."""
    workspace = resolve_workspace(settings)
    with _lock:
        return _known.setdefault(workspace, set())


def resolve_workspace(settings: Settings, start: Path | None = None) -> Workspace:
    """The workspace from app settings, else from a ``config.json`` as MLClient.from_config."""
    values = (settings.subscription_id, settings.resource_group, settings.workspace_name)
    if all(values):
        return Workspace(*values)  # type: ignore[arg-type]
    if any(values):
        missing = [
            name for name, value in zip(WORKSPACE_SETTINGS, values, strict=True) if not value
        ]
        raise ConfigurationError(f"Azure ML workspace: set {', '.join(missing)} too")
    found = find_config(start or Path.cwd())
    if found is None:
        raise ConfigurationError(
            "Azure ML workspace not configured: set "
            f"{', '.join(WORKSPACE_SETTINGS)}, or put the workspace's config.json "
            "in the working directory or a parent"
        )
    try:
        config = json.loads(found.read_text())
        return Workspace(
            config["subscription_id"], config["resource_group"], config["workspace_name"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{found}: expected JSON with subscription_id, resource_group and workspace_name "
            f"({type(exc).__name__}: {exc})"
        ) from None


def find_config(start: Path) -> Path | None:
    """``config.json`` in ``start`` or a parent (also under ``.azureml/`` or ``aml_config/``)."""
    for folder in (start.resolve(), *start.resolve().parents):
        for sub in CONFIG_DIRS:
            candidate = folder / sub / "config.json"
            if candidate.is_file():
                return candidate
    return None


def _make_client(workspace: Workspace, settings: Settings, overrides: _Overrides) -> MLClient:
    from azure.ai.ml import MLClient

    credential = overrides.credential or _default_credential(settings.client_id)
    # show_progress must stay on: with it off, the SDK never collects the results of its
    # parallel code/data uploads, so a failed upload is lost and create_or_update waits forever
    # for the file count to add up (azure-ai-ml upload_directory). On, the failure is raised.
    # The cost: a progress line on stderr when code is uploaded (rare: it is found by hash).
    kwargs: dict[str, Any] = {**RETRY_SETTINGS, "show_progress": True, "enable_telemetry": False}
    if overrides.endpoint:
        kwargs.update(_custom_cloud(overrides.endpoint))
    if overrides.ca_file:
        kwargs["connection_verify"] = overrides.ca_file
    kwargs.update(overrides.client_kwargs)
    return MLClient(
        credential,
        subscription_id=workspace.subscription_id,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.name,
        **kwargs,
    )


def _default_credential(client_id: str | None) -> TokenCredential:
    """Managed identity on Azure (user-assigned if ``AZURE_CLIENT_ID`` is set), else dev logins."""
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def _custom_cloud(endpoint: str) -> dict[str, Any]:
    """MLClient keywords for a cloud whose Resource Manager is ``endpoint``."""
    base = endpoint.rstrip("/") + "/"
    return {
        "cloud": f"custom:{base}",
        "cloud_metadata": {
            "azure_portal": "https://portal.azure.com/",
            "resource_manager": base,
            "active_directory": "https://login.microsoftonline.com/",
            "aml_resource_id": "https://ml.azure.com/",
            "storage_endpoint": "core.windows.net",
            "registry_discovery_endpoint": base,
        },
    }
