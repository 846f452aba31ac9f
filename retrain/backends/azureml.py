"""Run the shared pipeline on Azure Machine Learning, through the real azure-ai-ml SDK.

Submitting a run means: register (or reuse) the data version, build the job with the shared
builder, and create it under its deterministic name. Every step is idempotent, so a retried
trigger converges on the same job: the job is looked up first, a data version that already
exists with the same path is reused, and the service's answer to a PUT of an existing job name
is read back instead of failing (any other "already exists" is an error of its own).

A job's state is its status mapped onto the ledger's, and, once it has begun, its start and end
times from run history (the service's clock, not the sweep's). azure.ai.ml is imported only
inside these methods; what its errors mean is ``azureml_errors``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationError,
    NotFoundError,
    SubmissionError,
    TransientError,
    is_transient_status,
)
from .azureml_client import get_client
from .azureml_components import ensure_registered
from .azureml_errors import is_job_name_conflict, one_line, translate
from .base import (
    DataAsset,
    JobState,
    LandingBatch,
    LocalFolder,
    RunStatus,
    Submission,
    SubmitRequest,
)
from .snapshot import dataset_prefix, snapshot_batch

if TYPE_CHECKING:
    from azure.ai.ml import Input, MLClient
    from azure.ai.ml.entities import Job

    from ..settings import Settings
    from ..storage import BlobStore
    from .azureml_models import AzureMLModelRegistry

log = logging.getLogger(__name__)

# Azure ML job statuses -> ledger statuses; the record keeps the raw word too. NotResponding
# (no heartbeat for a while) is not an end: the service says a run can go from it back to any
# earlier state, so the run stays open as Running. Paused ("paused by users") will not finish by
# itself, so it closes the run as Canceled, as the SDK counts it terminal.
STATUS_MAP: dict[str, RunStatus] = {
    "NotStarted": RunStatus.SUBMITTED,
    "Queued": RunStatus.SUBMITTED,
    "Preparing": RunStatus.SUBMITTED,
    "Provisioning": RunStatus.SUBMITTED,
    "Starting": RunStatus.SUBMITTED,
    "Running": RunStatus.RUNNING,
    "Finalizing": RunStatus.RUNNING,
    "CancelRequested": RunStatus.RUNNING,
    "Completed": RunStatus.COMPLETED,
    "Failed": RunStatus.FAILED,
    "Canceled": RunStatus.CANCELED,
    "NotResponding": RunStatus.RUNNING,
    "Paused": RunStatus.CANCELED,
}
RESULT_OUTPUT = "output_result"  # the pipeline output bound to score_node's output_result
METRICS_FILE = "metrics.json"


def map_status(raw: str | None) -> RunStatus:
    """The ledger status for an Azure ML status; unknown words count as still running."""
    return STATUS_MAP.get(raw or "", RunStatus.RUNNING)


class AzureMLBackend:
    """Registers data versions, submits the pipeline and reads job states in one workspace."""

    name = "azureml"

    def __init__(self, settings: Settings, store: BlobStore | None = None) -> None:
        self._settings = settings
        self._store = store

    @property
    def store(self) -> BlobStore:
        """The data account's blobs: where a landed batch's data version is snapshotted."""
        if self._store is None:
            from ..storage import BlobStore

            self._store = BlobStore(self._settings)
        return self._store

    @property
    def client(self) -> MLClient:
        return get_client(self._settings)

    @property
    def models(self) -> AzureMLModelRegistry:
        """The workspace's model registry."""
        from .azureml_models import AzureMLModelRegistry

        return AzureMLModelRegistry(self._settings)

    # ---- submission --------------------------------------------------------------------------
    def submit(self, request: SubmitRequest) -> Submission:
        """Create the job once; a repeat for the same job name returns the existing job."""
        with translate(f"submit Azure ML job {request.job_name}"):
            client = self.client
            existing = _get_job(client, request.job_name)
            if existing is not None:
                return self._submission(existing, request, already_existed=True)
            data_input = self._data_input(client, request)
            from pipeline_builder import build_pipeline

            versions = ensure_registered(client, self._settings, request.pipeline.environment)
            job = build_pipeline(data_input, request.pipeline, registered=versions)
            try:
                created = client.jobs.create_or_update(
                    job, experiment_name=request.pipeline.experiment_name
                )
            except Exception as exc:
                if not is_job_name_conflict(exc, request.job_name):
                    raise
                log.info("job %s already exists; reading it back", request.job_name)
                existing = _get_job(client, request.job_name)
                if existing is None:  # the service's word against its own read: say what it said
                    raise
                return self._submission(existing, request, already_existed=True)
            return self._submission(created, request, already_existed=False)

    def _submission(self, job: Job, request: SubmitRequest, *, already_existed: bool):
        return Submission(
            job_name=job.name or request.job_name,
            status=map_status(_raw_status(job)),
            data_asset=self._asset_id(request),
            studio_url=job.studio_url,
            already_existed=already_existed,
        )

    def _asset_id(self, request: SubmitRequest) -> str:
        if isinstance(request.data, DataAsset):
            return f"{request.data.name}:{request.data.version}"
        return f"{self._settings.data_asset_name}:{request.data_version}"

    # ---- data versions -----------------------------------------------------------------------
    def _data_input(self, client: MLClient, request: SubmitRequest) -> Input:
        """The pipeline input for ``request.data``, registering a new data version if needed."""
        from azure.ai.ml import Input
        from azure.ai.ml.constants import AssetTypes

        data = request.data
        if isinstance(data, DataAsset):
            asset = _get_data(client, data.name, data.version)
            if asset is None:
                raise NotFoundError(f"data asset {data.uri} not found in the workspace")
            if asset.type != AssetTypes.URI_FOLDER:
                raise SubmissionError(f"data asset {data.uri} is {asset.type}, expected uri_folder")
        else:
            self._register(client, request)
            data = DataAsset(self._settings.data_asset_name, request.data_version)
        return Input(type=AssetTypes.URI_FOLDER, path=data.uri)

    def _register(self, client: MLClient, request: SubmitRequest) -> None:
        """Create data version ``request.data_version``, or reuse an identical existing one.

        A landing batch is first snapshotted (``snapshot_batch``): the version points at its
        immutable copy in the datasets container, never at the landing folder."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        name, version = self._settings.data_asset_name, request.data_version
        source = request.data
        if isinstance(source, LandingBatch):
            path, tags = self._snapshot(source, version), batch_tags(source)
            description = f"Landed batch {source.container}/{source.batch}, copied to {path}"
        elif isinstance(source, LocalFolder):
            path, tags = str(source.path), {"source": str(source.path)}
            description = f"Uploaded from {source.path}"
        else:  # pragma: no cover - the union is exhausted above
            raise TypeError(f"unsupported data source {source!r}")
        tags["run_id"] = request.run_id

        existing = _get_data(client, name, version)
        if existing is None:
            asset = Data(
                name=name,
                version=version,
                type=AssetTypes.URI_FOLDER,
                path=path,
                description=description,
                tags=tags,
            )
            try:
                client.data.create_or_update(asset)
                return
            except Exception as exc:  # a concurrent registration of the same content
                existing = _get_data(client, name, version)
                if existing is None:
                    raise exc from None
        if isinstance(source, LandingBatch) and _strip(existing.path) != _strip(path):
            raise SubmissionError(
                f"data asset {name}:{version} already exists at {existing.path}, not {path}"
            )

    def _snapshot(self, batch: LandingBatch, version: str) -> str:
        """Copy the batch to its data version's folder; that folder's URL, ending in '/'."""
        batch_folder_url(batch)  # one folder, or a clear error before anything is copied
        snapshot_batch(self.store, self._settings, batch, version)
        prefix = dataset_prefix(self._settings, version)
        return self.store.url(self._settings.datasets_container, prefix)

    # ---- status ------------------------------------------------------------------------------
    def job_state(self, job_name: str) -> JobState:
        """The job's state: its times once it has begun, and for Completed the score step's
        metrics when they can be read."""
        with translate(f"read Azure ML job {job_name}"):
            client = self.client
            job = _get_job(client, job_name)
            if job is None:
                _require_workspace(client)  # a wrong workspace must not read as a lost job
                raise NotFoundError(f"Azure ML job {job_name} not found in the workspace")
            raw = _raw_status(job)
            status = map_status(raw)
            details: dict[str, Any] = {"studio_url": job.studio_url}
            metrics, error = None, None
            if status is RunStatus.COMPLETED:
                metrics, problem = _score_metrics(client, job_name)
                if problem:
                    details["metrics_error"] = problem
            elif status is RunStatus.FAILED or status is RunStatus.CANCELED:
                error = f"Azure ML job {job_name} ended {raw}; see {job.studio_url}"
            created = getattr(job.creation_context, "created_at", None)
            if created is not None:
                details["created_at"] = created.isoformat()
            started = ended = None
            if status is not RunStatus.SUBMITTED:  # it has begun: run history has its times
                started, ended, problem = _run_times(client, job_name)
                if problem:
                    details["times_error"] = problem
            return JobState(
                status=status,
                raw_status=raw,
                metrics=metrics,
                error=error,
                started_at=started,
                ended_at=ended if status.terminal else None,
                details=details,
            )


# ---- helpers -----------------------------------------------------------------------------------
def batch_folder_url(batch: LandingBatch) -> str:
    """The blob URL of the batch's landing folder, ending in '/' (its blobs must share one)."""
    folders = {blob.url.rsplit("/", 1)[0] for blob in batch.blobs}
    if len(folders) != 1:
        raise SubmissionError(
            f"batch {batch.container}/{batch.batch}: blobs are not in one folder: {sorted(folders)}"
        )
    return folders.pop() + "/"


def batch_tags(batch: LandingBatch) -> dict[str, str]:
    """Tags that name the version's source: the landing folder, each file's URL and the ETag
    its copy was taken at."""
    tags = {"source": f"{batch.container}/{batch.batch}"}
    for blob in sorted(batch.blobs, key=lambda b: b.name):
        file = blob.name.rsplit("/", 1)[-1]
        tags[f"url:{file}"] = blob.url
        tags[f"etag:{file}"] = blob.etag.strip('"')
    return tags


def _raw_status(job: Job) -> str:
    """The service's status word (the SDK may hand back an enum member)."""
    return str(getattr(job.status, "value", job.status) or "Unknown")


def _require_workspace(client: MLClient) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        client.workspaces.get(client.workspace_name)
    except ResourceNotFoundError as exc:
        raise ConfigurationError(
            f"Azure ML workspace {client.workspace_name} not found in resource group "
            f"{client.resource_group_name} (AZUREML_WORKSPACE_NAME, AZURE_RESOURCE_GROUP)"
        ) from exc


def _strip(path: str | None) -> str:
    return (path or "").rstrip("/")


def _get_job(client: MLClient, name: str) -> Job | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.jobs.get(name)
    except ResourceNotFoundError:
        return None


def _get_data(client: MLClient, name: str, version: str):
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return client.data.get(name=name, version=version)
    except ResourceNotFoundError:
        return None


