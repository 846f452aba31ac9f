"""Model delivery in the run ledger: registered versions, the champion, and the completion
transaction that records both with the run.

Two more kinds of row, in the runs' own partition::

    model|<name>|<inverted-ms>|<version>   a registered version, newest first: GET /api/models
    champion|<name>                       the champion: its version, accuracy and run

A run that completes with a registered model is written in one transaction: its record (with
``model: {name, version, promoted, reason, champion_before}``), its listing and outbox rows (a
``model.promoted`` event too, when promoted), the version's ``model|`` row and, on promotion,
the champion row guarded by the ETag it was read with (or created, if there was none). Two runs
that finish together can therefore never both become champion: the second one's guard fails,
it decides again against the new champion, and loses (``promotion``).

The registry's ``champion`` tag follows the champion row after the transaction (tagging the
champion untags every other version first, so no failure leaves two, then reads the tags back);
the row notes when it is done (``tagged``) or why it cannot be (``tag_error``), and a host that
tagged a champion the row has since moved past marks the row out of step again (``sync``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..clock import parse_time, utcnow
from ..errors import PermanentError, RetrainError
from ..ledger.records import RunRecord
from ..ledger.runs import INVERT_MS, Change
from ..storage import ETagMismatch, Table
from ..storage.tables import Entity, Op
from .promotion import Champion, accuracy_of, decide

if TYPE_CHECKING:
    from ..backends.base import ModelRegistry, ModelVersion
    from ..ledger.runs import Ledger

log = logging.getLogger(__name__)

MODEL, CHAMPION = "model|", "champion|"


class ModelBook:
    """The model rows of one model name in the ledger's table."""

    def __init__(self, ledger: Ledger, name: str) -> None:
        self.table: Table = ledger.table
        self.name = name

    @property
    def champion_row(self) -> str:
        return f"{CHAMPION}{self.name}"

    def champion(self) -> Champion | None:
        """The champion (one point read), or None if there is none."""
        entity = self.table.get(self.champion_row)
        return _champion(self.name, entity) if entity else None

    def versions(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` registered versions, newest first (one range query); a row that
        cannot be shown is left out, with a warning naming it (``listing`` counts them)."""
        return [v for v in self._versions(limit) if v is not None]

    def _versions(self, limit: int) -> list[dict[str, Any] | None]:
        shown: list[dict[str, Any] | None] = []
        for entity in self.table.query(f"{MODEL}{self.name}|", limit=limit):
            try:
                shown.append(_version(entity))
            except ValueError as exc:
                log.warning("models: skipped the damaged row %s: %s", entity.row, exc)
                shown.append(None)
        return shown

    def listing(self, limit: int) -> dict[str, Any]:
        """What ``GET /api/models`` and ``python -m retrain models`` show: the newest versions,
        each flagged if champion, and the champion."""
        champion = self.champion()
        found = self._versions(limit)
        versions = [v for v in found if v is not None]
        for version in versions:
            version["champion"] = champion is not None and version["version"] == champion.version
        return {
            "model": self.name,
            "champion": champion.to_dict() if champion else None,
            "versions": versions,
            "count": len(versions),
            "skipped": len(found) - len(versions),  # damaged rows, each logged
        }

    def mark_tagged(self, champion: Champion, error: str | None = None) -> bool:
        """Note that the registry's tag is on ``champion`` now, or (``error``) why it cannot
        be put there, so no tick retries it; False if the row changed meanwhile (a newer
        champion, or another host noting the same)."""
        if error:
            done = replace(champion, tag_error=error)
        else:
            done = replace(champion, tagged=champion.version)
        try:
            self.table.transact(
                [Op("replace", self.champion_row, _champion_props(done), etag=champion.etag)]
            )
        except ETagMismatch:
            return False
        return True

    def untag_if_moved(self, champion: Champion) -> bool:
        """After tagging ``champion`` in the registry while the row moved on to another
        version: that version's tag may have been taken, so the row stops saying the registry
        is in step, and the next tick tags it again. Whether the row had moved on."""
        for _ in range(3):  # each lost race is another host's write: read again
            current = self.champion()
            if current is None or current.version == champion.version:
                return False
            if current.needs_tag:
                return True
            undone = replace(current, tagged=None)
            with suppress(ETagMismatch):
                self.table.transact(
                    [Op("replace", self.champion_row, _champion_props(undone), etag=current.etag)]
                )
                return True
        return True


class Completion:
    """The change that records a Completed run with its registered model, and the rows it adds
    to the same transaction (``Ledger.write(change, also=completion.rows)``). Each attempt reads
    the champion afresh, so a lost race is decided again."""

    def __init__(
        self,
        book: ModelBook,
        finish: Change,
        registered: ModelVersion | None,
        problem: str | None,
        min_gain: float,
    ) -> None:
        self.book = book
        self.finish = finish
        self.registered = registered
        self.problem = problem
        self.min_gain = min_gain
        self.champion: Champion | None = None

    def __call__(self, record: RunRecord) -> RunRecord | None:
        new = self.finish(record)
        if new is None:
            return None
        if self.registered is None:
            model = {
                "name": self.book.name,
                "version": None,
                "promoted": False,
                "reason": f"not registered: {self.problem or 'no model'}",
                "champion_before": None,
            }
            return replace(new, model=model)
        self.champion = self.book.champion()
        verdict = decide(new.metrics, self.champion, self.min_gain)
        model = {
            "name": self.registered.name,
            "version": self.registered.version,
            "promoted": verdict.promoted,
            "reason": verdict.reason,
            "champion_before": self.champion.version if self.champion else None,
        }
        return replace(new, model=model)

    def rows(self, new: RunRecord) -> list[Op]:
        """The version's listing row and, on promotion, the guarded champion row."""
        if self.registered is None or not new.model:
            return []
        ended = parse_time(new.ended_at) or utcnow()
        row = f"{MODEL}{self.book.name}|{INVERT_MS - int(ended.timestamp() * 1000):013d}|"
        version = _present({
            "version": self.registered.version,
            "run_id": new.run_id,
            "accuracy": accuracy_of(new.metrics),
            "registered_at": new.ended_at or "",
            "job_name": new.job_name or "",
            "data_asset": new.data_asset or "",
            "promoted": bool(new.model["promoted"]),
            "reason": new.model["reason"],
            "champion_before": new.model["champion_before"] or "",
        })  # fmt: skip
        ops = [Op("upsert", f"{row}{self.registered.version}", version)]
        if new.model["promoted"]:
            champion = Champion(
                model=self.book.name,
                version=self.registered.version,
                run_id=new.run_id,
                accuracy=accuracy_of(new.metrics),
                since=new.ended_at or "",
                previous=self.champion.version if self.champion else None,
                tagged=self.champion.tagged if self.champion else None,
            )
            props = _champion_props(champion)
            if self.champion is None:
                ops.append(Op("create", self.book.champion_row, props))
            else:
                ops.append(Op("replace", self.book.champion_row, props, etag=self.champion.etag))
        return ops


@dataclass
class ModelDesk:
    """What the sweep needs to deliver models: the registry, the book and the rule."""

    registry: ModelRegistry
    book: ModelBook
    min_gain: float

    def register(self, record: RunRecord, metrics: Mapping[str, Any] | None) -> ModelVersion:
        """Register the run's model (version = run id, so a retried sweep finds it registered).
        TransientError propagates (the run is checked again next tick); PermanentError means
        there is nothing to register."""
        assert record.job_name is not None
        return self.registry.register(
            self.book.name, record.run_id, record.job_name, model_tags(record, metrics)
        )

    def completion(
        self, finish: Change, registered: ModelVersion | None, problem: str | None
    ) -> Completion:
        return Completion(self.book, finish, registered, problem, self.min_gain)

    def sync(self) -> tuple[int, str] | None:
        """Move the registry's ``champion`` tag to the ledger's champion; the log line to write,
        if it did anything. Trouble that may pass raises (the next tick tries again); a
        permanent refusal is noted on the champion row and not retried until the next one.

        Another host may promote and tag a newer champion while this one tags a stale one:
        the registry reads the tags back (anything but this version alone raises), and a row
        that moved on meanwhile is marked out of step again (``untag_if_moved``), so the ledger
        never says "in step" while the tag is on another version, or on two."""
        champion = self.book.champion()
        if champion is None or not champion.needs_tag:
            return None
        named = f"{champion.model}:{champion.version}"
        try:
            self.registry.mark_champion(champion.model, champion.version)
        except PermanentError as exc:
            self.book.mark_tagged(champion, error=str(exc)[:300])
            return logging.ERROR, f"models: cannot tag {named} as champion ({exc}); not retried"
        except Exception:
            with suppress(RetrainError):  # the error that stopped the tagging is the one told
                self.book.untag_if_moved(champion)
            raise
        if self.book.mark_tagged(champion) or not self.book.untag_if_moved(champion):
            return logging.INFO, f"models: {named} is tagged champion in the registry"
        return logging.INFO, f"models: the champion moved on while {named} was tagged; next tick"


def model_tags(record: RunRecord, metrics: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags of a registered version: its lineage and its score, readable in the studio."""
    tags = {"run_id": record.run_id, "source": record.source}
    if record.job_name:
        tags["job_name"] = record.job_name
    if record.data_asset:
        tags["data_asset"] = record.data_asset
    accuracy = accuracy_of(metrics)
    if accuracy is not None:
        tags["accuracy"] = f"{accuracy:.4f}"
    model = metrics.get("model") if isinstance(metrics, Mapping) else None
    if isinstance(model, Mapping) and model.get("preset"):
        tags["preset"] = str(model["preset"])
    return tags


def _present(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` without None values: a table entity has no null properties."""
    return {k: v for k, v in props.items() if v is not None}


def _champion_props(champion: Champion) -> dict[str, Any]:
    return _present({
        "version": champion.version,
        "run_id": champion.run_id,
        "accuracy": champion.accuracy,
        "since": champion.since,
        "previous": champion.previous or "",
        "tagged": champion.tagged or "",
        "tag_error": champion.tag_error or "",
    })  # fmt: skip


def _champion(name: str, entity: Entity) -> Champion:
    props = entity.props
    return Champion(
        model=name,
        version=str(props.get("version", "")),
        run_id=str(props.get("run_id", "")),
        accuracy=accuracy_of(props),
        since=str(props.get("since", "")),
        previous=str(props.get("previous") or "") or None,
        tagged=str(props.get("tagged") or "") or None,
        tag_error=str(props.get("tag_error") or "") or None,
        etag=entity.etag,
    )


def _version(entity: Entity) -> dict[str, Any]:
    """A ``model|`` row as listed; ValueError if a field holds what this service never writes."""
    props = entity.props

    def text(name: str) -> str | None:
        value = props.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is a {type(value).__name__}, not text")
        return value or None

    return {
        "version": text("version") or "",
        "run_id": text("run_id") or "",
        "accuracy": accuracy_of(props),
        "registered_at": text("registered_at"),
        "job_name": text("job_name"),
        "data_asset": text("data_asset"),
        "promoted": props.get("promoted") is True,  # never the string "false"
        "reason": text("reason"),
        "champion_before": text("champion_before"),
    }
