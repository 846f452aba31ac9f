"""``make demo`` (``python -m retrain demo``): the event-driven flow, end to end, on this machine.

1. Start Azurite (the npm dev dependency: blob, queue, table) on 127.0.0.1, in a temporary folder.
2. Generate a Fashion-MNIST-format batch and upload it to the landing container.
3. Invoke the registered blob function once per uploaded blob, as the Functions host would; the
   batch is complete but still settling, so its re-check goes to the settle queue, and the
   queue function starts the run once the batch has been unchanged for BATCH_SETTLE_SECONDS.
4. Deliver the local executor's job events (Azure ML's RunStatusChanged, as Event Grid would) to
   the registered ``job_events`` function as they happen, and run the timer function, slowed down,
   as the safety net, until the run is terminal; say which of the two recorded its end, and how
   long after the job ended.
5. Print the run record and where the report is; stop Azurite.

Everything uses embedded defaults (``RETRAIN_BACKEND=local``, runs under ``.demo/runs``, models
under ``.demo/models``, Azurite's data under ``.demo/azurite``, all three started afresh); no
Azure and no network. Any setting may still be overridden through the environment (with another
``LOCAL_MODELS_DIR``, Azurite keeps its data in memory). Afterwards, Azurite started on
``.demo/azurite`` serves the demo's ledger to ``python -m retrain models``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..clock import parse_time
from ..emulators import azurite
from ..settings import PROJECT_ROOT
from .flags import positive_float, positive_int
from .models import AZURITE_DEMO

DEMO_DIR = PROJECT_ROOT / ".demo"
DEMO_RUNS = DEMO_DIR / "runs"
DEMO_STORAGE = DEMO_DIR / "azurite"  # Azurite's data, kept so the ledger can be read afterwards
DEFAULTS = {
    "RETRAIN_BACKEND": "local",
    "LOCAL_RUNS_DIR": str(DEMO_RUNS),
    "LOCAL_MODELS_DIR": str(DEMO_DIR / "models"),
    "LANDING_CONTAINER": "landing",
    "RUNS_TABLE": "runs",
    "SETTLE_QUEUE": "retrain-settle",
    "BATCH_SETTLE_SECONDS": "3",
    "TRAIN_EPOCHS": "3",
    "SWEEP_SCHEDULE": "*/10 * * * * *",
    "BLOB_TRIGGER_SOURCE": "EventGrid",
    "JOB_EVENTS": "true",
}
EVENT_POLL_S = 0.25  # how often the stand-in for Event Grid looks for the executor's events


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m retrain demo",
        description="The event-driven flow on this machine: Azurite, a generated batch, the "
        "registered blob and timer functions, and the shared pipeline run locally.",
    )
    number = parser.add_argument
    number("--n-train", type=positive_int, default=6000, metavar="N", help="default 6000")
    number("--n-test", type=positive_int, default=1000, metavar="N", help="default 1000")
    number("--epochs", type=positive_int, metavar="N", help="default $TRAIN_EPOCHS, else 3")
    number("--tick", type=positive_float, default=60.0, metavar="S",
           help="timer period (s), default 60: job events record the run first")  # fmt: skip
    number("--timeout", type=positive_float, default=900, metavar="S", help="give up after")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when the run Completed."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if args.epochs is not None:
        os.environ["TRAIN_EPOCHS"] = str(args.epochs)
    _show_logs()
    fresh = os.environ["LOCAL_MODELS_DIR"] == DEFAULTS["LOCAL_MODELS_DIR"]
    if fresh:  # the demo's ledger and model registry start empty each time, together
        shutil.rmtree(DEMO_STORAGE, ignore_errors=True)
        shutil.rmtree(DEMO_DIR / "models", ignore_errors=True)
    location = DEMO_STORAGE if fresh else None  # else in memory: the registry is someone else's
    with tempfile.TemporaryDirectory(prefix="retrain-demo-") as tmp:
        try:
            with azurite.running(location) as storage:
                _say(f"Azurite listening on 127.0.0.1 (blob {storage.ports['blob']}, queue "
                     f"{storage.ports['queue']}, table {storage.ports['table']})")  # fmt: skip
                os.environ["DataStorage"] = storage.connection_string  # noqa: SIM112
                code = _flow(args, Path(tmp))
        except azurite.AzuriteError as exc:
            raise SystemExit(f"error: {exc}") from None
        finally:
            _say("Azurite stopped")
    if location is not None:
        _say(
            f"to look again: start the demo's storage ({AZURITE_DEMO}), then "
            "python -m retrain models; python -m retrain status <run id> (runs in .demo/runs)"
        )
    return code


def _flow(args: argparse.Namespace, tmp: Path) -> int:
    import azure.functions as func

    from ..data.fashion_mnist import write_batch
    from ..emulators.functions_host import (
        deliver_blob_event,
        deliver_local_job_events,
        deliver_settle_messages,
        functions,
    )
    from ..service.core import get_service, set_service

    set_service(None)  # built from the settings just set
    service = get_service()
    settings = service.settings
    batch = time.strftime("demo-%Y%m%d-%H%M%S")

    _say(f"1. generating a batch ({args.n_train} train + {args.n_test} test images)")
    files = write_batch(tmp / "batch", args.n_train, args.n_test)
    _say(f"2. uploading it to {settings.landing_container}/{batch}/ in Azurite")
    service.store.ensure_container(settings.landing_container)
    paths = []
    for path in files.values():
        name = f"{batch}/{path.name}"
        service.store.put(settings.landing_container, name, path.read_bytes())
        paths.append(name)

    _say("3. the blob trigger fires once per uploaded blob (as the host would: names, no bytes)")
    for name in paths:
        deliver_blob_event(settings.landing_container, name)
    if settings.settle_seconds:
        _say(f"   ... the settle queue re-checks it once unchanged for {settings.settle_seconds} s")
        deliver_settle_messages(
            service, until=lambda: bool(service.list_runs(1)), timeout=settings.settle_seconds + 30
        )
    runs = service.list_runs(1)
    if not runs:
        _say("no run was recorded; see the log above")
        return 1
    run = service.get_run(runs[0].run_id)
    if run.terminal:
        return _finish(run)

    _say(f"4. job events go to job_events as they happen; the timer sweeps every {args.tick:g} s")
    started, deadline = time.monotonic(), time.monotonic() + args.timeout
    next_tick, shown, recorder = started + args.tick, -1, ""
    while not run.terminal and time.monotonic() < deadline:
        time.sleep(EVENT_POLL_S)
        recorder = ""
        if deliver_local_job_events(settings.local_runs_dir):
            recorder = "job_events (the job's RunStatusChanged event)"
        if time.monotonic() >= next_tick:
            functions()["sweep_runs"](func.timer.TimerRequest(past_due=False))
            next_tick += args.tick
            recorder = recorder or "sweep_runs (the timer)"
        run = service.get_run(run.run_id)
        elapsed = time.monotonic() - started
        if int(elapsed) // 2 != shown or run.terminal:
            shown = int(elapsed) // 2
            _progress(service, run, elapsed)
    print(file=sys.stderr)
    if not run.terminal:
        _say(f"gave up after {args.timeout:g} s; the run goes on in {run.run_dir}")
        return 1
    ended, recorded = parse_time(run.ended_at), parse_time(run.updated_at)
    lag = f", {(recorded - ended).total_seconds():.1f} s after the job ended" if (
        ended and recorded) else ""  # fmt: skip
    _say(f"   {run.status.value} recorded by {recorder}{lag}")
    return _finish(run)


def _finish(run) -> int:
    _say("5. the run record (metrics: the scalars; all of them are in the run's metrics.json):")
    record = run.to_dict()
    if record["metrics"]:
        record["metrics"] = {
            k: v for k, v in record["metrics"].items() if isinstance(v, (int, float, str))
        }
    print(json.dumps(record, indent=2))
    if run.run_dir:
        reports = sorted(Path(run.run_dir).glob("**/*.png"))
        if reports:
            _say(f"report: {reports[0]}")
        _say(f"run folder: {run.run_dir}")
    accuracy = (run.metrics or {}).get("accuracy")
    if accuracy is not None:
        _say(f"{run.status.value}: test accuracy {accuracy:.4f}")
    else:
        _say(f"{run.status.value}: {run.reason or ''}")
    if run.model:
        _show_model(run.model)
        if run.model.get("version") is not None and run.run_dir:
            _serve_champion(Path(run.run_dir))
    return 0 if run.status.value == "Completed" else 1


def _serve_champion(run_dir: Path) -> None:
    """Serve the registry's champion as ``python -m retrain serve`` would; score a few images."""
    from ..service.core import get_service
    from ..serving.sample import serve_and_score

    settings = get_service().settings
    _say("7. the champion, served as python -m retrain serve serves it:")
    serve_and_score(settings.local_models_dir, settings.model_name, run_dir, say=_say)
    serve = f"LOCAL_MODELS_DIR={settings.local_models_dir} python -m retrain serve"
    _say(f"to serve it yourself: {serve}")


def _show_model(model: dict) -> None:
    """The registered version, whether it became champion and why, and the registry."""
    from ..service.core import get_service
    from .models import models_table

    _say("6. the model registry (python -m retrain models; GET /api/models):")
    print(models_table(get_service().list_models(5)))
    if model.get("version") is None:
        _say(f"model {model['name']}: {model['reason']}")
        return
    verdict = "promoted to champion" if model["promoted"] else "registered, not promoted"
    _say(f"model {model['name']} version {model['version']}: {verdict} ({model['reason']})")


def _progress(service, run, elapsed: float) -> None:
    step = ""
    if run.job_name and not run.terminal:
        try:
            step = service.backend.job_state(run.job_name).details.get("step") or ""
        except Exception:  # progress is cosmetic; the sweep records the truth
            step = ""
    line = f"   {elapsed:5.0f} s  {run.status.value:<10} {step}"
    if sys.stderr.isatty():
        print("\r\x1b[K" + line, end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _show_logs() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("   %(name)s: %(message)s"))
    for name in ("function_app", "retrain"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
