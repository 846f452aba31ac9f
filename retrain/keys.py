"""Deterministic names derived from a batch's *content*.

The run key hashes where the data came from and each file's content version (blob ETag, or a
local file's digest). Redelivered events and concurrent firings for the same four files get the
same key; a re-upload gets a new one. The key fixes the data asset version and the Azure ML job
name too, so even a race past the ledger cannot start a second job: the service refuses it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

KEY_LENGTH = 16  # hex digits: 64 bits, ample for one workspace's batches
RUN_KEY = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")  # what a run key looks like


def run_key(source: str, versions: Iterable[tuple[str, str]]) -> str:
    """Key for ``source`` (e.g. ``landing/batch-7``) whose files have these (name, version)s."""
    digest = hashlib.sha256(source.encode())
    for name, version in sorted(versions):
        digest.update(b"\0" + name.encode() + b"\0" + version.strip('"').encode())
    return digest.hexdigest()[:KEY_LENGTH]


def job_name(key: str) -> str:
    """Azure ML job name for a run key (letters, digits, '-'; starts with a letter)."""
    return f"fashion-retrain-{key}"


def data_version(key: str) -> str:
    """Data asset version for a run key."""
    return key


def with_params(
    versions: Iterable[tuple[str, str]], params: Mapping[str, object]
) -> list[tuple[str, str]]:
    """``versions`` plus one ``param:NAME`` entry per parameter set (None: left out), so a run
    key covers the parameters as well as the content. The webhook and the command line both key
    their runs this way."""
    asked = [(f"param:{name}", str(value)) for name, value in params.items() if value is not None]
    return [*versions, *asked]
