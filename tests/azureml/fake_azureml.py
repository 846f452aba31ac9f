"""A loopback fake of the Azure ML REST API, just enough for the real azure-ai-ml SDK.

The SDK runs unchanged, with its own HTTP pipeline, against this HTTPS server on 127.0.0.1
(certificate from a ``trustme`` test CA). Blob storage is the real emulator (Azurite): the fake
hands the SDK SAS URLs for it, as the service does.

Routes, relative to ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
Microsoft.MachineLearningServices/workspaces/{ws}`` (any api-version)::

    GET   (the workspace)                      its discovery URL points back here
    GET   /computes/{name}                     404 unless the name is in ``computes``
    GET   /datastores[/workspaceblobstore]     the default datastore (an Azurite container)
    POST  /datastores/workspaceblobstore/listSecrets   a SAS token for it
    GET   /codes/{name}/versions?hash=H        code versions holding content hash H
    POST  /codes/{name}/versions/{v}/startPendingUpload   SAS URL of a fresh Azurite folder
    PUT   /{codes|environments|components|data}/{name}/versions/{v}   immutable once created:
                                               the same body again answers 200, another 409
    GET   /{codes|environments|components|data}/{name}/versions/{v}
    PUT   /jobs/{name}                         400 "A job with this name already exists" on repeat;
                                               a pipeline job gets one child run per node
    GET   /jobs/{name}
    PUT   /models/{name}/versions/{v}          a repeat may change tags and description only;
                                               400 "Asset paths cannot be updated." for a new path
    GET   /models/{name}/versions[/{v}]        one version, or all of them newest first ($top)

and the data plane, for ``jobs.download`` of a finished job's output and for run history::

    GET   /discovery                                         data-plane hosts: this server
    GET   /history/v1.0/{workspace}/runs/{name}              the run: status, start/end times
    GET   /history/v1.0/{workspace}/runs/{name}/children     a pipeline job's steps (fake_models)
    POST  /history/v1.0/{workspace}/rundata                  the same, and its outputs
    POST  /data/v1.0/{workspace}/dataversion/batchGetResolvedUris   asset id -> azureml:// URI
    *     /devstoreaccount1/...                              relayed to Azurite

The SDK builds storage URLs as ``https://{account}.blob.{suffix}``; the datastore's account is
named ``127.0.0.1:{port}/devstoreaccount1#`` so that URL lands here (the ``#`` swallows the
suffix), and the fake relays it to Azurite. Anything else answers 404 with a message naming
the request. Every request is recorded in ``requests`` so tests assert on what the SDK sent.
Controls: ``fail_next`` (answer the next N matching requests with 429/503/..., storage requests
too: 409 is "The specified blob already exists"), ``computes``, ``set_job_status`` (which
stamps the run's start and end times as run history does) and ``complete_job`` (write the score
output and mark the job Completed); model versions and child runs have theirs in
``fake_models`` (``children``, ``child``, ``reuse_step``, ``model``). The transport (server,
faults, relay) is ``fake_http``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import trustme
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from fake_endpoints import OnlineEndpoints
from fake_http import FakeCredential as FakeCredential  # re-exported: tests sign in with it
from fake_http import Fault, Recorded, error, not_found, serve
from fake_models import ModelsAndChildren

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-retrain"
WORKSPACE = "ws-retrain"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
# The service's words for a duplicate job name: HTTP 400, code UserError, inner codes
# Immutable > JobPropertyImmutable. The middle sentence names what differed.
JOB_EXISTS = (
    "A job with this name already exists. If you are trying to create a new job, use a different "
    "name. If you are trying to update an existing job, the existing job's Jobs cannot be "
    "changed. Only description, tags, displayName, properties, and isArchived can be updated."
)
JOB_EXISTS_INNER = ("Immutable", "JobPropertyImmutable")
ASSETS = ("codes", "environments", "components", "data")
OUTPUT = "output_result"  # the pipeline output that carries score_node's metrics.json
DATASTORE = "workspaceblobstore"
STARTED = {"Running", "Finalizing", "CancelRequested", "NotResponding"}  # it has begun
ENDED = {"Completed", "Failed", "Canceled"}  # run history stamps an end time


@dataclass
class FakeAzureML(ModelsAndChildren, OnlineEndpoints):
    """State and controls of one fake workspace; ``serve()`` runs it on loopback."""

    storage_connection: str  # Azurite: the workspace's storage
    computes: set[str] = field(default_factory=lambda: {"cpu-cluster", "gpu-cluster"})
    code_container: str = field(
        default_factory=lambda: f"azureml-blobstore-{uuid.uuid4().hex[:12]}"
    )
    requests: list[Recorded] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> resource
    child_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # job -> steps
    url: str = ""
    ca_file: str = ""
    workspace_path: str = WORKSPACE_PATH
    job_exists_inner: tuple[str, ...] = JOB_EXISTS_INNER  # () answers with the message only
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- controls -------------------------------------------------------------------------
    def fail_next(self, path: str, count: int = 1, status: int = 503, method: str | None = None):
        """Answer the next ``count`` requests whose path matches regex ``path`` with ``status``."""
        self._faults.append(Fault(re.compile(path), method, status, count))

    def clear_faults(self) -> None:
        self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        return next((f for f in self._faults if f.takes(method, path)), None)

    def set_job_status(self, name: str, status: str, at: datetime | None = None) -> None:
        """Set the job's status; run history stamps its start (once it has begun) and its end
        (when it ends, cleared if it comes back), as the service does."""
        job = self.job(name)
        job["properties"]["status"] = status
        when = (at or datetime.now(timezone.utc)).isoformat()
        if status in STARTED | ENDED:
            job.setdefault("startTimeUtc", when)
        job["endTimeUtc"] = when if status in ENDED else None

    def complete_job(
        self, name: str, outputs: dict[str, bytes], at: datetime | None = None
    ) -> None:
        """Write files into the job's ``output_result`` folder (Azurite); mark it Completed."""
        container = self._container()
        for file, data in outputs.items():
            container.upload_blob(self._output_prefix(name) + file, data, overwrite=True)
        self.job(name)["outputs_written"] = True
        self.set_job_status(name, "Completed", at)

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests with this method whose workspace-relative path matches ``pattern``."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.tail)]

    @property
    def storage_endpoint(self) -> str:
        service = BlobServiceClient.from_connection_string(self.storage_connection)
        return service.url

    def job(self, name: str) -> dict[str, Any]:
        return self.resources[f"{WORKSPACE_PATH}/jobs/{name}"]

    # ---- serving --------------------------------------------------------------------------
    @contextmanager
    def serve(self, ca: trustme.CA, ca_file: str) -> Iterator[FakeAzureML]:
        """Run on 127.0.0.1 (HTTPS, cert from ``ca``) until the block exits."""
        self.ca_file = ca_file
        self._container()  # the workspace's storage exists before anything is uploaded
        with serve(self, ca) as url:
            self.url = url
            yield self

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/discovery" and method == "GET":  # the workspace's data-plane hosts: here
            return 200, {k: self.url.rstrip("/") for k in ("api", "history", "experimentation")}
        history = f"/history/v1.0{WORKSPACE_PATH}"
        if path == f"{history}/rundata" and method == "POST":
            return self._run_data(body["runId"])
        if (m := re.fullmatch(rf"{history}/runs/([^/]+)", path)) and method == "GET":
            return self._run(m[1])
        if (m := re.fullmatch(rf"{history}/runs/([^/]+)/children", path)) and method == "GET":
            with self._lock:
                return self.run_children(m[1])
        if path == f"/data/v1.0{WORKSPACE_PATH}/dataversion/batchGetResolvedUris":
            return 200, {"values": {i: self._resolved_uri(i) for i in body["values"]}}
        if not path.startswith(WORKSPACE_PATH):
            return not_found(method, path)
        tail = path.removeprefix(WORKSPACE_PATH)
        with self._lock:
            return self._route(method, path, tail, query, body)

    def _route(self, method: str, path: str, tail: str, query: dict[str, str], body: Any):
        if tail == "" and method == "GET":
            return 200, self._workspace()
        if m := re.fullmatch(r"/computes/([^/]+)", tail):
            if method == "GET" and m[1] in self.computes:
                return 200, self._compute(m[1])
            return 404, error("NotFound", f"compute {m[1]} is not found in workspace {WORKSPACE}")
        if tail == "/datastores" and method == "GET":
            return 200, {"value": [self._datastore()]}
        if tail == f"/datastores/{DATASTORE}" and method == "GET":
            return 200, self._datastore()
        if tail == f"/datastores/{DATASTORE}/listSecrets" and method == "POST":
            return 200, {"secretsType": "Sas", "sasToken": self._sas()}
        if method == "GET" and re.fullmatch(r"/codes/[^/]+/versions", tail):
            return 200, {"value": self._codes_with_hash(query.get("hash"))}
        if method == "POST" and re.fullmatch(
            r"/codes/[^/]+/versions/[^/]+/startPendingUpload", tail
        ):
            return 200, self._pending_upload()
        if re.fullmatch(rf"/({'|'.join(ASSETS)})/[^/]+/versions/[^/]+", tail):
            if method == "PUT":
                return self._put_asset(path, body)
            if method == "GET":
                return self._get(method, path)
        if re.fullmatch(r"/jobs/[^/]+", tail):
            if method == "PUT":
                return self._put_job(path, body)
            if method == "GET":
                return self._get(method, path)
        if tail.startswith("/models/"):
            answer = self.models_route(method, path, tail, query, body)
            if answer is not None:
                return answer
        if tail.startswith("/onlineEndpoints/"):  # fake_endpoints
            return self.endpoints_route(method, path, tail, query, body) or not_found(method, path)
        return not_found(method, path)

    # ---- resources --------------------------------------------------------------------------
    def _get(self, method: str, path: str) -> tuple[int, Any]:
        if path in self.resources:
            return 200, self.resources[path]
        return not_found(method, path)

    def _put_asset(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        existing = self.resources.get(path)
        if existing is not None:  # versions are immutable: same body is fine, else conflict
            if existing["properties"] == {**body.get("properties", {}), **_server_props(path)}:
                return 200, existing
            return 409, error("Conflict", f"{_name_version(path)} already exists, immutable")
        resource = _resource(path, body)
        resource["properties"].update(_server_props(path))
        self.resources[path] = resource
        return 201, resource

    def _put_job(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path in self.resources:
            return 400, error("UserError", JOB_EXISTS, *self.job_exists_inner)
        name = path.rsplit("/", 1)[1]
        resource = _resource(path, body)
        props = resource["properties"]
        props["status"] = "NotStarted"
        props["services"] = {
            "Studio": {
                "jobServiceType": "Studio",
                "endpoint": f"https://ml.azure.com/runs/{name}?wsid={WORKSPACE_PATH}",
            }
        }
        self.resources[path] = resource
        if props.get("jobType") == "Pipeline":
            self.make_children(name, body)
        return 201, resource

    def _codes_with_hash(self, content_hash: str | None) -> list[dict[str, Any]]:
        """Like the service: any code version in the workspace with this content hash (the SDK
        asks under a fresh random name, so the name cannot matter)."""
        prefix = f"{WORKSPACE_PATH}/codes/"
        return [
            r
            for p, r in self.resources.items()
            if p.startswith(prefix)
            and content_hash
            and r["properties"].get("properties", {}).get("hash_sha256") == content_hash
        ]

    def _pending_upload(self) -> dict[str, Any]:
        """A fresh folder in the workspace's container, with a SAS to write it (as the service).
        Its URL is this server's, which relays to Azurite, so uploads are recorded and can fail."""
        container = urlsplit(self._container().url).path
        blob_uri = f"{self.url.rstrip('/')}{container}/LocalUpload/{uuid.uuid4().hex}"
        return {
            "blobReferenceForConsumption": {
                "blobUri": blob_uri,
                "storageAccountArmId": f"{WORKSPACE_PATH}/storage/fake",
                "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{self._sas()}"},
            },
            "pendingUploadId": uuid.uuid4().hex,
            "pendingUploadType": "TemporaryBlobReference",
        }

    def _container(self) -> ContainerClient:
        """The workspace's blob container in Azurite (code uploads, job outputs)."""
        service = BlobServiceClient.from_connection_string(self.storage_connection)
        container = service.get_container_client(self.code_container)
        if not container.exists():
            container.create_container()
        return container

    def _sas(self) -> str:
        service = BlobServiceClient.from_connection_string(self.storage_connection)
        return generate_container_sas(
            account_name=service.account_name,
            container_name=self.code_container,
            account_key=service.credential.account_key,
            permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1),
        )

    @staticmethod
    def _output_prefix(job_name: str) -> str:
        return f"azureml/{job_name}/{OUTPUT}/"

    def _run(self, run_id: str) -> tuple[int, Any]:
        """The run-history view of a job: its status and its start and end times (or null)."""
        job = self.resources.get(f"{WORKSPACE_PATH}/jobs/{run_id}")
        if job is None:
            return 404, error("UserError", f"Run {run_id} was not found")
        return 200, {
            "runId": run_id,
            "status": job["properties"]["status"],
            "startTimeUtc": job.get("startTimeUtc"),
            "endTimeUtc": job.get("endTimeUtc"),
        }

    def _run_data(self, run_id: str) -> tuple[int, Any]:
        status, run = self._run(run_id)
        if status != 200:
            return status, run
        outputs = {}
        if self.job(run_id).get("outputs_written"):
            asset = f"azureml://locations/westeurope/workspaces/ws/data/azureml_{run_id}_{OUTPUT}"
            outputs[OUTPUT] = {"assetId": f"{asset}/versions/1", "type": "uri_folder"}
        return 200, {"runMetadata": {**run, "outputs": outputs}}

    def _resolved_uri(self, asset_id: str) -> dict[str, str]:
        run_id = re.search(rf"/data/azureml_(.+)_{OUTPUT}/", asset_id)[1]
        path = f"azureml://datastores/{DATASTORE}/paths/{self._output_prefix(run_id)}"
        return {"uri": path, "type": "uri_folder"}

    def _workspace(self) -> dict[str, Any]:
        return {
            "id": WORKSPACE_PATH,
            "name": WORKSPACE,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "location": "westeurope",
            "properties": {
                "workspaceId": str(uuid.UUID(int=1)),
                "discoveryUrl": f"{self.url}discovery",
            },
        }

    def _compute(self, name: str) -> dict[str, Any]:
        return {
            "id": f"{WORKSPACE_PATH}/computes/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "location": "westeurope",
            "properties": {
                "computeType": "AmlCompute",
                "computeLocation": "westeurope",
                "provisioningState": "Succeeded",
                "properties": {
                    "vmSize": "STANDARD_NC4AS_T4_V3" if "gpu" in name else "STANDARD_DS3_V2",
                    "vmPriority": "Dedicated",
                    "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4},
                },
            },
        }

    def _datastore(self) -> dict[str, Any]:
        return {
            "id": f"{WORKSPACE_PATH}/datastores/{DATASTORE}",
            "name": DATASTORE,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                # https://{account}.blob.{suffix} -> https://127.0.0.1:{port}/devstoreaccount1
                "accountName": f"{urlsplit(self.url).netloc}/devstoreaccount1#",
                "containerName": self.code_container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "isDefault": True,
                "credentials": {"credentialsType": "Sas", "secrets": {"secretsType": "Sas"}},
            },
        }


def _resource(path: str, body: dict[str, Any]) -> dict[str, Any]:
    parts = path.strip("/").split("/")
    now = datetime.now(timezone.utc).isoformat()
    return {
        "id": path,
        "name": parts[-1],
        "type": "Microsoft.MachineLearningServices/workspaces/" + "/".join(parts[8:-1:2]),
        "properties": dict(body.get("properties", {})),
        "systemData": {"createdAt": now, "createdBy": "fake", "lastModifiedAt": now},
    }


def _server_props(path: str) -> dict[str, Any]:
    return {"provisioningState": "Succeeded"} if "/versions/" in path else {}


def _name_version(path: str) -> str:
    parts = path.rsplit("/", 3)
    return f"{parts[-3]}:{parts[-1]}"
