"""Where the local registry's models are being served: one small file per running server.

``python -m retrain serve`` writes ``LOCAL_MODELS_DIR/<name>/.serving/<port>.json`` (the version
it serves, its URL, its pid, since when) when it starts and at every swap, and removes it when it
stops; ``python -m retrain models`` lists those whose process still runs (a server killed
with -9 leaves its file, which is then ignored).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..clock import iso, utcnow
from ..local.status import process_alive, write_json_atomic

FOLDER = ".serving"


def _path(models_dir: Path, name: str, port: int) -> Path:
    return Path(models_dir) / name / FOLDER / f"{port}.json"


def record_serving(models_dir: Path, name: str, version: str, url: str, port: int) -> None:
    path = _path(models_dir, name, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": version, "url": url, "pid": os.getpid(), "since": iso(utcnow())}
    write_json_atomic(path, document)


def forget_serving(models_dir: Path, name: str, port: int) -> None:
    _path(models_dir, name, port).unlink(missing_ok=True)


def served(models_dir: Path, name: str) -> list[dict[str, Any]]:
    """The running servers of ``name``'s models, by port: version, url, pid, since."""
    found = []
    for path in sorted((Path(models_dir) / name / FOLDER).glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = document.get("pid") if isinstance(document, dict) else None
        if isinstance(pid, int) and process_alive(pid):
            found.append(document)
    return found
