"""Every app setting the code reads is in local.settings.json.example and in the settings table
of docs/function-app.md, and neither lists a setting the code does not read. The reads are found
in the syntax tree of retrain/ and function_app.py, not by a hand-kept list."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from retrain.settings import PROJECT_ROOT

# Read by the Functions host, not by the app's code.
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "DataStorage__credential"}
# Identity-based connection settings: an empty value beside DataStorage would read as "set", so
# the example names them in DataStorage's documentation instead of listing them as values.
IDENTITY_SETTINGS = {
    "DataStorage__blobServiceUri", "DataStorage__queueServiceUri",
    "DataStorage__tableServiceUri", "DataStorage__clientId", "DataStorage__credential",
}  # fmt: skip
TABLE_PAGE = PROJECT_ROOT / "docs" / "function-app.md"


def _is_env(node: ast.expr) -> bool:
    """``env`` (a settings mapping) or ``os.environ``."""
    if isinstance(node, ast.Name):
        return node.id == "env"
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def settings_read_by(path: Path) -> set[str]:
    """Names read from the environment: ``env.get("X")``, ``env["X"]``, ``os.getenv("X")``,
    helpers called as ``f(env, "X", ...)``; and in bindings ``%X%`` and ``connection="X"``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_env(node.value):
                names.add(_text(node.slice) or "")
        elif isinstance(node, ast.Call):
            func, args = node.func, node.args
            getter = isinstance(func, ast.Attribute) and (
                func.attr == "getenv"
                or (func.attr in {"get", "setdefault"} and _is_env(func.value))
            )
            if getter and args:
                names.add(_text(args[0]) or "")
            if len(args) >= 2 and _is_env(args[0]):
                names.add(_text(args[1]) or "")
            names.update(_text(k.value) or "" for k in node.keywords if k.arg == "connection")
        elif isinstance(node, ast.Constant) and path.name == "function_app.py":
            names.update(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", _text(node) or ""))
    names.discard("")
    return names


def settings_the_code_reads() -> set[str]:
    files = [PROJECT_ROOT / "function_app.py", *sorted((PROJECT_ROOT / "retrain").rglob("*.py"))]
    return set().union(*(settings_read_by(path) for path in files))


def settings_in_the_table() -> set[str]:
    """The first column of the table under "## App settings"."""
    page = TABLE_PAGE.read_text()
    section = page.split("\n## App settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def _example() -> dict:
    return json.loads((PROJECT_ROOT / "local.settings.json.example").read_text())


def settings_in_the_example() -> set[str]:
    """Its values, and the identity-based names its documentation of DataStorage spells out."""
    example = _example()
    named = set(re.findall(r"DataStorage__\w+", example["_documentation"]["DataStorage"]))
    return set(example["Values"]) | (named & IDENTITY_SETTINGS)


def _missing(names: set[str], where: str) -> str:
    return f"add {', '.join(sorted(names))} to {where}" if names else ""


def test_the_scan_finds_reads_of_every_kind():
    read = settings_the_code_reads()
    assert {"TRAIN_EPOCHS", "PROMOTE_MIN_GAIN"} <= read  # helpers: _int(env, ...), env.get
    assert {"LANDING_CONTAINER", "SWEEP_SCHEDULE", "DataStorage"} <= read  # bindings
    assert {"BLOB_TRIGGER_SOURCE", "DataStorage__tableServiceUri", "NOTIFY_WEBHOOK_URL"} <= read


def test_every_setting_the_code_reads_is_in_the_example_and_the_table():
    read = settings_the_code_reads() | HOST_SETTINGS
    not_in_example = read - settings_in_the_example()
    assert not not_in_example, _missing(not_in_example, "local.settings.json.example")
    not_in_table = read - settings_in_the_table()
    assert not not_in_table, _missing(not_in_table, f"the App settings table of {TABLE_PAGE.name}")


def test_the_example_and_the_table_list_only_settings_the_code_reads():
    read = settings_the_code_reads() | HOST_SETTINGS
    extra = settings_in_the_example() - read
    assert not extra, f"local.settings.json.example lists settings nothing reads: {sorted(extra)}"
    extra = settings_in_the_table() - read
    assert not extra, f"{TABLE_PAGE.name}'s App settings table lists unread {sorted(extra)}"


def test_the_table_and_the_example_agree_on_defaults():
    """Where the example sets a value, the table's default column shows it."""
    values = _example()["Values"]
    page = TABLE_PAGE.read_text().split("\n## App settings\n", 1)[1].split("\n## ", 1)[0]
    for row in (line for line in page.splitlines() if line.startswith("| `")):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        name = cells[0].strip("`")
        if values.get(name):
            assert cells[1] == f"`{values[name]}`", (
                f"{name}: table says {cells[1]}, example {values[name]!r}"
            )
