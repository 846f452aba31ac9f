"""``status.json`` of a local run: the contract between the executor, the LocalBackend and the CLI.

The executor replaces the file atomically at every change; readers (``python -m retrain status``,
the LocalBackend's ``job_state``) see either the old or the new document, never half of one.
``RunSummary`` is how a finished run is reported: the CLI prints it and ``--json`` serialises it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError


def now() -> datetime:
    return datetime.now(timezone.utc)


def write_status(run_dir: Path, status: Mapping[str, Any]) -> None:
    """Replace ``RUN_DIR/status.json`` atomically, so a reader never sees half a file.

    Fields: job_name, status (Running | Completed | Failed), step (node running, or the one that
    failed; null when done), error, started_at / ended_at (ISO 8601 UTC), duration_s, steps
    ({node: {status, started_at, ended_at, duration_s}} for each node that has started), metrics
    (the score step's metrics.json once Completed, with "accuracy"), outputs ({node: {output:
    path}}), pid (the executor's process).
    """
    write_json_atomic(run_dir / "status.json", status)


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to a temporary name beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """``status.json`` of a run folder, or None if there is none.

    A run that says Running but whose process is gone (killed, machine restarted) is reported as
    Failed, so no reader waits on it forever.
    """
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{run_dir}/status.json: unreadable ({exc})") from None
    pid = status.get("pid")
    if status.get("status") == "Running" and isinstance(pid, int) and not process_alive(pid):
        status.update(status="Failed", error=f"the run's process (pid {pid}) is gone")
    return status


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): kill(0) is all we know
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass
class RunSummary:
    """How a local run ended: what the command line prints and ``--json`` serialises."""

    status: str  # Completed | Failed
    accuracy: float | None
    run_dir: str
    job_name: str
    error: str | None = None
    duration_s: float | None = None
    metrics: dict[str, Any] | None = None
    step: str | None = None  # the step that failed
    steps: dict[str, float | None] | None = None  # seconds each step took, in run order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_status(cls, run_dir: Path, status: Mapping[str, Any]) -> RunSummary:
        metrics = status.get("metrics")
        steps = status.get("steps")
        return cls(
            status=status.get("status", "Unknown"),
            accuracy=(metrics or {}).get("accuracy"),
            run_dir=str(run_dir),
            job_name=status.get("job_name") or Path(run_dir).name,
            error=status.get("error"),
            duration_s=status.get("duration_s"),
            metrics=metrics,
            step=status.get("step") if status.get("status") == "Failed" else None,
            steps={name: s.get("duration_s") for name, s in steps.items()} if steps else None,
        )
