"""The run record: everything known about one run, as users see it (GET /api/retrain/{id}).

Times are ISO 8601 UTC strings with a ``Z``. The record's JSON is the public contract; the ledger
only decides where it is stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..backends.base import RunStatus


@dataclass(frozen=True)
class RunRecord:
    """Everything known about one run."""

    run_id: str
    source: str  # "landing/batch-7" (container/batch) or "azureml:NAME:VERSION"
    trigger: str  # blob | http | cli
    status: RunStatus
    created_at: str
    updated_at: str | None = None
    reason: str | None = None  # why Rejected or Failed; names the file for a bad batch
    raw_status: str | None = None  # the backend's own word, e.g. "NotResponding"
    job_name: str | None = None
    data_asset: str | None = None  # "NAME:VERSION"
    studio_url: str | None = None
    run_dir: str | None = None  # local backend
    claimed_at: str | None = None  # a submission in flight (a lease); cleared when it ends
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    metrics: dict[str, Any] | None = None  # score metrics once Completed: "accuracy", ...
    # Once Completed: the registered version and whether it became champion, and why
    # ({"name", "version", "promoted", "reason", "champion_before"}; see models.py).
    model: dict[str, Any] | None = None
    blobs: list[dict[str, str]] = field(default_factory=list)  # [{"name", "etag"}] keyed on
    params: dict[str, Any] = field(default_factory=dict)  # "epochs", "experiment" asked for
    idempotency_key: str | None = None
    attempts: int = 0  # submissions tried
    slot: int | None = None  # the MAX_ACTIVE_RUNS slot it holds from admission until it ends

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The record ``data`` holds; KeyError, ValueError or TypeError if it holds none."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # tolerate newer fields
        values["status"] = RunStatus(values["status"])
        record = cls(**values)
        if not isinstance(record.run_id, str) or not isinstance(record.created_at, str):
            raise TypeError("run_id and created_at must be strings")
        return record
