"""The fake workspace's model registry and a pipeline job's child runs (``fake_azureml`` mixes
these in), shaped as the real service answers.

Model versions (``/models/{name}/versions/{v}``): a PUT creates one; a repeat may change only
its tags, description, stage and archive flag. A repeat with another ``modelUri`` answers HTTP
400, code UserError, "Asset paths cannot be updated." (the SDK's ``ASSET_PATH_ERROR`` names that
answer); any other change answers 409. The listing is newest first, ``$top`` honoured (the SDK
asks for the latest version before each create).

Child runs (``GET /history/v1.0/{workspace}/runs/{parent}/children``), one per node of a
pipeline job, made when the job is PUT. As run history reports a v2 pipeline's steps (recorded
in azure-sdk-for-python, ``test_pipeline_job_get_child_run``): ``runId`` a GUID, ``displayName``
the node's display name or else its key (``train_node``), ``name`` the component's name, and
``properties["azureml.nodeid"]`` an 8-hex-digit graph id, not the node's key. A step the service
reused from an earlier run says so (``azureml.isreused``) and names that run
(``azureml.reusedrunid``): ``reuse_step``. Children follow their parent's status and times.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

from fake_http import error, not_found

# The service's words (and the SDK's ASSET_PATH_ERROR) for a PUT that changes a version's path.
ASSET_PATHS = "Asset paths cannot be updated."
MUTABLE = {"tags", "description", "stage", "isArchived"}  # what a repeat PUT may change


class ModelsAndChildren:
    """Routes and controls for model versions and child runs, over the fake's own state."""

    resources: dict[str, dict[str, Any]]
    child_runs: dict[str, list[dict[str, Any]]]  # pipeline job name -> its steps, in order
    workspace_path: str

    # ---- controls -------------------------------------------------------------------------
    def children(self, job_name: str) -> list[dict[str, Any]]:
        """The job's child runs as stored (edit them to stage what the service reports)."""
        return self.child_runs.setdefault(job_name, [])

    def child(self, job_name: str, node: str) -> dict[str, Any]:
        """The child run of node ``node`` (matched by its display name) of ``job_name``."""
        return next(c for c in self.children(job_name) if c["displayName"] == node)

    def reuse_step(self, job_name: str, node: str, reused_run_id: str) -> None:
        """Report node ``node`` as reused from run ``reused_run_id``, as the service does."""
        self.child(job_name, node)["properties"].update({
            "azureml.isreused": "true",
            "azureml.reusedrunid": reused_run_id,
            "azureml.reusednodeid": uuid.uuid4().hex[:8],
        })  # fmt: skip

    def model(self, name: str, version: str) -> dict[str, Any] | None:
        """The registered model version's resource, or None."""
        return self.resources.get(f"{self.workspace_path}/models/{name}/versions/{version}")

    # ---- routes ---------------------------------------------------------------------------
    def models_route(
        self, method: str, path: str, tail: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any] | None:
        """Answer a ``/models/...`` request, or None if it is not one."""
        if method == "GET" and (m := re.fullmatch(r"/models/([^/]+)/versions", tail)):
            return 200, {"value": self._versions(m[1], query), "nextLink": None}
        if not re.fullmatch(r"/models/[^/]+/versions/[^/]+", tail):
            return None
        if method == "PUT":
            return self._put_model(path, body)
        if method == "GET":
            found = self.resources.get(path)
            return (200, found) if found is not None else not_found(method, path)
        return None

    def run_children(self, run_id: str) -> tuple[int, Any]:
        """Run history's page of a run's children (all on one page)."""
        parent = self.resources.get(f"{self.workspace_path}/jobs/{run_id}")
        if parent is None:
            return 404, error("UserError", f"Run {run_id} was not found")
        status = parent["properties"]["status"]
        times = {"startTimeUtc": parent.get("startTimeUtc"), "endTimeUtc": parent.get("endTimeUtc")}
        runs = [{**c, "status": status, **times} for c in self.child_runs.get(run_id, [])]
        return 200, {"value": runs, "nextLink": None}

    def make_children(self, job_name: str, body: dict[str, Any]) -> None:
        """One child run per node of a pipeline job just created."""
        nodes = body.get("properties", {}).get("jobs") or {}
        self.child_runs[job_name] = [_child_run(job_name, key, node) for key, node in nodes.items()]

    # ---- model versions -------------------------------------------------------------------
    def _put_model(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        props = _model_properties(body.get("properties", {}))
        existing = self.resources.get(path)
        if existing is None:
            resource = _model_resource(path, props)
            self.resources[path] = resource
            return 201, resource
        held = existing["properties"]
        if props.get("modelUri") != held.get("modelUri"):
            return 400, error("UserError", ASSET_PATHS)
        fixed = {k for k in props.keys() | held.keys() if k not in MUTABLE | SERVER_PROPS}
        if any(props.get(k) != held.get(k) for k in fixed):
            changed = sorted(k for k in fixed if props.get(k) != held.get(k))
            message = f"{_name_version(path)}: only tags and description can change, not {changed}"
            return 409, error("Conflict", message)
        held.update({k: v for k, v in props.items() if k in MUTABLE})
        existing["systemData"]["lastModifiedAt"] = _now()
        return 200, existing

    def _versions(self, name: str, query: dict[str, str]) -> list[dict[str, Any]]:
        prefix = f"{self.workspace_path}/models/{name}/versions/"
        found = [r for p, r in self.resources.items() if p.startswith(prefix)]
        found.sort(key=lambda r: r["systemData"]["createdAt"], reverse=True)
        top = query.get("$top")
        return found[: int(top)] if top else found


SERVER_PROPS = {"provisioningState"}  # set by the service, never sent back as a change


def _model_properties(sent: dict[str, Any]) -> dict[str, Any]:
    """A version's properties as the service holds them: its defaults, then what was sent
    (``flavors`` is ``{}`` for a model without any, never null)."""
    props = {**MODEL_DEFAULTS, **sent}
    props["flavors"] = props["flavors"] or {}
    return props


MODEL_DEFAULTS = {  # what a recorded answer holds beside what the SDK sent
    "description": None,
    "tags": {},
    "properties": {},
    "isArchived": False,
    "isAnonymous": False,
    "flavors": {},
    "jobName": None,
    "stage": None,
}


def _model_resource(path: str, props: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    return {
        "id": path,
        "name": path.rsplit("/", 1)[1],
        "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
        "properties": {**props, "provisioningState": "Succeeded"},
        "systemData": {"createdAt": now, "createdBy": "fake", "lastModifiedAt": now},
    }


def _child_run(parent: str, key: str, node: dict[str, Any]) -> dict[str, Any]:
    """A pipeline step as run history lists it (see the module docstring)."""
    component = str(node.get("componentId") or "").split("/components/")[-1].split("/")[0]
    node_id = uuid.uuid4().hex[:8]
    return {
        "runId": str(uuid.uuid4()),
        "parentRunId": parent,
        "rootRunId": parent,
        "experimentId": str(uuid.UUID(int=2)),
        "createdUtc": _now(),
        "displayName": node.get("display_name") or node.get("displayName") or key,
        "name": component or "azureml_anonymous",
        "runType": "azureml.StepRun",
        "properties": {
            "azureml.runsource": "azureml.StepRun",
            "azureml.nodeid": node_id,
            "azureml.moduleName": component or "azureml_anonymous",
            "azureml.pipeline": parent,
            "azureml.pipelinerunid": parent,
            "azureml.DevPlatv2": "true",
            "StepType": "PythonScriptStep",
        },
        "tags": {"azureml.nodeid": node_id, "azureml.pipeline": parent},
        "target": node.get("computeId", "").rsplit("/", 1)[-1] or None,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _name_version(path: str) -> str:
    parts = path.rsplit("/", 3)
    return f"{parts[-3]}:{parts[-1]}"
