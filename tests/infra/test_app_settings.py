"""The Function App's app settings in the Bicep agree with local.settings.json.example: each
documented setting is set, or left at a default that the Bicep names and the example shows."""

from __future__ import annotations

import re

from infrahelpers import INFRA, example_settings, parse, resources

FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
RESOURCES = INFRA / "resources.bicep"
# Set by the Bicep for the platform, not read by the app (so not in the example).
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
DEFAULTED_BLOCK = re.compile(r"^// Left at their documented defaults.*\n((?://   \S.*\n)+)", re.M)


def _app_settings() -> dict[str, object]:
    _, _, site = resources(FUNCTION_APP)["site"]
    pairs = site["properties"]["siteConfig"]["appSettings"]
    names = [pair["name"] for pair in pairs]
    assert len(names) == len(set(names)), "a setting is set twice"
    return {pair["name"]: pair["value"] for pair in pairs}


def _defaulted() -> dict[str, str]:
    """The settings function-app.bicep's header leaves at their defaults, with the default."""
    block = DEFAULTED_BLOCK.search(FUNCTION_APP.read_text())
    assert block, "function-app.bicep lost its 'Left at their documented defaults' block"
    defaults = {}
    for line in block.group(1).splitlines():
        name, _, rest = line.removeprefix("//").strip().partition("=")
        defaults[name] = rest.split("(")[0].strip()
    return defaults


def _is_set(name: str, settings: dict[str, object]) -> bool:
    """Set directly, or through its identity-based form (``NAME__serviceUri`` and friends)."""
    return name in settings or any(key.startswith(f"{name}__") for key in settings)


def test_every_documented_setting_is_set_or_left_at_its_default():
    documented = set(example_settings()["_documentation"])
    settings, defaulted = _app_settings(), _defaulted()
    assert {"TRAIN_SEED", "LOCAL_RUNS_DIR"} <= set(defaulted)  # the block was read
    unaccounted = sorted(n for n in documented if not _is_set(n, settings) and n not in defaulted)
    assert unaccounted == [], f"set in function-app.bicep or list the defaults of: {unaccounted}"
    both = sorted(n for n in defaulted if _is_set(n, settings))
    assert both == [], f"both set and listed as defaulted: {both}"


def test_each_default_named_in_the_bicep_is_the_documented_one():
    values = example_settings()["Values"]
    for name, default in _defaulted().items():
        assert name in values, f"{name} is listed as defaulted but is not a documented setting"
        expected = values[name]
        assert default == expected, f"{name}: Bicep says {default!r}, the example {expected!r}"


def test_the_bicep_sets_no_setting_that_is_not_documented():
    documented = set(example_settings()["_documentation"])
    unknown = sorted(
        name
        for name in _app_settings()
        if name not in documented
        and name.split("__")[0] not in documented
        and name not in PLATFORM_SETTINGS
    )
    assert unknown == [], f"undocumented app settings: {unknown}"


def test_deployed_values_select_azure_and_identity_based_storage():
    settings = _app_settings()
    assert settings["RETRAIN_BACKEND"] == "azureml"
    assert settings["BLOB_TRIGGER_SOURCE"] == "EventGrid"  # the only source on Flex Consumption
    for connection in ("AzureWebJobsStorage", "DataStorage"):
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == "identityClientId"
        assert "AccountKey" not in str(settings)
    for service in ("blob", "queue", "table"):
        assert f"DataStorage__{service}ServiceUri" in settings
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"  # Azure ML: the same identity
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings  # Flex Consumption refuses it
    assert settings["DATASETS_CONTAINER"] == "datasetsContainer"  # the app copies versions there


def test_parameter_defaults_match_the_documented_values():
    """A setting fed by a module parameter with a default gets the example's value by default."""
    values = example_settings()["Values"]
    parameters = parse(FUNCTION_APP)["parameters"]
    checked = 0
    for name, value in _app_settings().items():
        if isinstance(value, str) and value in parameters and name in values:
            default = parameters[value].get("default")
            if default is not None and values[name]:
                assert str(default) == values[name], f"{name}: default {default!r}"
                checked += 1
    assert checked >= 4  # RUNS_TABLE, SETTLE_QUEUE, SWEEP_SCHEDULE, DATA_ASSET_NAME, ...


def test_the_settings_name_the_storage_that_is_created():
    """The landing container, settle queue and runs table the app is told about are the ones the
    data account is created with (the same symbols in resources.bicep)."""
    modules = parse(RESOURCES)["modules"]
    data = modules["dataStorage"]["config"]["params"]
    app = modules["functionApp"]["config"]["params"]
    roles = modules["roles"]["config"]["params"]
    assert data["containers"] == [
        app["landingContainer"],
        app["datasetsContainer"],
        roles["deadLetterContainer"],  # the job events subscription's dead letters
    ]
    assert data["queues"] == [app["settleQueue"]]
    assert data["tables"] == [app["runsTable"]]
    host = modules["hostStorage"]["config"]["params"]
    assert host["containers"] == [app["deploymentContainer"]]
