"""Backends: where the shared pipeline runs. ``get_backend`` picks one from settings, lazily."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .base import (
    TERMINAL,
    Backend,
    BlobRef,
    DataAsset,
    DataSource,
    JobState,
    LandingBatch,
    LocalFolder,
    RunStatus,
    Submission,
    SubmitRequest,
)

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "TERMINAL",
    "Backend",
    "BlobRef",
    "DataAsset",
    "DataSource",
    "JobState",
    "LandingBatch",
    "LocalFolder",
    "RunStatus",
    "Submission",
    "SubmitRequest",
    "get_backend",
    "require_local_packages",
]

# What the local backend's runs import (requirements-train.txt); requirements.txt has none of it.
TRAINING_PACKAGES = ("numpy", "torch", "torchvision")


def require_local_packages(env: Mapping[str, str]) -> None:
    """With ``RETRAIN_BACKEND=local`` (the default) the pipeline trains in this interpreter: a
    missing training package is named in one line when the app starts (``find_spec`` imports
    nothing), not as a Failed run later."""
    if (env.get("RETRAIN_BACKEND", "").strip().lower() or "local") != "local":
        return
    missing = [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"RETRAIN_BACKEND=local trains on this machine and needs {', '.join(missing)}: "
            "pip install -r requirements-train.txt (or set RETRAIN_BACKEND=azureml)"
        )


def get_backend(settings: Settings) -> Backend:
    """The backend named by ``RETRAIN_BACKEND``; its SDKs are imported only now."""
    if settings.backend == "azureml":
        from .azureml import AzureMLBackend

        return AzureMLBackend(settings)
    from .local import LocalBackend

    require_local_packages({"RETRAIN_BACKEND": settings.backend})
    return LocalBackend(settings)
