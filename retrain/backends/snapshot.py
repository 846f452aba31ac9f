"""A landing batch as an immutable data version: its four blobs copied, server-side and pinned
to the ETags the run was keyed on, to ``DATASETS_CONTAINER/<DATA_ASSET_NAME>/<version>/``.

Both backends read a run's data from there, so "data version" means the same bytes on Azure ML
and locally, whatever lands in the landing folder afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SubmissionError
from ..storage import AlreadyExists, ETagMismatch

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage import BlobStore
    from .base import LandingBatch


def dataset_prefix(settings: Settings, version: str) -> str:
    """The version's folder inside the datasets container, ending in '/'."""
    return f"{settings.data_asset_name}/{version}/"


def snapshot_batch(
    store: BlobStore, settings: Settings, batch: LandingBatch, version: str
) -> list[str]:
    """Copy the batch to its data version's folder (idempotent); the copies' blob names.

    A source that changed since it was keyed is refused: the new content gets its own run."""
    prefix = dataset_prefix(settings, version)
    names = []
    for blob in batch.blobs:
        dst = prefix + blob.name.rpartition("/")[2]
        try:
            store.snapshot(batch.container, blob.name, blob.etag, settings.datasets_container, dst)
        except AlreadyExists:
            raise SubmissionError(
                f"data version {version}: {settings.datasets_container}/{dst} already holds "
                f"a copy of other content, not {batch.container}/{blob.name}"
            ) from None
        except ETagMismatch:
            raise SubmissionError(
                f"{blob.name}: changed since the run was keyed on it; "
                "the new content gets its own run"
            ) from None
        names.append(dst)
    return names
