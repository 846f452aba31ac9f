"""``python -m retrain models``: the registered versions and the champion, from the run ledger.

It reads what ``GET /api/models`` reads (the ledger's ``model|`` and ``champion|`` rows), so the
two always agree; ``--json`` prints the very same document.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigurationError, TransientError
from ..settings import Settings

DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"  # DataStorage's default: Azurite, 127.0.0.1
AZURITE_DEMO = "npx azurite --location .demo/azurite --skipApiVersionCheck --disableTelemetry"


def cmd_models(args: argparse.Namespace) -> int:
    from ..ledger.runs import Ledger
    from ..models.delivery import ModelBook
    from ..storage import StorageAccount

    settings = Settings.from_env()
    ledger = Ledger(StorageAccount(settings), settings.runs_table)
    try:
        document = ModelBook(ledger, settings.model_name).listing(args.limit)
    except TransientError as exc:
        raise ConfigurationError(storage_hint(settings, exc)) from None
    if args.json:
        print(json.dumps(document))
    else:
        print(models_table(document))
        for line in serving_lines(settings):
            print(line)
        if settings.serve_endpoint:
            from ..serving.rollout import describe, rollout_state

            state = rollout_state(ledger.table, settings.serve_endpoint)
            print(describe(state) if state else f"rollout onto {settings.serve_endpoint}: none yet")
    return 0


def serving_lines(settings: Settings) -> list[str]:
    """One line per running ``python -m retrain serve`` of this model (the local registry)."""
    from ..serving.where import served

    return [
        f"served by python -m retrain serve: version {s['version']} on {s['url']} "
        f"(pid {s['pid']}, since {s['since']})"
        for s in served(settings.local_models_dir, settings.model_name)
    ]


def storage_hint(settings: Settings, exc: Exception) -> str:
    """One line for a ledger that did not answer: what to start, or which setting to check."""
    if settings.storage_connection == DEVELOPMENT_STORAGE:
        return (
            f"DataStorage: {exc}; the default, {DEVELOPMENT_STORAGE}, is Azurite on 127.0.0.1: "
            f"start it (after make demo, `{AZURITE_DEMO}` serves the demo's ledger) or set "
            "DataStorage to your storage account"
        )
    return f"DataStorage: {exc}; check the storage account DataStorage names"


def models_table(document: dict[str, Any]) -> str:
    """The document for people: a line on the champion, then one line per version."""
    champion = document["champion"]
    if champion is None:
        head = f"model {document['model']}: no champion yet"
    else:
        head = (
            f"model {document['model']}: champion version {champion['version']} "
            f"(test accuracy {_percent(champion['accuracy'])}, since {champion['since']})"
        )
    if not document["versions"]:
        return f"{head}\nno registered versions"
    rows = [("VERSION", "ACCURACY", "REGISTERED", "PROMOTED", "WHY")]
    for v in document["versions"]:
        mark = " *" if v["champion"] else ""
        rows.append(
            (
                f"{v['version']}{mark}",
                _percent(v["accuracy"]),
                v["registered_at"] or "-",
                "yes" if v["promoted"] else "no",
                v["reason"] or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(row[i].ljust(widths[i]) for i in range(4)), row[4]]) for row in rows]
    return "\n".join([head, *lines, "* champion"])


def _percent(value: float | None) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else "-"
