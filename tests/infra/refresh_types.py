"""Refresh the vendored Bicep type definitions from a local checkout of Azure/bicep-types-az.

Usage: .venv-iac/bin/python tests/infra/refresh_types.py PATH/TO/bicep-types-az

Copies, for each `type@apiVersion` that infra/ declares, the one types.json that defines it
(under generated/), plus the repository's LICENSE, into tests/infra/bicep_types/, and rewrites
index.json (`type@apiVersion` -> vendored file). Nothing else is copied.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from infrahelpers import BICEP_FILES, parse

HERE = Path(__file__).resolve().parent / "bicep_types"


def used_types() -> set[str]:
    """Every `type@apiVersion` a resource in infra/ declares (nested child types included)."""
    found = set()
    for path in BICEP_FILES:
        for resource in parse(path)["resources"].values():
            found.add(f"{resource['type']}@{resource['api_version']}")
    return found


def defining_file(checkout: Path, key: str) -> Path:
    """The generated types.json whose ResourceType entries include ``key``."""
    kind, version = key.split("@")
    provider = kind.split("/")[0].lower()
    for candidate in sorted(checkout.glob(f"generated/*/{provider}/{version}/types.json")):
        entries = json.loads(candidate.read_text())
        if any(e.get("$type") == "ResourceType" and e.get("name") == key for e in entries):
            return candidate
    raise SystemExit(f"{key}: no types.json in {checkout}/generated defines it")


def main(checkout: Path) -> None:
    index = {}
    for key in sorted(used_types()):
        source = defining_file(checkout, key)
        relative = source.relative_to(checkout / "generated").as_posix()
        target = HERE / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        index[key] = relative
    shutil.copyfile(checkout / "LICENSE", HERE / "LICENSE")
    (HERE / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"{len(index)} types from {len(set(index.values()))} files into {HERE}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "generated").is_dir():
        raise SystemExit(
            "usage: refresh_types.py PATH/TO/bicep-types-az (a checkout, with generated/)"
        )
    main(Path(sys.argv[1]))
