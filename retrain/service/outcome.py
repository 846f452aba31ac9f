"""What one blob event or settle re-check led to: the line the trigger logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What one blob event or re-check led to (logged by the trigger)."""

    # ignored | waiting | settling | superseded | deferred | rejected | queued | submitted
    # | duplicate | in_progress | failed
    action: str
    reason: str
    run_id: str | None = None

    def __str__(self) -> str:
        return f"{self.action}: {self.reason}" + (f" (run {self.run_id})" if self.run_id else "")
