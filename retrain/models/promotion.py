"""Whether a newly trained model becomes champion: a pure decision on the score step's metrics.

The score step evaluates the new model and the champion it was given on the *same* test images
(``metrics.json``: ``accuracy`` and ``champion: {version, accuracy}``), so the comparison is
fair. The rule:

- no champion yet: the new model becomes champion;
- it was scored against another version than today's champion (one promoted meanwhile), or
  against none: not promoted, since the two never met on the same data;
- the champion could not be scored on this test data (its files are broken, or unreadable
  where the step ran): compared with the accuracy recorded when it was promoted instead, so a
  worse model never wins by default;
- otherwise promoted when it beats the champion by more than nothing and by at least
  ``PROMOTE_MIN_GAIN`` (an accuracy difference: 0.005 is half a point). A tie never promotes.

A verdict that says "not promoted" stays true whatever happens to the champion later (a run's
version is promoted once, never again), so only a promotion needs guarding (``models.delivery``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EPSILON = 1e-12  # float noise in an accuracy difference


@dataclass(frozen=True)
class Champion:
    """The model version serving as champion, as the ledger's ``champion|<model>`` row holds it."""

    model: str
    version: str
    run_id: str
    accuracy: float | None
    since: str  # when it was promoted
    previous: str | None = None  # the version it replaced
    tagged: str | None = None  # the version the registry's champion tag was last put on
    tag_error: str | None = None  # why tagging it failed for good (not retried)
    etag: str = ""

    @property
    def synced(self) -> bool:
        """Whether the registry's tag shows this champion yet."""
        return self.tagged == self.version

    @property
    def needs_tag(self) -> bool:
        """Whether a tick should (try to) move the registry's tag to this champion."""
        return not self.synced and self.tag_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "accuracy": self.accuracy,
            "since": self.since,
            "previous": self.previous,
            "registry_synced": self.synced,
            "registry_error": self.tag_error,
        }


@dataclass(frozen=True)
class Verdict:
    promoted: bool
    reason: str


def accuracy_of(metrics: Mapping[str, Any] | None) -> float | None:
    """The test accuracy in ``metrics``, if it is a number from 0 to 1."""
    value = metrics.get("accuracy") if isinstance(metrics, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= 1 else None


def decide(
    metrics: Mapping[str, Any] | None, champion: Champion | None, min_gain: float
) -> Verdict:
    """Whether a model with these score ``metrics`` replaces ``champion`` (see the module doc)."""
    accuracy = accuracy_of(metrics)
    if accuracy is None:
        return Verdict(False, "the run has no test accuracy to compare")
    if champion is None:
        return Verdict(True, "the first model: there was no champion")
    assert metrics is not None
    scored = metrics.get("champion")
    scored = scored if isinstance(scored, Mapping) else {}
    against = scored.get("version")
    if against != champion.version:
        was = f"version {against}" if against else "no champion"
        return Verdict(
            False,
            f"it was scored against {was}, but the champion is now version "
            f"{champion.version}: they never met on the same test data",
        )
    subject, on = f"the champion (version {champion.version})", " on the same data"
    champion_accuracy = accuracy_of(scored)
    if champion_accuracy is None:  # its files could not be scored here (the step says why)
        if champion.accuracy is None:
            return Verdict(True, f"{subject} could not be scored and has no recorded accuracy")
        champion_accuracy = champion.accuracy
        subject = f"the recorded accuracy of {subject}, {champion.accuracy:.2%}"
        on = " (it could not be scored on this test data)"
    gain = accuracy - champion_accuracy
    points = f"{100 * gain:+.2f} points"
    if gain > EPSILON and gain >= min_gain - EPSILON:
        return Verdict(True, f"beats {subject} by {points}{on}")
    needed = f"more than 0 and at least {100 * min_gain:+.2f}" if min_gain else "more than 0"
    return Verdict(False, f"{points} against {subject}{on}; promotion needs {needed}")
