"""The job events path as deployed: a system topic on the workspace, a subscription (made by the
postdeploy hook, sh and ps1 alike) to job_events filtered to this app's RunStatusChanged events,
with a retry policy and dead letters to the data account, and JOB_EVENTS on in the app."""

from __future__ import annotations

import re

import pytest
from infrahelpers import INFRA, parse, resources

RESOURCES = INFRA / "resources.bicep"
HOOKS = [INFRA / "hooks" / "postdeploy.sh", INFRA / "hooks" / "postdeploy.ps1"]


def test_the_system_topic_is_the_workspaces_with_its_own_identity():
    kind, condition, topic = resources(RESOURCES)["jobEventsTopic"]
    assert kind == "Microsoft.EventGrid/systemTopics" and condition is None
    assert topic["properties"]["topicType"] == "Microsoft.MachineLearningServices.Workspaces"
    assert "source: ml.outputs.workspaceId" in RESOURCES.read_text()
    assert topic["identity"]["type"] == "SystemAssigned"  # it writes the dead letters


def test_the_dead_letter_container_is_in_the_data_account_and_only_it_is_granted():
    text = RESOURCES.read_text()
    assert "containers: [landingContainer, datasetsContainer, deadLetterContainer]" in text
    assert "jobEventsTopicPrincipalId: jobEventsTopic.identity.principalId" in text


def _subscription(hook: str) -> str:
    """The hook's ``event-subscription create`` for job-events, flags joined on one line."""
    commands = re.split(r"\baz eventgrid system-topic event-subscription create\b", hook)[1:]
    [command] = [c for c in commands if "--name job-events" in c]
    return re.sub(r"\s*[\\`]\n\s*", " ", command.split("\n\n")[0])


@pytest.mark.parametrize("path", HOOKS, ids=lambda p: p.name)
def test_the_hook_subscribes_job_events_filtered_retried_and_dead_lettered(path):
    hook = path.read_text()
    command = _subscription(hook)
    assert "/runtime/webhooks/eventgrid?functionName=job_events&code=" in hook
    assert "systemKeys.eventgrid_extension" in hook
    assert "--included-event-types Microsoft.MachineLearningServices.RunStatusChanged" in command
    [key] = re.findall(r"--advanced-filter (\S+) IsNotNull", command)
    assert key == "data.runTags.run_id"
    assert "." not in key.removeprefix("data.runTags.")  # filters cannot address dotted keys
    assert "--max-delivery-attempts 30" in command and "--event-ttl 1440" in command
    assert "--deadletter-identity systemassigned" in command
    assert "JOB_EVENTS_DEADLETTER_CONTAINER" in command and "AZURE_DATA_STORAGE_ID" in command
    assert "AZURE_EVENTGRID_JOB_TOPIC" in command


def test_the_hooks_outputs_exist():
    outputs = parse(INFRA / "main.bicep")["outputs"]
    for name in ("AZURE_EVENTGRID_JOB_TOPIC", "AZURE_DATA_STORAGE_ID",
                 "JOB_EVENTS_DEADLETTER_CONTAINER"):  # fmt: skip
        assert name in outputs


def test_job_events_is_on_in_the_deployment():
    _, _, site = resources(INFRA / "modules" / "function-app.bicep")["site"]
    settings = {p["name"]: p["value"] for p in site["properties"]["siteConfig"]["appSettings"]}
    assert settings["JOB_EVENTS"] == "true"
