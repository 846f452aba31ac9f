"""The landing-zone layout: ``<container>/<batch>/<file>``, and what makes a batch complete.

A batch is the folder a blob sits in (``batch-7``, or nested: ``2024/06/batch-7``). It is complete
when it holds the four Fashion-MNIST IDX files, each raw or ``.gz``. When both variants of a file
are present the raw one is used, as ``prepare_data`` does, so the run key covers exactly the four
files the pipeline will read. Pure: listing the blobs is the caller's job (``BlobStore.list``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from components.prepare_data.prepare_data import FILE_NAMES

from .. import keys
from ..storage import BlobInfo

SPLITS = {"train": FILE_NAMES[:2], "t10k": FILE_NAMES[2:]}  # (images, labels) per split


def base_name(file: str) -> str | None:
    """The IDX base name ``file`` stands for (``x.gz`` -> ``x``), or None if it is not one."""
    stem = file[:-3] if file.endswith(".gz") else file
    return stem if stem in FILE_NAMES else None


@dataclass(frozen=True)
class BlobPath:
    """Where a landed blob sits: container, batch folder and file name."""

    container: str
    batch: str
    file: str

    @classmethod
    def parse(cls, path: str) -> BlobPath | None:
        """``container/batch.../file`` -> BlobPath; None if there is no batch folder."""
        container, _, rest = path.strip("/").partition("/")
        batch, _, file = rest.rpartition("/")
        if not container or not batch or not file:
            return None
        return cls(container, batch, file)

    @property
    def prefix(self) -> str:
        return f"{self.batch}/"


@dataclass(frozen=True)
class Batch:
    """A complete batch: the blob chosen for each of the four files, keyed by base name."""

    container: str
    name: str
    files: dict[str, BlobInfo]

    @property
    def source(self) -> str:
        """``container/batch``: what run records and the run key name as the source."""
        return f"{self.container}/{self.name}"

    @property
    def versions(self) -> list[tuple[str, str]]:
        """(blob name, ETag) of exactly the four files: the batch's content version."""
        return sorted((blob.name, blob.etag) for blob in self.files.values())

    @property
    def key(self) -> str:
        return keys.run_key(self.source, self.versions)


def select_files(batch: str, listing: Iterable[BlobInfo]) -> tuple[dict[str, BlobInfo], list[str]]:
    """Pick each file's blob directly inside ``batch/`` (raw over .gz). Returns (found, missing)."""
    prefix = f"{batch}/"
    found: dict[str, BlobInfo] = {}
    for blob in listing:
        if not blob.name.startswith(prefix):
            continue
        file = blob.name[len(prefix) :]
        base = base_name(file)
        if base is None or "/" in file:
            continue
        if base not in found or file == base:  # the raw file wins over its .gz
            found[base] = blob
    missing = [name for name in FILE_NAMES if name not in found]
    return found, missing
