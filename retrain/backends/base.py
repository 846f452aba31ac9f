"""The contract between the service and the places a pipeline runs (``local`` | ``azureml``).

The service decides *what* to run (run key, job name, data version); a backend only carries it
out and reports the job's state. Both backends run the job made by ``pipeline_builder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import PermanentError

if TYPE_CHECKING:
    from pipeline_builder import PipelineSettings


class RunStatus(str, Enum):
    """Ledger statuses. A run is Waiting only while its batch is incomplete, and Queued while
    ``MAX_ACTIVE_RUNS`` runs are Submitted or Running (it keeps its key and data version)."""

    WAITING = "Waiting"
    REJECTED = "Rejected"
    QUEUED = "Queued"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {RunStatus.REJECTED, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED}
)


@dataclass(frozen=True)
class BlobRef:
    """One landed blob, pinned to the content version (ETag) the run was keyed on."""

    name: str  # full blob name inside the container, e.g. "batch-7/train-images-idx3-ubyte.gz"
    url: str
    etag: str


@dataclass(frozen=True)
class LandingBatch:
    """A complete batch in the landing container: ``<container>/<batch>/<file>``."""

    container: str
    batch: str
    blobs: tuple[BlobRef, ...]


@dataclass(frozen=True)
class DataAsset:
    """An existing Azure ML data asset, ``azureml:NAME:VERSION``."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class LocalFolder:
    """A folder of the four IDX files on this machine (command line only)."""

    path: Path


DataSource = LandingBatch | DataAsset | LocalFolder


@dataclass(frozen=True)
class SubmitRequest:
    """Everything a backend needs to run one pipeline, all of it decided by the service."""

    run_id: str  # the run key: deterministic per batch content
    job_name: str  # deterministic, so the service itself refuses a duplicate
    data: DataSource
    data_version: str  # version to register a LandingBatch/LocalFolder under
    pipeline: PipelineSettings  # job_name already set


@dataclass(frozen=True)
class Submission:
    """What a backend reports back after (or instead of repeating) a submission."""

    job_name: str
    status: RunStatus  # Submitted or Running (or terminal if it was already over)
    data_asset: str | None = None  # "NAME:VERSION" when a data asset was registered/used
    studio_url: str | None = None
    run_dir: str | None = None  # local backend: the run folder
    already_existed: bool = False


@dataclass(frozen=True)
class JobState:
    """A job's state as the timer records it."""

    status: RunStatus
    raw_status: str  # the backend's own word, e.g. "NotResponding"
    metrics: Mapping[str, Any] | None = None  # score metrics once Completed; has "accuracy"
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Where a pipeline runs. Raise TransientError for retryable trouble, PermanentError else.

    A backend with a model registry offers it as ``models`` (a ``ModelRegistry``, see
    ``registry_of``); one without (a test's) completes runs with no model delivery."""

    name: str

    def submit(self, request: SubmitRequest) -> Submission:
        """Run ``request`` once; a repeat for the same job name returns the existing job."""
        ...

    def job_state(self, job_name: str) -> JobState:
        """The job's current state, mapped onto ``RunStatus``."""
        ...


TRAIN_NODE, MODEL_OUTPUT = "train_node", "output_model"  # where a run's trained model is
CHAMPION_TAG = "champion"  # the registry tag ("true") on the champion version


class NoModelError(PermanentError):
    """The job left no trained model to register: the run completes without one. (Any other
    registry error leaves the run open, so a missing role or an outage loses no model.)"""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version, as either registry holds it."""

    name: str
    version: str
    path: str  # its files: a local folder, or azureml://jobs/<train step>/outputs/output_model
    tags: Mapping[str, str] = field(default_factory=dict)


class ModelRegistry(Protocol):
    """Where trained models are registered: Azure ML's model registry, or a folder here.

    The ledger decides which version is champion; the registry shows it (a ``champion`` tag),
    so users see it with the SDK, the CLI or the studio too.
    """

    def register(
        self, name: str, version: str, job_name: str, tags: Mapping[str, str]
    ) -> ModelVersion:
        """Register the model the job's train step wrote as ``name:version``; a repeat returns
        the existing version. NoModelError when the job left no trained model."""
        ...

    def model_input(self, name: str, version: str) -> str:
        """How a pipeline names this version as an input (the score step's champion)."""
        ...

    def mark_champion(self, name: str, version: str) -> None:
        """Tag ``version`` as champion and untag every other version that carries the tag
        (so no failure, on any host, can leave two); repeatable."""
        ...


def registry_of(backend: object) -> ModelRegistry | None:
    """The backend's model registry (its ``models``), or None if it has none."""
    return getattr(backend, "models", None)
