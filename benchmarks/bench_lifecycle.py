"""The run lifecycle's figures: how soon a run's end is recorded, the cap under a burst, and what
the job events path costs in Azure ML calls.

    .venv/bin/python benchmarks/bench_lifecycle.py [--runs 10] [--burst 40]

1. end -> Completed: ``--runs`` real local runs (the local backend, a tiny generated batch, one
   epoch) on Azurite with the timer at 10 minutes (it never fires here) and JOB_EVENTS on: the
   executor's RunStatusChanged events go to the registered ``job_events`` function as the host
   stand-in finds them (every 0.25 s). Per run: the Completed record's ``updated_at`` (model
   registered, announcement queued) less the job's own ``ended_at``.
2. A burst of ``--burst`` batches with MAX_ACTIVE_RUNS=4, against a backend double at the Backend
   seam whose jobs each run 1 s and then send their event: the most jobs running at any moment
   (the double counts them), and the time until every run is terminal.
3. Azure ML calls an hour for 4 active runs, measured against the loopback fake of Azure ML
   (tests/azureml/fake_azureml.py) through the real SDK: the requests of one sweep tick over 4
   running jobs and of one job event, times how often each happens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "azureml")]
EVENT_POLL_S = 0.25
EVENTS_PER_RUN = 6  # a pipeline job: NotStarted, Queued, Preparing, Running, Finalizing, its end


def _settings(connection: str, tmp: Path, **changes: Any) -> Any:
    from retrain.settings import Settings

    tag = uuid.uuid4().hex[:8]
    base = Settings.from_env({
        "DataStorage": connection, "LANDING_CONTAINER": f"landing-{tag}",
        "DATASETS_CONTAINER": f"datasets-{tag}", "RUNS_TABLE": f"runs{tag}",
        "BATCH_SETTLE_SECONDS": "0", "RETRAIN_BACKEND": "local", "JOB_EVENTS": "true",
        "SWEEP_SCHEDULE": "0 */10 * * * *", "LOCAL_RUNS_DIR": str(tmp / f"runs-{tag}"),
        "LOCAL_MODELS_DIR": str(tmp / f"models-{tag}"), "TRAIN_EPOCHS": "1",
    })  # fmt: skip
    return replace(base, **changes)


def _land(service: Any, batches: dict[str, dict[str, Path]]) -> None:
    container = service.settings.landing_container
    service.store.ensure_container(container)
    for batch, files in batches.items():
        for path in files.values():
            service.store.put(container, f"{batch}/{path.name}", path.read_bytes())
        service.handle_blob(f"{container}/{batch}/{next(iter(files.values())).name}")


def end_to_completed(connection: str, tmp: Path, runs: int) -> list[float]:
    """Seconds from each local job's end to its Completed record, job events on."""
    from retrain.data.fashion_mnist import write_batch
    from retrain.emulators.functions_host import deliver_local_job_events
    from retrain.service.core import RetrainService, set_service

    settings = _settings(connection, tmp, max_active_runs=2)  # two cores here
    os.environ["DataStorage"] = connection  # noqa: SIM112
    service = RetrainService(settings)
    set_service(service)
    batches = {f"b{i}": write_batch(tmp / f"data-{i}", 600 + i, 100, seed=i) for i in range(runs)}
    _land(service, batches)
    deadline = time.monotonic() + 60 * runs
    while time.monotonic() < deadline:
        deliver_local_job_events(settings.local_runs_dir)
        found = service.ledger.records()
        if len(found) == runs and all(r.terminal for r in found):
            break
        time.sleep(EVENT_POLL_S)
    from retrain.clock import parse_time

    lags = []
    for record in service.ledger.records():
        assert record.status.value == "Completed", (record.status, record.reason)
        state = service.backend.job_state(record.job_name or "")
        assert state.ended_at is not None
        lags.append((parse_time(record.updated_at) - state.ended_at).total_seconds())  # type: ignore[operator]
    set_service(None)
    return lags


@dataclass
class TimedJobs:
    """A backend double: each job runs ``duration`` seconds, then sends its RunStatusChanged
    event to ``job_events`` (on a thread of its own, as the host's pool would). Counts the jobs
    running at once."""

    duration: float
    name: str = "timed"
    ended: dict[str, float] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, request: Any) -> Any:
        from retrain.backends.base import RunStatus, Submission

        with self.lock:
            fresh = request.job_name not in self.running and request.job_name not in self.ended
            if fresh:
                self.running.add(request.job_name)
                self.most = max(self.most, len(self.running))
        if fresh:
            threading.Timer(self.duration, self._end, (request.job_name,)).start()
        return Submission(request.job_name, RunStatus.SUBMITTED, already_existed=not fresh)

    def _end(self, job_name: str) -> None:
        from retrain.emulators.functions_host import deliver_job_event
        from retrain.local.events import job_event

        with self.lock:
            self.running.discard(job_name)
            self.ended[job_name] = time.monotonic()
        deliver_job_event(job_event(job_name, "Completed", "bench", {"run_id": job_name}))

    def job_state(self, job_name: str) -> Any:
        from retrain.backends.base import JobState, RunStatus

        if job_name in self.ended:
            return JobState(RunStatus.COMPLETED, "Completed", {"accuracy": 0.9})
        return JobState(RunStatus.RUNNING, "Running")


