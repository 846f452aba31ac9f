"""The local backend: the shared pipeline on this machine, in the background.

``submit`` gathers the input (a landing batch's data version: its four blobs copied, pinned to the
ETags the run was keyed on, into the datasets container, then downloaded from there; or a local
folder as it is) into a staging folder, writes ``status.json``
(Submitted), renames the folder to ``LOCAL_RUNS_DIR/<job name>`` (atomic: of two concurrent
submits exactly one wins, the other returns the existing run) and starts
``python -m retrain run <input> --backend local --run-dir <dir> --job-name <name>`` detached, its
output in ``run.log``, so the trigger returns at once. The executor keeps ``status.json`` up to
date; ``job_state`` reads it, and reports Failed when the process died without finishing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, SubmissionError
from ..local.executor import process_alive, write_json_atomic
from ..settings import PROJECT_ROOT
from .base import (
    DataAsset,
    JobState,
    LandingBatch,
    LocalFolder,
    RunStatus,
    Submission,
    SubmitRequest,
)

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage import BlobStore
    from .local_models import LocalModelRegistry

STATUS_FILE, LAUNCH_FILE, LOG_FILE = "status.json", "launch.json", "run.log"
NEVER_STARTED = timedelta(minutes=5)  # Submitted with no process after this: the launch died
STATUSES = {
    "Submitted": RunStatus.SUBMITTED,
    "Running": RunStatus.RUNNING,
    "Completed": RunStatus.COMPLETED,
    "Failed": RunStatus.FAILED,
    "Canceled": RunStatus.CANCELED,
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LocalBackend:
    """Runs each job as a detached ``python -m retrain run`` under ``LOCAL_RUNS_DIR``."""

    name = "local"

    def __init__(self, settings: Settings, store: BlobStore | None = None) -> None:
        self.settings = settings
        self.runs_dir = Path(settings.local_runs_dir).resolve()
        self._store = store
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    @property
    def models(self) -> LocalModelRegistry:
        """The model registry beside the runs: ``LOCAL_MODELS_DIR``."""
        from .local_models import LocalModelRegistry

        return LocalModelRegistry(self.settings)

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            from ..storage import BlobStore

            self._store = BlobStore(self.settings)
        return self._store

    # --- submit ----------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest) -> Submission:
        if isinstance(request.data, DataAsset):
            raise SubmissionError(
                f"data: the local backend cannot read Azure ML data asset {request.data.uri}; "
                "use RETRAIN_BACKEND=azureml, or give a landing batch"
            )
        run_dir = self.runs_dir / request.job_name
        if (run_dir / STATUS_FILE).exists():
            return self._existing(request.job_name, run_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        staging = self.runs_dir / f".staging-{request.job_name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            input_dir = self._gather(request, staging)
            write_json_atomic(
                staging / STATUS_FILE,
                {
                    "job_name": request.job_name,
                    "status": "Submitted",
                    "step": None,
                    "error": None,
                    "submitted_at": _now().isoformat(),
                    "started_at": None,
                    "ended_at": None,
                    "duration_s": None,
                    "metrics": None,
                    "pid": None,
                },
            )
            try:
                staging.rename(run_dir)
            except OSError:  # another submit of the same job name won the rename
                return self._existing(request.job_name, run_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if input_dir.is_relative_to(staging):
            input_dir = run_dir / input_dir.relative_to(staging)
        self._start(request, run_dir, input_dir)
        return Submission(request.job_name, RunStatus.SUBMITTED, run_dir=str(run_dir))

    def _gather(self, request: SubmitRequest, staging: Path) -> Path:
        """The run's input folder: a landing batch's data version (snapshotted first, then
        read from the datasets container, as Azure ML reads it), or the local folder itself."""
        data = request.data
        if isinstance(data, LocalFolder):
            return Path(data.path).resolve()
        assert isinstance(data, LandingBatch)
        from .snapshot import snapshot_batch

        input_dir = staging / "input"
        input_dir.mkdir()
        container = self.settings.datasets_container
        for name in snapshot_batch(self.store, self.settings, data, request.data_version):
            self.store.download(container, name, input_dir / name.rpartition("/")[2])
        return input_dir

    def _start(self, request: SubmitRequest, run_dir: Path, input_dir: Path) -> None:
        pipeline = request.pipeline
        argv = [
            sys.executable, "-m", "retrain", "run", str(input_dir),
            "--backend", "local", "--run-dir", str(run_dir), "--job-name", request.job_name,
            "--epochs", str(pipeline.epochs), "--batch-size", str(pipeline.batch_size),
            "--seed", str(pipeline.seed),
            "--experiment", pipeline.experiment_name, "--json",
        ]  # fmt: skip
        if pipeline.learning_rate is not None:  # else train's auto: the preset's own
            argv += ["--learning-rate", str(pipeline.learning_rate)]
        if pipeline.champion_model:  # score compares the new model with it
            argv += ["--champion-model", pipeline.champion_model]
            if pipeline.champion_version:
                argv += ["--champion-version", pipeline.champion_version]
        with (run_dir / LOG_FILE).open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: survives the invocation, not killed with it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        with self._lock:
            self._children[request.job_name] = proc
        write_json_atomic(run_dir / LAUNCH_FILE, {"pid": proc.pid, "argv": argv})

    def _existing(self, job_name: str, run_dir: Path) -> Submission:
        state = self.job_state(job_name)
        return Submission(job_name, state.status, run_dir=str(run_dir), already_existed=True)

    # --- state -----------------------------------------------------------------------------------

    def job_state(self, job_name: str) -> JobState:
        from ..local.executor import read_status

        self._reap(job_name)
        run_dir = self.runs_dir / job_name
        status = read_status(run_dir) if run_dir.is_dir() else None
        if status is None:
            raise NotFoundError(f"no local run {job_name} in {self.runs_dir}")
        raw = str(status.get("status"))
        if raw == "Submitted" and self._launch_died(run_dir, status):
            status = read_status(run_dir) or status  # it may have finished meanwhile
            raw = str(status.get("status"))
            if raw == "Submitted":
                status = {**status, "error": _launch_error(run_dir)}
                raw = "Failed"
        return JobState(
            status=STATUSES.get(raw, RunStatus.RUNNING),
            raw_status=raw,
            metrics=status.get("metrics") if raw == "Completed" else None,
            error=status.get("error"),
            started_at=_time(status.get("started_at")),
            ended_at=_time(status.get("ended_at")),
            details={"run_dir": str(run_dir), "step": status.get("step")},
        )

    def _reap(self, job_name: str) -> None:
        """Collect our own finished child, so its pid does not linger as a zombie."""
        with self._lock:
            proc = self._children.get(job_name)
            if proc is not None and proc.poll() is not None:
                del self._children[job_name]

    def _launch_died(self, run_dir: Path, status: dict[str, Any]) -> bool:
        try:
            pid = json.loads((run_dir / LAUNCH_FILE).read_text())["pid"]
        except (OSError, ValueError, KeyError):
            submitted = _time(status.get("submitted_at"))
            return submitted is not None and _now() - submitted > NEVER_STARTED
        return not process_alive(pid)


def _launch_error(run_dir: Path) -> str:
    lines = []
    with contextlib.suppress(OSError):
        lines = [ln for ln in (run_dir / LOG_FILE).read_text(errors="replace").splitlines() if ln]
    last = lines[-1].strip() if lines else "no output"
    return f"the local run exited before it started: {last} (see {run_dir / LOG_FILE})"


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
