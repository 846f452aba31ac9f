"""Every resource body in infra/ against the official Bicep type definitions for its type and
API version, and the Flex Consumption app against the rules Flex enforces; the check itself
fails on a planted defect of each kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bicep_typecheck import TYPES, check_flex, check_resource, symbols
from infrahelpers import BICEP_FILES, INFRA, parse
from refresh_types import used_types


def _findings(path: Path) -> list[str]:
    tree = parse(path)
    names = symbols(tree)
    found = []
    for symbol, resource in tree["resources"].items():
        config = resource["config"]
        if "config" in config and ("condition" in config or "loop_type" in config):
            config = config["config"]
        found += [
            f"{symbol}: {f}"
            for f in check_resource(
                resource["type"], resource["api_version"], config, names, resource["existing"]
            )
        ]
        if resource["type"] == "Microsoft.Web/sites":
            found += [f"{symbol}: {f}" for f in check_flex(config)]
    return found


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_resource_body_matches_its_bicep_type(path):
    assert _findings(path) == []


PLANTED = {
    "unknown property": (
        "properties: { allowBlobPublicAccess: false, fancyNewFlag: true }",
        "fancyNewFlag: is not a property",
    ),
    "read-only property": (
        "properties: { primaryLocation: 'eastus' }",
        "primaryLocation: is read-only",
    ),
    "bad enum": ("properties: { accessTier: 'Warm' }", "'Warm' is not one of"),
    "missing required": ("properties: { accessTier: 'Hot' }", "sku: required property is missing"),
}


@pytest.mark.parametrize("defect", sorted(PLANTED))
def test_the_check_fails_on_a_planted_defect(tmp_path, defect):
    body, expected = PLANTED[defect]
    sku = "" if defect == "missing required" else "sku: { name: 'Standard_LRS' }"
    source = (
        "param location string\n"
        "resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        f"  name: 'stplanted'\n  location: location\n  kind: 'StorageV2'\n  {sku}\n  {body}\n}}\n"
    )
    path = tmp_path / "planted.bicep"
    path.write_text(source)
    findings = _findings(path)
    assert any(expected in f for f in findings), findings
    assert len(findings) == 1, findings


@pytest.mark.parametrize(
    "planted, expected",
    [
        (
            "siteConfig: { ftpsState: 'Disabled' }",
            "siteConfig.ftpsState: Flex Consumption rejects it",
        ),
        (
            "siteConfig: { appSettings: [ { name: 'WEBSITE_CONTENTSHARE', value: 'x' } ] }",
            "app setting WEBSITE_CONTENTSHARE: Flex Consumption rejects it",
        ),
    ],
)
def test_the_flex_rules_fail_on_a_planted_defect(tmp_path, planted, expected):
    path = tmp_path / "flex.bicep"
    path.write_text(
        "resource site 'Microsoft.Web/sites@2024-04-01' = {\n"
        "  name: 'func-planted'\n  location: 'eastus'\n  kind: 'functionapp,linux'\n"
        f"  properties: {{\n    {planted}\n"
        "    functionAppConfig: { runtime: { name: 'python', version: '3.11' } }\n  }\n}\n"
    )
    findings = _findings(path)
    assert any(expected in f for f in findings), findings


def test_only_the_type_definitions_infra_uses_are_vendored():
    index = json.loads((TYPES / "index.json").read_text())
    assert set(index) == used_types(), "run tests/infra/refresh_types.py"
    vendored = {p.relative_to(TYPES).as_posix() for p in TYPES.rglob("types.json")}
    assert vendored == set(index.values()), "a vendored types.json that no type uses"
    assert "MIT License" in (TYPES / "LICENSE").read_text()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_the_parse_tree_holds_every_resource_the_file_declares(path):
    """pycep keeps one nested child per parent, so a resource it drops would go unchecked:
    declare children at top level with parent: instead."""
    declared = re.findall(r"^\s*resource\s+(\w+)\s+'", path.read_text(), re.M)
    parsed = {symbol.split("__")[-1] for symbol in parse(path)["resources"]}
    assert sorted(set(declared) - parsed) == [], "declare it at top level with parent:"
