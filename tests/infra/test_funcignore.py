"""The deployment package holds what the app runs and nothing else: .funcignore keeps the
run-time files and drops every other top-level entry, including local caches and run output."""

from __future__ import annotations

import fnmatch
import subprocess

from infrahelpers import ROOT

# What the app needs at run time (function_app.py imports retrain/ and pipeline_builder/, which
# registers and submits components/; the remote build installs requirements.txt).
RUNTIME = {
    "function_app.py",
    "host.json",
    "requirements.txt",
    "retrain",
    "pipeline_builder",
    "components",
}
# Made on a developer machine by tests, linters, the demo and the local backend.
LOCAL_ONLY = {
    ".mypy_cache",
    ".hypothesis",
    ".models",
    ".demo",
    ".runs",
    ".venv",
    ".venv-iac",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
    ".azure",
    ".azurite",
    "mlruns",
}


def _patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(name: str, is_dir: bool) -> bool:
    for pattern in _patterns():
        if pattern.endswith("/"):
            if is_dir and fnmatch.fnmatch(name, pattern[:-1]):
                return True
        elif fnmatch.fnmatch(name, pattern):
            return True
    return False


def _top_level_tracked() -> dict[str, bool]:
    """name -> is a directory, for each top-level entry git tracks."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {path.split("/")[0]: "/" in path for path in files}


def test_the_runtime_files_are_deployed():
    kept = sorted(name for name in RUNTIME if _ignored(name, (ROOT / name).is_dir()))
    assert kept == [], f".funcignore drops what the app needs: {kept}"


def test_every_other_tracked_entry_is_left_out():
    shipped = sorted(
        name
        for name, is_dir in _top_level_tracked().items()
        if name not in RUNTIME and not _ignored(name, is_dir)
    )
    assert shipped == [], f"deployed but not needed at run time: {shipped}"


def test_local_caches_and_run_output_are_left_out():
    shipped = sorted(name for name in LOCAL_ONLY if not _ignored(name, True))
    assert shipped == [], f"add to .funcignore: {shipped}"
