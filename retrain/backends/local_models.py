"""The local backend's model registry: a folder with the semantics of Azure ML's.

::

    LOCAL_MODELS_DIR/<name>/<version>/             the train step's output_model, copied
    LOCAL_MODELS_DIR/<name>/<version>/model.json   name, version, tags, source job, time

A version is written once, whole (copied under a staging name, then renamed: of two concurrent
registrations exactly one wins and the other returns it), and never changes except its tags,
as in Azure ML. The champion carries the tag ``champion: "true"``, and no other version does
once a tick has moved it (``mark_champion`` reads the tags back to be sure).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import iso, utcnow
from ..errors import PermanentError, TransientError
from ..local.status import write_json_atomic
from .base import CHAMPION_TAG, MODEL_OUTPUT, TRAIN_NODE, ModelVersion, NoModelError

if TYPE_CHECKING:
    from ..settings import Settings

MODEL_FILE = "model.json"


class LocalModelRegistry:
    """Model versions in ``LOCAL_MODELS_DIR``, registered from ``LOCAL_RUNS_DIR`` jobs."""

    def __init__(self, settings: Settings) -> None:
        self.models_dir = Path(settings.local_models_dir).resolve()
        self.runs_dir = Path(settings.local_runs_dir).resolve()

    def register(
        self, name: str, version: str, job_name: str, tags: Mapping[str, str]
    ) -> ModelVersion:
        folder = self.models_dir / name / version
        if (folder / MODEL_FILE).is_file():
            return self._read(name, version)
        source = self.runs_dir / job_name / TRAIN_NODE / MODEL_OUTPUT
        if not (source / "predictor.pt").is_file():
            raise NoModelError(
                f"job {job_name} left no trained model ({TRAIN_NODE}/{MODEL_OUTPUT}/predictor.pt)"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".staging-{version}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, staging)
            write_json_atomic(
                staging / MODEL_FILE,
                {
                    "name": name,
                    "version": version,
                    "tags": dict(tags),
                    "job_name": job_name,
                    "source": str(source),
                    "registered_at": iso(utcnow()),
                },
            )
            with contextlib.suppress(OSError):  # a concurrent registration of it won
                staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self._read(name, version)

    def model_input(self, name: str, version: str) -> str:
        return str(self.models_dir / name / version)

    def mark_champion(self, name: str, version: str) -> None:
        """Untag every other tagged version, tag this one, then read the tags back: anything
        but this one alone (another host moving the tag meanwhile) is a TransientError, so the
        ledger is not told the registry is in step, and the next tick tags it again."""
        if not (self.models_dir / name / version / MODEL_FILE).is_file():
            raise PermanentError(f"model {name}:{version} is not in the local registry")
        for other in self._tagged(name) - {version}:
            self._set_tag(name, other, None)
        self._set_tag(name, version, "true")
        left = self._tagged(name)
        if left != {version}:
            on = ", ".join(sorted(left)) or "no version"
            raise TransientError(
                f"model {name}: the champion tag is on {on} after tagging {version} "
                "(another host moving it?); the next tick tags it again"
            )

    def _tagged(self, name: str) -> set[str]:
        """The versions whose model.json carries the champion tag. One that cannot be read
        shows no tag to anyone, so it is passed over rather than stopping the move."""
        found = set()
        for document in (self.models_dir / name).glob(f"*/{MODEL_FILE}"):
            try:
                tags = self._document(document).get("tags")
            except PermanentError:
                continue
            if isinstance(tags, dict) and CHAMPION_TAG in tags:
                found.add(document.parent.name)
        return found

    def _set_tag(self, name: str, version: str, value: str | None) -> None:
        path = self.models_dir / name / version / MODEL_FILE
        document = self._document(path)
        tags = {k: v for k, v in document.get("tags", {}).items() if k != CHAMPION_TAG}
        if value is not None:
            tags[CHAMPION_TAG] = value
        write_json_atomic(path, {**document, "tags": tags})

    def _read(self, name: str, version: str) -> ModelVersion:
        folder = self.models_dir / name / version
        document = self._document(folder / MODEL_FILE)
        return ModelVersion(name, version, str(folder), document.get("tags", {}))

    @staticmethod
    def _document(path: Path) -> dict[str, Any]:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            where = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
            raise PermanentError(f"{where}: unreadable ({type(exc).__name__})") from None
        if not isinstance(document, dict):
            raise PermanentError(f"{path.parent.name}/{path.name}: not a model document")
        return document
