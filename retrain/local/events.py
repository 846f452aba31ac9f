"""The local executor's job events: Azure ML's ``RunStatusChanged``, in its Event Grid schema.

The executor writes one file per status change under ``RUN_DIR/events/`` (the pipeline's own
changes, and each step's start under the step's own job name, as Azure ML's child jobs do); the
stand-in for the Functions host (``retrain.emulators.functions_host``) delivers them to the
``job_events`` function as ``func.EventGridEvent`` objects and deletes each once delivered, the
way Event Grid would deliver the workspace's events.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from .status import now, write_json_atomic

EVENTS_DIR = "events"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
TOPIC = (
    "/subscriptions/local/resourceGroups/local"
    "/providers/Microsoft.MachineLearningServices/workspaces/local"
)


def job_event(job_name: str, status: str, experiment: str, tags: dict[str, str]) -> dict[str, Any]:
    """One ``RunStatusChanged`` event as Event Grid delivers it (``runId`` is the job name)."""
    return {
        "id": str(uuid.uuid4()),
        "topic": TOPIC,
        "subject": f"experiment/{experiment}/job/{job_name}",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": now().isoformat(),
        "dataVersion": "2",
        "data": {
            "experimentName": experiment,
            "runId": job_name,
            "runType": "azureml.PipelineRun",
            "runTags": tags,
            "runStatus": status,
        },
    }


def emit(run_dir: Path, event: dict[str, Any]) -> None:
    """Spool ``event`` for delivery (named so that files sort in the order they were written)."""
    folder = Path(run_dir) / EVENTS_DIR
    folder.mkdir(exist_ok=True)
    write_json_atomic(folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.json", event)


def pending(runs_dir: Path) -> list[Path]:
    """Every spooled event under ``runs_dir``'s run folders, oldest first."""
    return sorted(Path(runs_dir).glob(f"*/{EVENTS_DIR}/*.json"), key=lambda p: p.name)


def read_event(path: Path) -> dict[str, Any] | None:
    """A spooled event, or None if it is unreadable (it is then dropped)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