def burst(connection: str, tmp: Path, count: int) -> tuple[int, float, bool]:
    """(most jobs running at once, seconds until all terminal, submitted in landing order)."""
    from retrain.data.fashion_mnist import write_batch
    from retrain.service.core import RetrainService, set_service

    settings = _settings(connection, tmp, max_active_runs=4)
    backend = TimedJobs(duration=1.0)
    service = RetrainService(settings, backend=backend)
    set_service(service)
    one = write_batch(tmp / "burst", 60, 10)
    batches = {f"burst-{i:02d}": one for i in range(count)}  # a run each: the key has the batch
    start = time.monotonic()
    _land(service, batches)
    while time.monotonic() - start < 600:
        found = service.ledger.records()
        if len(found) == count and all(r.terminal for r in found):
            break
        time.sleep(0.05)
    total = time.monotonic() - start
    found = sorted(service.ledger.records(), key=lambda r: r.created_at)
    order = sorted(backend.ended, key=backend.ended.__getitem__)
    in_order = [r.job_name for r in found] == order or _batches_of(order, found, 4)
    set_service(None)
    return backend.most, total, in_order


def _batches_of(order: list[str], found: list[Any], cap: int) -> bool:
    """Jobs of one admission wave may end in any order: compare waves of ``cap``."""
    created = [r.job_name for r in found]
    return all(
        set(order[i : i + cap]) == set(created[i : i + cap]) for i in range(0, len(order), cap)
    )


def azureml_calls(connection: str, tmp: Path) -> tuple[int, int, int]:
    """Requests to the fake: (a sweep tick over 4 running jobs, one job event for a running
    job, one completion by either path)."""
    import trustme
    from amlhelpers import point_client_at
    from fake_azureml import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML

    from retrain.backends.azureml import AzureMLBackend
    from retrain.data.fashion_mnist import write_batch
    from retrain.emulators.functions_host import deliver_job_event
    from retrain.local.events import job_event
    from retrain.service.core import RetrainService, set_service

    ca = trustme.CA()
    ca_file = str(tmp / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    fake = FakeAzureML(connection)
    with fake.serve(ca, ca_file):
        point_client_at(fake)
        settings = _settings(connection, tmp, max_active_runs=4, backend="azureml",
                             subscription_id=SUBSCRIPTION, resource_group=RESOURCE_GROUP,
                             workspace_name=WORKSPACE)  # fmt: skip
        service = RetrainService(settings, backend=AzureMLBackend(settings))
        set_service(service)
        one = write_batch(tmp / "aml", 60, 10)
        _land(service, {f"aml-{i}": one for i in range(4)})
        jobs = [r.job_name or "" for r in service.ledger.records()]
        for job in jobs:
            fake.set_job_status(job, "Running")
        service.sweep()  # Submitted -> Running: recorded once
        before = len(fake.requests)
        service.sweep()
        tick = len(fake.requests) - before
        before = len(fake.requests)
        deliver_job_event(job_event(jobs[0], "Running", "bench", {"run_id": "x"}))
        event = len(fake.requests) - before
        fake.complete_job(jobs[0], {"metrics.json": b'{"accuracy": 0.9}'})
        before = len(fake.requests)
        deliver_job_event(job_event(jobs[0], "Completed", "bench", {"run_id": "x"}))
        completion = len(fake.requests) - before
        set_service(None)
    return tick, event, completion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burst", type=int, default=40)
    args = parser.parse_args()
    from retrain.emulators.azurite import running

    with tempfile.TemporaryDirectory() as tmp_name, running(Path(tmp_name) / "az") as storage:
        tmp = Path(tmp_name)
        lags = end_to_completed(storage.connection_string, tmp, args.runs)
        print(f"1. job end -> Completed record, {args.runs} local runs, timer every 10 min, "
              f"job events on: median {statistics.median(lags):.2f} s, "
              f"max {max(lags):.2f} s")  # fmt: skip
        most, total, in_order = burst(storage.connection_string, tmp, args.burst)
        print(f"2. a burst of {args.burst} batches, MAX_ACTIVE_RUNS=4, 1 s jobs: at most {most} "
              f"running at once; all terminal after {total:.1f} s; first in, first out: "
              f"{'yes' if in_order else 'no'}")  # fmt: skip
        tick, event, completion = azureml_calls(storage.connection_string, tmp)
    per_hour_timer = 12 * tick
    per_hour_events = per_hour_timer + 4 * EVENTS_PER_RUN * event
    print(f"3. Azure ML requests for 4 running jobs (loopback fake, real SDK): a sweep tick "
          f"{tick}, one job event {event}; a completion {completion} by either path")  # fmt: skip
    print("   an hour, 4 runs of an hour each (completions not counted: the same either way):")
    print(f"   timer every 5 min, no events        {per_hour_timer:5d} requests  "
          "(an end is recorded up to 5 min late)")  # fmt: skip
    print(f"   timer every 5 min + job events      {per_hour_events:5d} requests  "
          f"({EVENTS_PER_RUN} events a run; recorded within seconds)")  # fmt: skip
    print(f"   timer every 10 s, no events         {360 * tick:5d} requests  "
          "(recorded up to 10 s late)")  # fmt: skip


if __name__ == "__main__":
    main()
