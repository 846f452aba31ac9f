"""Each role assignment docs/deploy.md lists is made by the Bicep, and each one the Bicep makes is
listed, with the same identity, role, scope and condition; each carries its reason."""

from __future__ import annotations

import json
import re

from infrahelpers import BICEP_FILES, INFRA, ROOT, parse, resources

ROLES = INFRA / "modules" / "roles.bicep"
DOC = ROOT / "docs" / "deploy.md"
# The words the docs use -> the symbols roles.bicep uses.
IDENTITIES = {
    "Function App": "functionPrincipalId",
    "ML compute": "computePrincipalId",
    "ML workspace": "workspacePrincipalId",
    "you (azd)": "principalId",
    "job events topic": "jobEventsTopicPrincipalId",
    "serving endpoint": "servePrincipalId",
}
SCOPES = {
    "data account": "dataStorage",
    "landing container": "landing",
    "datasets container": "datasets",
    "Key Vault": "keyVault",
    "host storage": "hostStorage",
    "Application Insights": "appInsights",
    "ML workspace": "workspace",
    "workspace storage": "mlStorage",
    "container registry": "registry",
    "notifications topic": "notifyTopic",
    "dead-letter container": "deadLetters",
    "serving identity": "serveIdentity",
}
CONDITION = re.compile(r"\(when `(\w+)`[^)]*\)")


def _documented() -> dict[tuple[str, str, str], str | None]:
    """(identity, role, scope) -> condition parameter, from the doc's role table."""
    text = DOC.read_text()
    section = text.split("\n## Role assignments", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("Identity", "") or set(cells[0]) <= {"-", ":"}:
            continue
        identity, role, scope, why = cells
        condition = CONDITION.search(scope)
        scope = CONDITION.sub("", scope).strip()
        assert identity in IDENTITIES, f"docs: unknown identity {identity!r}"
        assert scope in SCOPES, f"docs: unknown scope {scope!r}"
        assert len(why.split()) >= 4, f"docs: {identity} / {role}: say why"
        key = (IDENTITIES[identity], role.strip("*"), SCOPES[scope])
        assert key not in rows, f"docs list {key} twice"
        rows[key] = condition.group(1) if condition else None
    return rows


def _role_name(expression: dict) -> str:
    """``roles['Name']`` or ``roles.Name`` as pycep writes it -> ``Name``."""
    operands = expression["operator"]["operands"]
    assert operands["operand_1"] == "roles"
    return operands["operand_2"].strip("'")


def _assigned() -> dict[tuple[str, str, str], str | None]:
    """(principal, role, scope) -> condition text, for every assignment in roles.bicep."""
    assigned = {}
    for symbol, (kind, condition, config) in resources(ROLES).items():
        if kind != "Microsoft.Authorization/roleAssignments":
            continue
        properties = config["properties"]
        definition = properties["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        role, principal, scope = _role_name(definition), properties["principalId"], config["scope"]
        assert len(properties.get("description", "").split()) >= 4, f"{symbol}: no reason"
        # The assignment's name is derived from the same scope, principal and role, so two
        # assignments never collide and a re-deployment updates instead of failing.
        name = config["name"]["function"]["parameters"]
        assert name["base_string"]["operator"]["operands"] == {
            "operand_1": scope,
            "operand_2": "id",
        }, symbol
        assert name["extra_string_1"] == principal, symbol
        assert _role_name(name["extra_string_2"]) == role, symbol
        assigned[(principal, role, scope)] = condition
    return assigned


def test_the_roles_the_docs_list_are_the_roles_the_bicep_assigns():
    documented, assigned = _documented(), _assigned()
    assert len(documented) >= 8  # the table was read
    assert sorted(set(documented) - set(assigned)) == [], "documented but not assigned"
    assert sorted(set(assigned) - set(documented)) == [], "assigned but not documented"


def test_conditional_assignments_are_documented_with_their_condition():
    documented, assigned = _documented(), _assigned()
    for key, condition in assigned.items():
        parameter = documented[key]
        if condition is None:
            assert parameter is None, f"{key}: the docs add a condition the Bicep lacks"
        else:
            assert parameter and parameter in condition, f"{key}: say when ({condition})"


def test_every_role_name_maps_to_a_built_in_role_id():
    roles = parse(ROLES)["variables"]["roles"]["value"]
    ids = {name.strip("'"): value for name, value in roles.items()}
    guid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert all(guid.fullmatch(value) for value in ids.values())
    assert len(set(ids.values())) == len(ids)
    assert {role for _, role, _ in _assigned()} == set(ids)  # none unused, none missing


def test_no_role_is_assigned_outside_roles_bicep():
    for path in BICEP_FILES:
        if path == ROLES:
            continue
        kinds = {kind for kind, _, _ in resources(path).values()}
        assert "Microsoft.Authorization/roleAssignments" not in kinds, path.name
        assert "roleAssignments" not in json.dumps(parse(path)), path.name


def test_jobs_read_the_datasets_copy_and_nothing_in_landing():
    """The compute identity reads data versions (datasets/) only: a job can never see a batch
    that is re-uploaded after it was keyed."""
    compute = {
        (role, scope) for principal, role, scope in _assigned() if principal == "computePrincipalId"
    }
    assert ("Storage Blob Data Reader", "datasets") in compute
    assert not {scope for _, scope in compute} & {"landing", "dataStorage"}


def test_the_rbac_key_vault_grants_the_workspace_its_documented_role():
    assigned = _assigned()
    assert ("workspacePrincipalId", "Key Vault Administrator", "keyVault") in assigned
    vault = resources(INFRA / "modules" / "ml-workspace.bicep")["keyVault"][2]
    assert vault["properties"]["enableRbacAuthorization"] is True
