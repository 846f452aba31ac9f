"""Every Bicep file parses, checkov finds nothing unjustified, and azd finds what it needs."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from infrahelpers import BICEP_FILES, INFRA, ROOT, TOOLS, parse, resources


def test_there_is_a_main_template_with_its_modules():
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {"main.bicep", "resources.bicep", "modules/roles.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses(path):
    tree = parse(path)
    assert tree["resources"] or tree.get("modules"), f"{path.name} declares nothing"


def test_every_module_reference_is_a_local_file():
    """Modules are local files (no registry reference that an offline check cannot follow)."""
    for path in BICEP_FILES:
        for name, module in parse(path).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}: module {name} is not a local file"
            target = path.parent / module["detail"]["path"]
            assert target.is_file(), f"{path.name}: module {name} -> {target} is missing"


def test_checkov_passes_and_every_skip_says_why():
    result = subprocess.run(
        [
            str(TOOLS / "checkov"),
            "--directory",
            str(INFRA),
            "--framework",
            "bicep",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["file_path"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], f"checkov failed: {failed}"
    assert report["summary"]["parsing_errors"] == 0
    assert result.returncode == 0, result.stderr[-2000:]
    skipped = results["skipped_checks"]
    assert skipped, "the skips below are expected to be seen by checkov"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 3, f"{check['check_id']} in {check['file_path']}: no reason"


def test_the_function_app_is_what_azure_yaml_deploys():
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (service_name, service), *rest = azure["services"].items()
    assert not rest and service["host"] == "function" and service["language"] == "python"
    assert (ROOT / service["project"] / "function_app.py").is_file()
    _, _, site = resources(INFRA / "modules" / "function-app.bicep")["site"]
    tags = json.dumps(site["tags"])  # union(tags, {'azd-service-name': ...})
    assert f'"\'azd-service-name\'": "{service_name}"' in tags
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "3.11"}


def test_azure_yaml_hooks_exist_for_both_shells():
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]
    assert set(hooks) == {"postprovision", "postdeploy"}
    for name, hook in hooks.items():
        posix, windows = hook["posix"], hook["windows"]
        assert posix["shell"] == "sh" and windows["shell"] == "pwsh"
        assert (ROOT / posix["run"]).is_file() and (ROOT / windows["run"]).is_file(), name
        assert (ROOT / posix["run"]).stem == (ROOT / windows["run"]).stem == name


def test_hooks_read_only_what_provisioning_outputs():
    """A hook reading an azd value that main.bicep does not output would find it unset."""
    outputs = set(parse(INFRA / "main.bicep")["outputs"])
    for script in sorted((INFRA / "hooks").glob("*.sh")):
        text = script.read_text()

        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
        assert used, script.name
        assert used - outputs == set(), f"{script.name} reads {sorted(used - outputs)}"


def test_hooks_pass_shellcheck():
    scripts = sorted((INFRA / "hooks").glob("*.sh"))
    assert scripts
    result = subprocess.run(
        [str(TOOLS / "shellcheck"), "--shell=sh", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hooks_pass_the_event_grid_endpoint_whole():
    """The endpoint URL holds '&': sh needs it in double quotes, and cmd (az.cmd, from pwsh)
    needs literal double quotes inside the argument, or it splits the URL and runs the rest."""
    posix = (INFRA / "hooks" / "postdeploy.sh").read_text()
    assert re.search(r'--endpoint "\$\{AZURE_FUNCTION_APP_URL\}[^"\s]*&code=\$\{key\}"', posix)
    windows = (INFRA / "hooks" / "postdeploy.ps1").read_text()
    assert re.search(r'--endpoint "`"\$endpoint`""', windows)
    assert re.search(r'\$endpoint = "[^"]*&code=\$key"', windows)
