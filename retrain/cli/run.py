"""``run`` and ``status``: run the pipeline here or on Azure ML, and say where a run stands.

With the local backend ``run`` runs the job in the foreground through the local executor and ends
with a summary (status, test accuracy, each step's duration, run folder); with azureml it submits
the job, prints its name and studio URL, and with ``--wait`` follows it to the end.
``--champion-model`` hands score a champion to compare with on the same test images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import keys
from ..errors import InvalidRequestError, NotFoundError, TransientError
from ..settings import Settings
from .data import Keyed, asked_params, data_source, folder_keys, local_folder, overrides, run_params

if TYPE_CHECKING:
    from ..backends import Backend, JobState
    from ..local.status import RunSummary

EXIT_FAILED = 1
KEY_FILE = "key.json"  # in a local run folder: its content key, run key and parameters
REMOTE_PREFIXES = ("azureml:", "https://", "http://")


def add_champion_flags(run: argparse.ArgumentParser) -> None:
    """``run``'s champion flags: the model score compares the new one with (none: first run)."""
    group = run.add_argument_group("champion (scored on the same test images as the new model)")
    group.add_argument(
        "--champion-model",
        metavar="PATH",
        help="the champion's model folder (holding predictor.pt); for azureml also a registered "
        "model, azureml:NAME:VERSION",
    )
    group.add_argument(
        "--champion-version", metavar="TEXT", help="its registry version, echoed in metrics.json"
    )


def champion_overrides(args: argparse.Namespace, *, local: bool) -> dict[str, str]:
    """The PipelineSettings fields for ``--champion-model``/``--champion-version``.

    A local folder becomes an absolute path: steps run in their component folders, and Azure ML
    uploads a relative one from wherever the process happens to be. The local executor cannot
    fetch a registered model, so it refuses one before anything runs.
    """
    model = getattr(args, "champion_model", None)
    version = getattr(args, "champion_version", None)
    if not model:
        if version:
            raise InvalidRequestError("--champion-version", "given without --champion-model")
        return {}
    if model.startswith(REMOTE_PREFIXES):
        if local:
            raise InvalidRequestError(
                "--champion-model",
                f"{model} is not on this machine; the local backend needs a local folder",
            )
    else:
        model = str(Path(model).expanduser().resolve())
    return {"champion_model": model, **({"champion_version": version} if version else {})}


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    backend = args.backend or settings.backend
    if backend == "local":
        return _run_local(args, settings)
    return _run_on_backend(args, replace(settings, backend=backend))


def _run_local(args: argparse.Namespace, settings: Settings) -> int:
    from ..local.executor import RunSummary, read_status, run_pipeline, write_json_atomic

    folder = local_folder(args.data)
    pipeline = settings.pipeline_settings(**overrides(args), **champion_overrides(args, local=True))
    keyed = folder_keys(folder, run_params(pipeline))
    job_name = args.job_name or keys.job_name(keyed.run)
    run_dir = (args.run_dir or settings.local_runs_dir / job_name).resolve()
    existing = read_status(run_dir)
    prior = None if args.force else existing
    if prior and prior.get("status") == "Completed":
        print(
            f"{job_name} already completed with this data and these parameters in {run_dir}; "
            "its summary follows (--force runs it again)",
            file=sys.stderr,
        )
        return _report(RunSummary.from_status(run_dir, prior), as_json=args.json)
    if prior and prior.get("status") == "Running" and args.run_dir is None:
        raise InvalidRequestError(
            "DATA", f"{job_name} is already running (pid {prior.get('pid')}) in {run_dir}"
        )
    note = None if existing else params_changed(settings.local_runs_dir, keyed, job_name)
    if note:  # a first run with these parameters, of data that ran with others
        print(note, file=sys.stderr)

    from pipeline_builder import build_pipeline

    pipeline = replace(pipeline, job_name=job_name)
    job = build_pipeline(str(folder), pipeline)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"content_key": keyed.content, "run_key": keyed.run, "params": keyed.params}
    write_json_atomic(run_dir / KEY_FILE, record)
    print(f"running {job_name} ({pipeline.epochs} epochs) in {run_dir}", file=sys.stderr)
    summary = run_pipeline(job, None, run_dir, job_name=job_name, progress=True)
    return _report(summary, as_json=args.json)


