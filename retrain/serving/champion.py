"""Which version the local registry tags champion: what ``python -m retrain serve`` serves.

It reads ``LOCAL_MODELS_DIR/<name>/*/model.json`` (``backends.local_models`` writes them) and
finds the version tagged ``champion: "true"``. Moving the tag untags the old champion before it
tags the new one, so a reader can, for a moment, find none: the caller then keeps serving what
it serves. Were two ever tagged, the newest registration wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import CHAMPION_TAG
from ..backends.local_models import MODEL_FILE


@dataclass(frozen=True)
class ChampionFolder:
    name: str
    version: str
    folder: Path


def find_champion(models_dir: Path, name: str) -> ChampionFolder | None:
    """The champion's folder in the local registry, or None when no version is tagged (yet)."""
    tagged: list[tuple[str, str, Path]] = []
    for document in (Path(models_dir) / name).glob(f"*/{MODEL_FILE}"):
        try:
            data = json.loads(document.read_text())
        except (OSError, ValueError):
            continue  # being rewritten, or damaged: the registry's own readers report it
        tags = data.get("tags") if isinstance(data, dict) else None
        if isinstance(tags, dict) and tags.get(CHAMPION_TAG) == "true":
            when = str(data.get("registered_at", ""))
            tagged.append((when, document.parent.name, document.parent))
    if not tagged:
        return None
    _, version, folder = max(tagged)
    return ChampionFolder(name, version, folder)
