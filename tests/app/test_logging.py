"""Logs that survive the real Functions host, checked through the logging calls themselves:
every line is written from the invocation's own thread (the host drops lines that carry no
invocation id), the SDKs' per-request dumps stay out although the worker sets the root logger
to INFO, and 8 concurrent blob events (host.json's limit) never exhaust the connection pool."""

from __future__ import annotations

import logging
import threading

from apphelpers import batch_files, blob_event, submitted_runs, upload

from retrain.backends.base import JobState, RunStatus


class Recorder(logging.Handler):
    """Every record, as the worker's root handler would see it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _recording(level: int) -> tuple[Recorder, logging.Logger, int]:
    root = logging.getLogger()
    recorder, previous = Recorder(), root.level
    root.addHandler(recorder)
    root.setLevel(level)  # the Python worker sets INFO
    return recorder, root, previous


def test_the_sweep_logs_only_from_the_invocations_thread(service, store, backend):
    runs = submitted_runs(service, store, 6)
    for i, run in enumerate(runs):
        status = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)[i % 3]
        backend.states[run.job_name] = JobState(status, status.value, error="boom")
    backend.failing_states.add(runs[0].job_name)  # an error line too
    recorder, root, previous = _recording(logging.INFO)
    try:
        summary = service.sweep()  # SWEEP_CONCURRENCY 4: job states are read on 4 threads
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous)
    assert (summary.completed, summary.errors) == (1, 1)
    ours = [r for r in recorder.records if r.name.startswith(("retrain", "function_app"))]
    assert len(ours) == 6  # five runs ended, one error
    assert {r.thread for r in ours} == {threading.get_ident()}


def test_no_sdk_request_dumps_at_info(service, store, caplog):
    recorder, root, previous = _recording(logging.INFO)
    try:
        for path in upload(store, service.settings.landing_container, "quiet", batch_files()):
            blob_event(store, path)
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous)
    assert [r for r in recorder.records if r.name.startswith(("retrain", "function_app"))]
    noisy = [r for r in recorder.records if r.name.startswith(("azure", "urllib3"))]
    assert noisy == [], [r.getMessage()[:80] for r in noisy]


def test_eight_concurrent_blob_events_never_fill_the_connection_pool(service, store):
    container = service.settings.landing_container
    paths = [upload(store, container, f"p{i}", batch_files(n_train=10 + i))[0] for i in range(8)]
    recorder, root, previous = _recording(logging.WARNING)
    barrier, errors = threading.Barrier(8), []

    def deliver(path: str) -> None:
        barrier.wait()
        try:
            blob_event(store, path)
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(p,)) for p in paths]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        root.removeHandler(recorder)
        root.setLevel(previous)
    assert errors == []
    assert not [r for r in recorder.records if "pool is full" in r.getMessage()]
    assert len(service.ledger.recent(20)) == 8