def params_changed(runs_dir: Path, keyed: Keyed, job_name: str) -> str | None:
    """One line when an earlier run in ``runs_dir`` had this content but other parameters (the
    newest such run), naming what differs; None when there is none."""
    found: list[tuple[float, str, dict[str, str]]] = []
    for path in runs_dir.glob(f"*/{KEY_FILE}") if runs_dir.is_dir() else ():
        try:
            record = json.loads(path.read_text())
            if record["content_key"] == keyed.content and record["run_key"] != keyed.run:
                found.append((path.stat().st_mtime, path.parent.name, dict(record["params"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours, or damaged: it names no run
    if not found:
        return None
    _, earlier, params = max(found, key=lambda run: run[:2])  # the newest
    names = sorted(set(params) | set(keyed.params))
    changes = [
        f"{name} {keyed.params.get(name, '-')} (was {params.get(name, '-')})"
        for name in names
        if params.get(name) != keyed.params.get(name)
    ]
    return (
        f"parameters differ from {earlier}, which ran this data: {', '.join(changes)}; "
        f"running it anew as {job_name}"
    )


def _report(summary: RunSummary, *, as_json: bool) -> int:
    """The summary: one clear line for a failure (stderr), then status, accuracy, folder."""
    if summary.error:
        print(summary.error, file=sys.stderr)
    rows = [("status", summary.status)]
    if summary.accuracy is not None:
        rows.append(("test accuracy", f"{summary.accuracy:.4f}"))
    rows += _champion_rows(summary.metrics)
    rows.append(("run folder", summary.run_dir))
    if summary.step:
        rows.append(("step logs", str(Path(summary.run_dir) / summary.step)))
    rows.append(("job name", summary.job_name))
    if summary.duration_s is not None:
        rows.append(("duration", f"{summary.duration_s:.1f} s"))
    rows += _step_rows(summary.steps or {})
    _print_rows(rows)
    if as_json:
        print(json.dumps(summary.to_dict()))
    return 0 if summary.status == "Completed" else EXIT_FAILED


def _step_rows(steps: dict[str, float | None]) -> list[tuple[str, str]]:
    """A ``steps`` row: each step that ran and its seconds ("-" while it still runs)."""
    if not steps:
        return []
    text = ", ".join(f"{n} {'-' if s is None else f'{s:.1f} s'}" for n, s in steps.items())
    return [("steps", text)]


def _champion_rows(metrics: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """A ``champion`` row when score compared the new model with one."""
    metrics = metrics or {}
    champion = metrics.get("champion")
    if not isinstance(champion, dict):
        return []
    name = f"v{champion['version']}" if champion.get("version") else "(no version)"
    if champion.get("accuracy") is None:
        return [("champion", f"{name} not scored: {champion.get('error')}")]
    points = 100 * (metrics["accuracy"] - champion["accuracy"])
    return [("champion", f"{name} {champion['accuracy']:.4f} (new model {points:+.2f} points)")]


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {value}")


def _run_on_backend(args: argparse.Namespace, settings: Settings) -> int:
    from .. import backends

    champion = champion_overrides(args, local=False)
    source, keyed = data_source(args.data, settings, asked_params(args, champion))
    job_name = args.job_name or keys.job_name(keyed.run)
    request = backends.SubmitRequest(
        run_id=keyed.run,
        job_name=job_name,
        data=source,
        data_version=keys.data_version(keyed.content),
        pipeline=settings.pipeline_settings(job_name=job_name, **overrides(args), **champion),
    )
    backend = backends.get_backend(settings)
    submission = backend.submit(request)
    result: dict[str, Any] = {
        "run_id": keyed.run,
        "job_name": submission.job_name,
        "status": submission.status.value,
        "studio_url": submission.studio_url,
        "data_asset": submission.data_asset,
        "already_existed": submission.already_existed,
    }
    rows = [("job name", submission.job_name), ("status", submission.status.value)]
    if submission.already_existed:
        rows.append(("note", "this batch was already submitted; showing that job"))
    if submission.data_asset:
        rows.append(("data asset", submission.data_asset))
    if submission.studio_url:
        rows.append(("studio URL", submission.studio_url))
    _print_rows(rows)
    code = 0
    if args.wait:
        state = _wait(backend, submission.job_name, args.poll_interval)
        result.update(_state_dict(state))
        _print_state(state)
        code = 0 if state.status.value == "Completed" else EXIT_FAILED
    if args.json:
        print(json.dumps(result, default=str))
    return code


def _wait(backend: Backend, job_name: str, interval: float) -> JobState:
    """Poll until the job ends, showing one status line (rewritten in place on a terminal)."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    last_raw = None
    while True:
        try:
            state = backend.job_state(job_name)
        except TransientError as exc:  # the next poll may succeed; the job runs on regardless
            print(f"\n{job_name}: {exc} (retrying)", file=sys.stderr)
        else:
            elapsed = time.monotonic() - started
            line = f"{job_name}  {state.raw_status}  {elapsed:.0f} s"
            if tty:
                print("\r\x1b[K" + line, end="", file=sys.stderr, flush=True)
            elif state.raw_status != last_raw:
                print(line, file=sys.stderr, flush=True)
            last_raw = state.raw_status
            if state.status.terminal:
                if tty:
                    print(file=sys.stderr)
                return state
        time.sleep(interval)


def _state_dict(state: JobState) -> dict[str, Any]:
    metrics = dict(state.metrics) if state.metrics else None
    return {
        "status": state.status.value,
        "raw_status": state.raw_status,
        "accuracy": (metrics or {}).get("accuracy"),
        "metrics": metrics,
        "error": state.error,
        "started_at": state.started_at.isoformat() if state.started_at else None,
        "ended_at": state.ended_at.isoformat() if state.ended_at else None,
    }


def _print_state(state: JobState) -> None:
    rows = [("status", state.status.value)]
    if state.raw_status != state.status.value:
        rows.append(("Azure ML status", state.raw_status))
    accuracy = (state.metrics or {}).get("accuracy")
    if accuracy is not None:
        rows.append(("test accuracy", f"{accuracy:.4f}"))
    rows += _champion_rows(state.metrics)
    if state.error:
        rows.append(("error", state.error))
    _print_rows(rows)


# --- status -------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    backend = args.backend or settings.backend
    target = args.target
    if backend == "local":
        return _local_status(target, settings, as_json=args.json)

    from .. import backends

    job_name = keys.job_name(target) if keys.RUN_KEY.fullmatch(target) else target
    state = backends.get_backend(replace(settings, backend=backend)).job_state(job_name)
    if args.json:
        print(json.dumps({"job_name": job_name, **_state_dict(state)}, default=str))
    else:
        _print_rows([("job name", job_name)])
        _print_state(state)
    return 0


def _local_status(target: str, settings: Settings, *, as_json: bool) -> int:
    from ..local.executor import read_status
    from .demo import DEMO_RUNS

    folders = [settings.local_runs_dir]
    if DEMO_RUNS.resolve() != settings.local_runs_dir.resolve():
        folders.append(DEMO_RUNS)  # where make demo runs: its run ids work here as printed
    names = [target, keys.job_name(target)] if keys.RUN_KEY.fullmatch(target) else [target]
    candidates = [Path(target).expanduser()]
    candidates += [folder / name for folder in folders for name in names]
    for run_dir in candidates:
        status = read_status(run_dir) if run_dir.is_dir() else None
        if status is not None:
            break
    else:
        looked = " and ".join(str(folder) for folder in folders)
        raise NotFoundError(
            f"no local run {target!r} (looked in {looked}); set LOCAL_RUNS_DIR to the folder "
            "that holds it (a run still Queued has no job yet: GET /api/retrain/<run id> gives "
            "its place in the queue)"
        )
    run_dir = run_dir.resolve()
    if run_dir.parent == DEMO_RUNS.resolve() != settings.local_runs_dir.resolve():
        print(f"note: a run of make demo, in {DEMO_RUNS} (LOCAL_RUNS_DIR is elsewhere)",
              file=sys.stderr)  # fmt: skip
    if as_json:
        print(json.dumps({**status, "run_dir": str(run_dir)}))
        return 0
    word = status.get("status", "Unknown")
    if word == "Running" and status.get("step"):
        word += f" (step {status['step']})"
    rows = [("job name", status.get("job_name") or run_dir.name), ("status", word)]
    accuracy = (status.get("metrics") or {}).get("accuracy")
    if accuracy is not None:
        rows.append(("test accuracy", f"{accuracy:.4f}"))
    if status.get("error"):
        rows.append(("error", status["error"]))
    rows.append(("started", status.get("started_at") or "-"))
    if status.get("duration_s") is not None:
        rows.append(("duration", f"{status['duration_s']:.1f} s"))
    steps = status.get("steps") or {}
    rows += _step_rows({name: s.get("duration_s") for name, s in steps.items()})
    rows.append(("run folder", str(run_dir)))
    _print_rows(rows)
    return 0
