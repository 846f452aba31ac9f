"""Helpers for the Function App tests: IDX file builders, a recording fake of the one edge we
cannot reach (the Azure ML service), and callers for the registered functions that use real
``azure.functions`` objects, as the host would."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import azure.functions as func

from retrain.backends.base import JobState, RunStatus, Submission, SubmitRequest
from retrain.emulators.functions_host import (
    deliver_blob_event,
    deliver_settle_messages,
    functions,
)
from retrain.errors import NotFoundError, TransientError
from retrain.ledger.records import RunRecord
from retrain.service.core import RetrainService
from retrain.storage import BlobStore

IMAGES, LABELS = 0x00000803, 0x00000801
N_TRAIN, N_TEST = 12, 5


# --- IDX files-----------------------------------------------------------------------------------


def idx_images(
    count: int, *, rows: int = 28, cols: int = 28, declared: int | None = None, magic: int = IMAGES
) -> bytes:
    """``count`` blank images; the header declares ``declared`` of them (default ``count``)."""
    header = b"".join(
        v.to_bytes(4, "big") for v in (magic, count if declared is None else declared, rows, cols)
    )
    return header + bytes(count * rows * cols)


def idx_labels(count: int, *, declared: int | None = None, magic: int = LABELS) -> bytes:
    header = magic.to_bytes(4, "big") + (count if declared is None else declared).to_bytes(4, "big")
    return header + bytes(i % 10 for i in range(count))


def batch_files(gz: bool = True, n_train: int = N_TRAIN, n_test: int = N_TEST) -> dict[str, bytes]:
    """The four files of a small valid batch, by file name (``.gz`` when ``gz``)."""
    raw = {
        "train-images-idx3-ubyte": idx_images(n_train),
        "train-labels-idx1-ubyte": idx_labels(n_train),
        "t10k-images-idx3-ubyte": idx_images(n_test),
        "t10k-labels-idx1-ubyte": idx_labels(n_test),
    }
    if not gz:
        return raw
    return {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in raw.items()}


# --- the fake Azure ML service edge ---------------------------------------------------------------


@dataclass
class FakeBackend:
    """Records every submit; answers job states from ``states``. A repeat job name returns the
    existing job, as both real backends do."""

    name: str = "fake"
    submits: list[SubmitRequest] = field(default_factory=list)
    jobs: dict[str, SubmitRequest] = field(default_factory=dict)
    states: dict[str, JobState] = field(default_factory=dict)
    failing_states: set[str] = field(default_factory=set)
    submit_errors: list[Exception] = field(default_factory=list)
    state_reads: list[str] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, request: SubmitRequest) -> Submission:
        with self.lock:
            self.submits.append(request)
            error = self.submit_errors.pop(0) if self.submit_errors else None
        if self.delay:
            time.sleep(self.delay)
        if error is not None:
            raise error
        with self.lock:
            existed = request.job_name in self.jobs
            self.jobs.setdefault(request.job_name, request)
        return Submission(
            job_name=request.job_name,
            status=RunStatus.SUBMITTED,
            data_asset=f"fashion-mnist:{request.data_version}",
            studio_url=f"https://ml.azure.com/runs/{request.job_name}",
            already_existed=existed,
        )

    def job_state(self, job_name: str) -> JobState:
        with self.lock:
            self.state_reads.append(job_name)
        if job_name in self.failing_states:
            raise TransientError(f"{job_name}: the service answered 503")
        if job_name not in self.jobs:
            raise NotFoundError(f"no job {job_name}")
        return self.states.get(job_name, JobState(RunStatus.RUNNING, "Running"))


# --- calling the registered functions as the host would -------------------------------------------


def function(name: str) -> Callable[..., Any]:
    """The user function registered as ``name``."""
    return functions()[name]


def upload(store: BlobStore, container: str, batch: str, files: dict[str, bytes]) -> list[str]:
    """Upload files into ``container/batch/``; returns the blob paths an event would name."""
    for file, data in files.items():
        store.put(container, f"{batch}/{file}", data)
    return [f"{container}/{batch}/{file}" for file in files]


def blob_event(store: BlobStore, path: str) -> None:
    """Invoke ``landing_blob`` as the host does for its SDK-type binding: the extension's own
    converter builds the ``BlobClient`` from the names the host sends and the ``DataStorage``
    app setting in the environment (the ``store`` fixture sets it to ``store``'s account)."""
    container, _, name = path.partition("/")
    deliver_blob_event(container, name)


def receiver_back_up(svc: RetrainService, store: BlobStore, receiver: Any, clock: Any) -> None:
    """A webhook receiver that was down answers 200 again; three ticks, two hours apart, each a
    sweep and a redelivered blob event, so repeats would show as extra deliveries."""
    receiver.status = 200
    receiver.deliveries.clear()
    for _ in range(3):
        svc.sweep()
        blob_event(store, f"{svc.settings.landing_container}/b0/train-images-idx3-ubyte.gz")
        clock.now += timedelta(hours=2)


def http(
    method: str,
    route: str,
    body: bytes | dict | None = None,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Call the function for ``method route`` with a real HttpRequest: (status, JSON, headers)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    route_params: dict[str, str] = {}
    if route == "retrain":
        name = "start_retrain" if method == "POST" else "list_runs"
    elif route == "models":
        name = "list_models"
    else:
        name, route_params = "get_run", {"run_id": route.removeprefix("retrain/")}
    request = func.HttpRequest(
        method,
        f"http://localhost:7071/api/{route}?code=secret",
        headers=headers or {},
        params=params or {},
        route_params=route_params,
        body=body or b"",
    )
    response = function(name)(request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def timer_tick() -> None:
    function("sweep_runs")(func.timer.TimerRequest(past_due=False))


def records(svc: RetrainService) -> list[RunRecord]:
    """Every run record in the runs table (a test's table holds only its own runs)."""
    return svc.ledger.records()


DAMAGED = "the run record is damaged"


def damage(svc: RetrainService, row: str, record: str = "{ damaged") -> None:
    """Overwrite the ledger row ``row`` with a record that is not one (damage from outside)."""
    from retrain.storage.tables import Op

    svc.ledger.table.transact([Op("upsert", row, {"record": record})])


def submitted_runs(svc: RetrainService, store: BlobStore, count: int) -> list[RunRecord]:
    """``count`` submitted runs, one per batch, in batch-name order."""
    container = svc.settings.landing_container
    for i in range(count):
        blob_event(store, upload(store, container, f"b{i}", batch_files(n_train=10 + i))[0])
    runs = sorted(records(svc), key=lambda r: r.source)
    assert len(runs) == count and all(r.status is RunStatus.SUBMITTED for r in runs)
    return runs


@dataclass
class TableCalls:
    """Counts of the ledger table's requests by kind, from when it is installed."""

    get: int = 0
    query: int = 0
    transact: int = 0


def count_table_calls(svc: RetrainService, monkeypatch: Any) -> TableCalls:
    calls = TableCalls()
    table = svc.ledger.table
    for kind in ("get", "query", "transact"):
        real = getattr(table, kind)

        def counted(*args: Any, _real: Any = real, _kind: str = kind, **kwargs: Any) -> Any:
            setattr(calls, _kind, getattr(calls, _kind) + 1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(table, kind, counted)
    return calls


def settle_messages(svc: RetrainService, *, until: Callable[[], bool], timeout: float) -> int:
    """Deliver the settle queue's messages to ``settle_batch`` as the host does."""
    return deliver_settle_messages(svc, until=until, timeout=timeout)
