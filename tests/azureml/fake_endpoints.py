"""The fake workspace's managed online endpoints and deployments (``fake_azureml`` mixes this
in), shaped as the real service answers the SDK's ``online_endpoints`` and ``online_deployments``.

Routes, relative to the workspace::

    PUT     /onlineEndpoints/{ep}                       create, or update (traffic); Succeeded
    GET     /onlineEndpoints/{ep}                       its scoringUri, traffic, provisioningState
    POST    /onlineEndpoints/{ep}/listKeys              the endpoint's keys (key auth)
    PUT     /onlineEndpoints/{ep}/deployments/{d}       Succeeded, or Failed (``fail_provisioning``)
    GET     /onlineEndpoints/{ep}/deployments[/{d}]
    DELETE  /onlineEndpoints/{ep}/deployments/{d}       refused (400) while it takes traffic

Traffic must name existing deployments and add up to 100 (or be empty), as the service insists.
Scoring (``invoke``) goes to a plain-HTTP loopback server of this module, because it needs the
request's headers: ``azureml-model-deployment`` picks the deployment (else traffic does) and
the key must match. It answers with the project's own scoring code (``retrain.serving``) run on
the model folder a test gave for that model version (``serve_model``), as the deployment's
container would. Faults at each step: ``fail_next`` (the fake's own, by path and method),
``fail_provisioning`` and ``hold_provisioning`` (Creating until ``release``).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_http import error, not_found

from retrain.serving.answer import answer
from retrain.serving.payload import Limits
from retrain.serving.scoring import LoadedModel, load_model

EP = r"/onlineEndpoints/([^/]+)"


class OnlineEndpoints:
    """Routes and controls for online endpoints, over the fake's own state."""

    resources: dict[str, dict[str, Any]]
    workspace_path: str

    # ---- controls -------------------------------------------------------------------------
    def serve_model(self, name: str, version: str, folder: Path) -> None:
        """What a deployment of ``name:version`` scores with: this registered model folder."""
        self._scoring_state().models[f"{name}:{version}"] = load_model(folder, name, version)

    def fail_provisioning(self, deployment: str) -> None:
        """The next PUT of ``deployment`` is accepted but ends Failed, as when its container
        cannot start."""
        self._scoring_state().failing.add(deployment)

    def hold_provisioning(self, deployment: str) -> None:
        """``deployment`` stays Creating (as for the minutes a real one takes) until released."""
        self._scoring_state().holding.add(deployment)

    def release(self, endpoint: str, deployment: str) -> None:
        self._scoring_state().holding.discard(deployment)
        found = self.deployments(endpoint).get(deployment)
        if found is not None:
            found["properties"]["provisioningState"] = "Succeeded"

    def endpoint(self, name: str) -> dict[str, Any] | None:
        return self.resources.get(f"{self.workspace_path}/onlineEndpoints/{name}")

    def deployments(self, endpoint: str) -> dict[str, dict[str, Any]]:
        prefix = f"{self.workspace_path}/onlineEndpoints/{endpoint}/deployments/"
        return {
            p.removeprefix(prefix): r for p, r in self.resources.items() if p.startswith(prefix)
        }

    def traffic(self, endpoint: str) -> dict[str, int]:
        found = self.endpoint(endpoint)
        return dict(found["properties"].get("traffic") or {}) if found else {}

    # ---- routes ---------------------------------------------------------------------------
    def endpoints_route(
        self, method: str, path: str, tail: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any] | None:
        import re

        if m := re.fullmatch(EP, tail):
            if method == "PUT":
                return self._put_endpoint(path, m[1], body)
            if method == "GET":
                return (
                    (200, self.resources[path])
                    if path in self.resources
                    else not_found(method, path)
                )
        if (m := re.fullmatch(rf"{EP}/listKeys", tail)) and method == "POST":
            found = self.endpoint(m[1])
            if found is None:
                return not_found(method, path)
            return 200, {"primaryKey": found["key"], "secondaryKey": found["key"][::-1]}
        if (m := re.fullmatch(rf"{EP}/deployments", tail)) and method == "GET":
            return 200, {"value": list(self.deployments(m[1]).values())}
        if m := re.fullmatch(rf"{EP}/deployments/([^/]+)", tail):
            if self.endpoint(m[1]) is None:
                return not_found(method, path)
            if method == "PUT":
                return self._put_deployment(path, m[1], m[2], body)
            if method == "GET":
                return (
                    (200, self.resources[path])
                    if path in self.resources
                    else not_found(method, path)
                )
            if method == "DELETE":
                return self._delete_deployment(path, m[1], m[2])
        return None

    def _put_endpoint(self, path: str, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        props = dict(body.get("properties", {}))
        traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items()}
        existing = self.resources.get(path)
        if traffic:
            missing = sorted(set(traffic) - set(self.deployments(name)))
            if missing:
                return 400, error("BadArgument", f"Deployment(s) {missing} do not exist")
            if sum(traffic.values()) != 100:
                return 400, error("BadArgument", "Traffic values must add up to 100")
        key = existing["key"] if existing else uuid.uuid4().hex
        props.update(
            provisioningState="Succeeded",
            traffic=traffic,
            scoringUri=f"{self._scoring_state().url}/score/{name}",
        )
        resource = {
            "id": path,
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "location": "westeurope",
            "identity": body.get("identity") or {"type": "SystemAssigned"},
            "properties": props,
            "key": key,  # the fake's own: listKeys answers it
        }
        self.resources[path] = resource
        return (200 if existing else 201), resource

    def _put_deployment(
        self, path: str, endpoint: str, name: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        props = dict(body.get("properties", {}))
        state = self._scoring_state()
        failed = name in state.failing
        state.failing.discard(name)
        held = "Creating" if name in state.holding else "Succeeded"
        props["provisioningState"] = "Failed" if failed else held
        props.setdefault("scaleSettings", {"scaleType": "Default"})
        resource = {
            "id": path,
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            "location": "westeurope",
            "sku": body.get("sku", {"name": "Default", "capacity": 1}),
            "properties": props,
        }
        existed = path in self.resources
        self.resources[path] = resource
        return (200 if existed else 201), resource  # a failure shows in provisioningState

    def _delete_deployment(self, path: str, endpoint: str, name: str) -> tuple[int, Any]:
        if path not in self.resources:
            return 204, None  # as the service: deleting what is gone succeeds
        if self.traffic(endpoint).get(name):
            return 400, error("BadArgument", f"deployment {name} takes traffic; move it first")
        del self.resources[path]
        return 200, None

    # ---- scoring ----------------------------------------------------------------------------
    def _scoring_state(self) -> _Scoring:
        state = getattr(self, "_scoring", None)
        if state is None:
            state = _Scoring(self)
            self._scoring = state
        return state

    def stop_scoring(self) -> None:
        state = getattr(self, "_scoring", None)
        if state is not None:
            state.close()


class _Scoring:
    """The endpoints' scoring host: plain HTTP on loopback, so headers can be read."""

    def __init__(self, fake: OnlineEndpoints) -> None:
        self.fake = fake
        self.models: dict[str, LoadedModel] = {}
        self.failing: set[str] = set()
        self.holding: set[str] = set()
        self.invocations: list[tuple[str, int]] = []  # (deployment, images)
        handler = type("ScoringHandler", (_ScoringHandler,), {"scoring": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def score(self, endpoint: str, deployment: str | None, key: str, body: bytes, kind: str):
        found = self.fake.endpoint(endpoint)
        if found is None:
            return 404, {"message": f"endpoint {endpoint} not found"}
        if key != f"Bearer {found['key']}":
            return 401, {"message": "key auth failed"}
        if not deployment:
            traffic = self.fake.traffic(endpoint)
            deployment = max(traffic, key=traffic.__getitem__) if traffic else None
        deployments = self.fake.deployments(endpoint)
        if deployment not in deployments:
            return 404, {"message": f"no deployment {deployment!r} on {endpoint}"}
        model_id = deployments[deployment]["properties"].get("model", "")
        name_version = ":".join(model_id.rstrip("/").split("/")[-3::2])  # .../models/N/versions/V
        model = self.models.get(name_version)
        if model is None:
            return 502, {"message": f"the container for {name_version} did not start"}
        status, document = answer(model, body, kind, Limits())
        self.invocations.append((deployment, document.get("count", 0)))
        return status, document


class _ScoringHandler(BaseHTTPRequestHandler):
    scoring: _Scoring

    def do_POST(self) -> None:
        endpoint = self.path.rstrip("/").rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, document = self.scoring.score(
            endpoint,
            self.headers.get("azureml-model-deployment"),
            self.headers.get("Authorization", ""),
            body,
            self.headers.get("Content-Type", "application/json"),
        )
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass
