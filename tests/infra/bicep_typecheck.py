"""Resource bodies checked against the official Bicep type definitions (Azure/bicep-types-az,
vendored in bicep_types/) and against the Flex Consumption rules ARM enforces at deploy time.

Literal values are checked in full (name, read-only, enum, required); a value that is an
expression (a parameter, variable, function call, interpolation or condition) only by name.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

TYPES = Path(__file__).resolve().parent / "bicep_types"
REQUIRED, READ_ONLY = 1, 2
BICEP_ONLY = {"parent", "scope", "depends_on", "dependsOn"}  # resource keywords, not ARM body

# Properties and app settings a Flex Consumption app refuses, each with its source.
LEARN = "https://learn.microsoft.com/azure/azure-functions/"
APP_SETTINGS_DOC = LEARN + "functions-app-settings#flex-consumption-plan-deprecations"
FLEX_PLAN_DOC = LEARN + "flex-consumption-plan"
FLEX_PROPERTIES = {
    "siteConfig.ftpsState": "ARM error 51021; microsoft/azure-pipelines-tasks#21032",
    "siteConfig.linuxFxVersion": FLEX_PLAN_DOC + " (functionAppConfig.runtime instead)",
    "siteConfig.functionAppScaleLimit": FLEX_PLAN_DOC + " (maximumInstanceCount instead)",
}
FLEX_SETTINGS = {
    name: APP_SETTINGS_DOC
    for name in (
        "WEBSITE_RUN_FROM_PACKAGE",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
    )
}


@functools.cache
def _index() -> dict[str, str]:
    return json.loads((TYPES / "index.json").read_text())


@functools.cache
def _load(relative: str) -> list[dict[str, Any]]:
    return json.loads((TYPES / relative).read_text())


class Checker:
    """Walks one resource body against its type, collecting one-line findings."""

    def __init__(self, key: str, symbols: set[str]) -> None:
        self.key, self.symbols, self.findings = key, symbols, []
        self.types = _load(_index()[key])

    def body(self) -> dict[str, Any]:
        for entry in self.types:
            if entry.get("$type") == "ResourceType" and entry["name"] == self.key:
                return self.resolve(entry["body"])
        raise KeyError(self.key)

    def resolve(self, ref: dict[str, str]) -> dict[str, Any]:
        return self.types[int(ref["$ref"].removeprefix("#/"))]

    def is_expression(self, value: Any) -> bool:
        if isinstance(value, dict):
            return bool({"operator", "function", "interpolation"} & set(value))
        if isinstance(value, str):
            return value in self.symbols or "${" in value
        return False

    def fail(self, path: str, message: str) -> None:
        self.findings.append(f"{self.key} {path}: {message}")

    def value(self, value: Any, kind: dict[str, Any], path: str) -> None:
        if value is None or self.is_expression(value):
            return
        tag = kind["$type"]
        if tag == "ObjectType":
            self.object(value, kind.get("properties", {}), kind.get("additionalProperties"), path)
        elif tag == "DiscriminatedObjectType":
            self.discriminated(value, kind, path)
        elif tag == "ArrayType" and isinstance(value, list):
            for i, item in enumerate(value):
                self.value(item, self.resolve(kind["itemType"]), f"{path}[{i}]")
        elif tag == "UnionType":
            self.union(value, [self.resolve(e) for e in kind["elements"]], path)
        elif tag == "StringLiteralType" and value != kind["value"]:
            self.fail(path, f"{value!r} is not {kind['value']!r}")

    def union(self, value: Any, elements: list[dict[str, Any]], path: str) -> None:
        literals = [e["value"] for e in elements if e["$type"] == "StringLiteralType"]
        if isinstance(value, str) and len(literals) == len(elements) and value not in literals:
            self.fail(path, f"{value!r} is not one of {sorted(literals)}")

    def discriminated(self, value: Any, kind: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict):
            return
        key = kind["discriminator"]
        properties = dict(kind.get("baseProperties", {}))
        chosen = value.get(key)
        if chosen is None:
            self.fail(path, f"required property {key!r} is missing")
        elif not self.is_expression(chosen):
            if chosen not in kind["elements"]:
                self.fail(f"{path}.{key}", f"{chosen!r} is not one of {sorted(kind['elements'])}")
                return
            properties.update(self.resolve(kind["elements"][chosen]).get("properties", {}))
        else:  # expression: any element's names are allowed
            for ref in kind["elements"].values():
                properties.update(self.resolve(ref).get("properties", {}))
        properties.pop(key, None)
        self.object({k: v for k, v in value.items() if k != key}, properties, None, path)

    def object(self, value: Any, properties: dict, extra: dict | None, path: str) -> None:
        if not isinstance(value, dict):
            return
        for raw, item in value.items():
            name = raw.strip("'")
            if name in BICEP_ONLY and not path:
                continue
            where = f"{path}.{name}" if path else name
            if name in properties:
                flags = properties[name].get("flags", 0)
                if flags & READ_ONLY:
                    self.fail(where, "is read-only")
                self.value(item, self.resolve(properties[name]["type"]), where)
            elif extra is not None:
                self.value(item, self.resolve(extra), where)
            elif not self.is_expression(raw):
                self.fail(where, "is not a property of this type")
        for name, spec in properties.items():
            if spec.get("flags", 0) & REQUIRED and name not in value:
                self.fail(f"{path}.{name}" if path else name, "required property is missing")


def symbols(tree: dict[str, Any]) -> set[str]:
    """Every name an expression in this file can use: parameters, variables, resources,
    modules, outputs and the item names of loops. pycep writes a string literal and a reference
    to a name alike (both plain strings), so a string equal to one of these names is taken as
    an expression, and checked by name only."""
    names = set()
    for section in ("parameters", "variables", "resources", "modules", "outputs"):
        names |= set(tree.get(section, {}))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("item_name"), str):
                names.add(node["item_name"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(tree)
    return names


def check_resource(
    kind: str, version: str, config: dict[str, Any], names: set[str], existing: bool
) -> list[str]:
    """Findings for one resource body (an ``existing`` one: its type only)."""
    key = f"{kind}@{version}"
    if key not in _index():
        return [f"{key}: no vendored type definition (run tests/infra/refresh_types.py)"]
    checker = Checker(key, names)
    if not existing:
        checker.value(config, checker.body(), "")
    return checker.findings


def check_flex(site: dict[str, Any]) -> list[str]:
    """Flex Consumption rules for a Microsoft.Web/sites body with functionAppConfig."""
    properties = site.get("properties", {})
    if not isinstance(properties, dict) or "functionAppConfig" not in properties:
        return []
    findings = []
    for dotted, source in FLEX_PROPERTIES.items():
        node: Any = properties
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            findings.append(f"properties.{dotted}: Flex Consumption rejects it ({source})")
    config = properties.get("siteConfig", {})
    settings = config.get("appSettings", []) if isinstance(config, dict) else []
    for pair in settings if isinstance(settings, list) else []:
        name = pair.get("name") if isinstance(pair, dict) else None
        if name in FLEX_SETTINGS:
            findings.append(
                f"app setting {name}: Flex Consumption rejects it ({FLEX_SETTINGS[name]})"
            )
    return findings
