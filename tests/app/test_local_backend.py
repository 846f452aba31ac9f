"""The local backend: detached runs under LOCAL_RUNS_DIR, one per job name, state from
status.json. These runs use a batch that prepare_data rejects (a label out of range, which the
trigger's cheap header checks do not read), so each real background run ends within seconds."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import pytest
from apphelpers import batch_files, idx_labels, upload

from retrain import keys
from retrain.backends.base import (
    BlobRef,
    DataAsset,
    JobState,
    LandingBatch,
    RunStatus,
    SubmitRequest,
)
from retrain.backends.local import LocalBackend
from retrain.errors import NotFoundError, SubmissionError


def _bad_labels_batch(store, container: str, name: str) -> LandingBatch:
    labels = bytearray(idx_labels(5))
    labels[-1] = 42  # a label out of range: only the full read in prepare_data sees it
    files = {**batch_files(), "t10k-labels-idx1-ubyte.gz": gzip.compress(bytes(labels))}
    upload(store, container, name, files)
    blobs = tuple(BlobRef(b.name, b.url, b.etag) for b in store.list(container, f"{name}/"))
    return LandingBatch(container, name, blobs)


def _request(settings, data, key: str = "0123456789abcdef") -> SubmitRequest:
    job = keys.job_name(key)
    return SubmitRequest(
        run_id=key,
        job_name=job,
        data=data,
        data_version=key,
        pipeline=settings.pipeline_settings(job_name=job, epochs=1),
    )


def _wait_terminal(backend: LocalBackend, job_name: str, timeout: float = 90) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = backend.job_state(job_name)
        if state.status.terminal or time.monotonic() > deadline:
            return state
        time.sleep(0.25)


@pytest.mark.slow
def test_a_landing_batch_runs_once_in_the_background(settings, store):
    backend = LocalBackend(settings, store)
    data = _bad_labels_batch(store, settings.landing_container, "b1")
    request = _request(settings, data)

    results: list = []
    barrier = threading.Barrier(4)

    def submit() -> None:
        barrier.wait()
        results.append(backend.submit(request))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(s.already_existed for s in results) == [False, True, True, True]
    run_dir = Path(settings.local_runs_dir) / request.job_name
    assert {s.run_dir for s in results} == {str(run_dir)}
    assert sorted(p.name for p in (run_dir / "input").iterdir()) == sorted(batch_files())
    launched = json.loads((run_dir / "launch.json").read_text())
    assert "--epochs" in launched["argv"] and "1" in launched["argv"]
    assert not list(Path(settings.local_runs_dir).glob(".staging-*"))

    state = _wait_terminal(backend, request.job_name)
    assert state.status is RunStatus.FAILED and state.raw_status == "Failed"
    assert "t10k-labels-idx1-ubyte" in (state.error or ""), state.error
    again = backend.submit(request)
    assert again.already_existed and again.status is RunStatus.FAILED
    assert json.loads((run_dir / "launch.json").read_text())["pid"] == launched["pid"]


def test_a_data_asset_is_refused_locally(settings):
    with pytest.raises(SubmissionError, match="data asset"):
        LocalBackend(settings).submit(_request(settings, DataAsset("fashion-mnist", "3")))


def test_a_blob_that_changed_since_keying_is_refused_and_leaves_nothing(settings, store):
    data = _bad_labels_batch(store, settings.landing_container, "b2")
    store.put(settings.landing_container, data.blobs[0].name, b"new content")
    with pytest.raises(SubmissionError, match="changed since"):
        LocalBackend(settings, store).submit(_request(settings, data))
    assert list(Path(settings.local_runs_dir).iterdir()) == []


def test_a_launch_that_died_before_starting_reads_as_failed(settings):
    run_dir = Path(settings.local_runs_dir) / "fashion-retrain-dead"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"status": "Submitted", "pid": None}))
    (run_dir / "launch.json").write_text(json.dumps({"pid": 2**22 + 7}))  # no such process
    (run_dir / "run.log").write_text("Traceback ...\nModuleNotFoundError: No module named 'x'\n")
    state = LocalBackend(settings).job_state("fashion-retrain-dead")
    assert state.status is RunStatus.FAILED
    assert "ModuleNotFoundError" in state.error


def test_completed_status_carries_the_metrics(settings):
    run_dir = Path(settings.local_runs_dir) / "fashion-retrain-done"
    run_dir.mkdir(parents=True)
    status = {
        "status": "Completed",
        "metrics": {"accuracy": 0.93},
        "started_at": "2025-01-01T10:00:00+00:00",
        "ended_at": "2025-01-01T10:01:30+00:00",
        "pid": 1,
    }
    (run_dir / "status.json").write_text(json.dumps(status))
    state = LocalBackend(settings).job_state("fashion-retrain-done")
    assert state.status is RunStatus.COMPLETED and state.metrics == {"accuracy": 0.93}
    assert (state.ended_at - state.started_at).total_seconds() == 90


def test_an_unknown_job_is_not_found(settings):
    with pytest.raises(NotFoundError):
        LocalBackend(settings).job_state("fashion-retrain-nope")