def _run_times(client: MLClient, job_name: str) -> tuple[datetime | None, datetime | None, str]:
    """(start, end, problem) of the job's run in run history: ``startTimeUtc``/``endTimeUtc``,
    the record ``jobs.download`` also reads. One GET, through the SDK's own run-history client
    (it has no public call for a run's times). Transient trouble raises, so the sweep asks again
    next tick instead of stamping its own clock; other trouble is reported, not fatal."""
    from azure.core.exceptions import HttpResponseError

    try:
        run = client.jobs._runs_operations.get_run(job_name)
    except HttpResponseError as exc:
        if is_transient_status(exc.status_code):
            raise
        return None, None, f"run history of {job_name}: {one_line(exc)}"
    return _utc(run.start_time_utc), _utc(run.end_time_utc), ""


def _utc(value: datetime | None) -> datetime | None:
    """A run-history time, timezone-aware (the service's times are UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _storage_cause(exc: BaseException) -> str | None:
    """What storage said, if an azure-core error is in ``exc``'s chain (the SDK wraps the
    blob client's errors in its own types): "HTTP <status>" or the error's type."""
    from azure.core.exceptions import AzureError, HttpResponseError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, HttpResponseError) and cause.status_code is not None:
            return f"HTTP {cause.status_code}"
        if isinstance(cause, AzureError):
            return type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return None


def _score_metrics(client: MLClient, job_name: str) -> tuple[Mapping[str, Any] | None, str | None]:
    """Download the pipeline's ``output_result`` and read the score step's ``metrics.json``.

    Returns (metrics, None) or (None, why not). Transient trouble raises, so the sweep retries
    on its next tick instead of recording a Completed run without its accuracy.
    """
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    with tempfile.TemporaryDirectory(prefix="retrain-metrics-") as tmp:
        try:
            client.jobs.download(job_name, download_path=tmp, output_name=RESULT_OUTPUT)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(
                f"download {RESULT_OUTPUT} of {job_name}: {one_line(exc)}"
            ) from exc
        except HttpResponseError as exc:
            if is_transient_status(exc.status_code):
                message = f"HTTP {exc.status_code}: {one_line(exc)}"
                raise TransientError(f"download {RESULT_OUTPUT} of {job_name}: {message}") from exc
            return None, f"could not download {RESULT_OUTPUT}: {one_line(exc)}"
        except Exception as exc:  # the SDK raises its own types for missing outputs, etc.
            if _storage_cause(exc):  # the SDK wraps a blob error after its retries: may pass
                raise TransientError(
                    f"download {RESULT_OUTPUT} of {job_name}: {type(exc).__name__} "
                    f"(storage {_storage_cause(exc)}); will retry"
                ) from exc
            return None, f"could not download {RESULT_OUTPUT}: {one_line(exc)}"
        found = sorted(Path(tmp).rglob(METRICS_FILE))
        if not found:
            return None, f"{RESULT_OUTPUT} of {job_name} has no {METRICS_FILE}"
        try:
            metrics = json.loads(found[0].read_text())
        except ValueError as exc:
            return None, f"{METRICS_FILE} of {job_name} is not JSON: {exc}"
        if not isinstance(metrics, dict) or "accuracy" not in metrics:
            return None, f"{METRICS_FILE} of {job_name} has no accuracy"
        return metrics, None
