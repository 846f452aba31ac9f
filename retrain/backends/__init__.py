"""Backends: where the shared pipeline runs. ``get_backend`` picks one from settings, lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
]


def get_backend(settings: Settings) -> Backend:
    """The backend named by ``RETRAIN_BACKEND``; its SDKs are imported only now."""
    if settings.backend == "azureml":
        from .azureml import AzureMLBackend

        return AzureMLBackend(settings)
    from .local import LocalBackend

    return LocalBackend(settings)
