"""Run the shared builder's ``PipelineJob`` on this machine, step by step, with no Azure.

``plan`` reads the job into Steps in dependency order; this module runs each Step's command
with the current interpreter in the component's code folder, records where the run stands in
``status.json`` (``status``) and shows it as it goes (``progress``). Outputs are
folders of the run directory::

    RUN_DIR/status.json                  where the run stands (the LocalBackend reads it)
    RUN_DIR/<node>/<output>/             each node output
    RUN_DIR/<node>/stdout.log            the step's stdout, streamed
    RUN_DIR/<node>/stderr.log            the step's stderr, streamed
    RUN_DIR/events/*.json                RunStatusChanged events, as Azure ML sends them (events)

Nothing here imports azure.ai.ml: the job object arrives already built.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from .events import emit, job_event
from .plan import FromNode, FromPipeline, Literal, Step, plan, render_command
from .progress import StepDisplay
from .status import RunSummary, now, process_alive, read_status, write_json_atomic, write_status

# The executor's public surface; plan, status and summary live in their own modules.
__all__ = [
    "FromNode",
    "FromPipeline",
    "Literal",
    "RunSummary",
    "Step",
    "StepFailed",
    "plan",
    "process_alive",
    "read_status",
    "render_command",
    "run_pipeline",
    "write_json_atomic",
    "write_status",
]

RESULT_OUTPUT = "output_result"  # the pipeline output holding the score step's metrics.json
METRICS_FILE = "metrics.json"


class StepFailed(Exception):
    def __init__(self, step: str, error: str) -> None:
        super().__init__(f"step {step} failed: {error}")
        self.step = step


def run_pipeline(
    job: Any,
    inputs: Mapping[str, Path] | None,
    run_dir: Path,
    *,
    job_name: str | None = None,
    progress: bool = True,
) -> RunSummary:
    """Run every node of ``job`` in dependency order; return how it ended.

    ``inputs`` overrides pipeline inputs by name; the rest take the job's own values (a local
    folder for ``pipeline_input_data``). A step that fails stops the run: the summary and
    status.json name it and its last line of stderr. Problems found before any step runs (a bad
    binding, an input that is not a local folder) raise a ConfigurationError/InvalidRequestError.
    """
    steps = plan(job)
    run_dir = Path(run_dir).resolve()
    job_name = job_name or getattr(job, "name", None) or run_dir.name
    pipeline_inputs = _pipeline_inputs(job, inputs or {})
    run_dir.mkdir(parents=True, exist_ok=True)

    outputs = {s.name: {o: run_dir / s.name / o for o in s.outputs} for s in steps}
    started = now()
    state: dict[str, Any] = {
        "job_name": job_name,
        "status": "Running",
        "step": None,
        "error": None,
        "started_at": started.isoformat(),
        "ended_at": None,
        "duration_s": None,
        "steps": {},
        "metrics": None,
        "outputs": {n: {o: str(p) for o, p in ports.items()} for n, ports in outputs.items()},
        "pid": os.getpid(),
    }
    write_status(run_dir, state)
    experiment = str(getattr(job, "experiment_name", None) or "")
    tags = {str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()}

    def announce(name: str, status: str) -> None:
        emit(run_dir, job_event(name, status, experiment, tags))

    announce(job_name, "Running")
    display = StepDisplay(len(steps), enabled=progress)

    def finish(status: str, error: str | None = None, metrics: dict | None = None) -> RunSummary:
        ended = now()
        running = state["steps"].get(state["step"])
        if running and running["status"] == "Running":  # interrupted or crashed mid-step
            _end_step(running, "Failed", ended)
        state.update(
            status=status,
            error=error,
            metrics=metrics,
            ended_at=ended.isoformat(),
            duration_s=round((ended - started).total_seconds(), 3),
        )
        if status == "Completed":
            state["step"] = None
        write_status(run_dir, state)
        announce(job_name, status)
        return RunSummary.from_status(run_dir, state)

    try:
        with stop_on_signals() as stop:
            for index, step in enumerate(steps, 1):
                state["step"] = step.name
                record = state["steps"][step.name] = {
                    "status": "Running",
                    "started_at": now().isoformat(),
                    "ended_at": None,
                    "duration_s": None,
                }
                write_status(run_dir, state)
                announce(f"{job_name}-{step.name}", "Running")  # a child job, as on Azure ML
                values = _input_values(step, pipeline_inputs, outputs)
                step_dir = run_dir / step.name
                _run_step(step, index, values, outputs[step.name], step_dir, display, stop)
                _end_step(record, "Completed", now())
            metrics = _metrics(steps, outputs)
    except StepFailed as failure:
        return finish("Failed", str(failure))
    except BaseException as exc:  # interrupted, terminated or crashed: never leave "Running"
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            finish("Failed", f"step {state['step']} interrupted")
        else:
            finish("Failed", f"step {state['step']} crashed: {type(exc).__name__}: {exc}")
        raise
    return finish("Completed", metrics=metrics)


def _end_step(record: dict[str, Any], status: str, ended: datetime) -> None:
    """Close a step's entry in status.json: its end time and how long it took."""
    started = datetime.fromisoformat(record["started_at"])
    record.update(
        status=status,
        ended_at=ended.isoformat(),
        duration_s=round((ended - started).total_seconds(), 3),
    )


def _pipeline_inputs(job: Any, overrides: Mapping[str, Path]) -> dict[str, Any]:
    unknown = set(overrides) - set(job.inputs)
    if unknown:
        raise InvalidRequestError(", ".join(sorted(unknown)), "not an input of this pipeline")
    values: dict[str, Any] = {}
    for name, pipeline_input in job.inputs.items():
        data = pipeline_input._data
        value = overrides.get(name, getattr(data, "path", data))
        is_folder = getattr(data, "type", None) in ("uri_folder", "uri_file") or name in overrides
        if is_folder and value is not None:
            path = Path(str(value)).expanduser()
            if ":" in str(value) and not path.exists():
                raise InvalidRequestError(
                    name, f"{value} is not on this machine; the local executor needs a local folder"
                )
            if not path.exists():
                raise InvalidRequestError(name, f"no such file or folder: {path}")
            value = path.resolve()
        values[name] = value
    return values


def _input_values(
    step: Step, pipeline_inputs: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Path]]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, binding in step.inputs.items():
        if isinstance(binding, FromPipeline):
            value = pipeline_inputs.get(binding.name)
        elif isinstance(binding, FromNode):
            value = outputs[binding.node][binding.output]
        else:
            value = binding.value
        if value is not None:
            values[name] = value
    return values


def _run_step(
    step: Step,
    index: int,
    values: Mapping[str, Any],
    outputs: Mapping[str, Path],
    step_dir: Path,
    display: StepDisplay,
    stop: threading.Event,
) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    if step_dir.exists():  # a previous attempt's outputs must not leak into this one
        shutil.rmtree(step_dir)
    for folder in outputs.values():
        folder.mkdir(parents=True)
    argv = render_command(step, values, outputs)
    stdout_log, stderr_log = step_dir / "stdout.log", step_dir / "stderr.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    display.start(index, step.name, stdout_log)
    with stdout_log.open("wb") as out, stderr_log.open("wb") as err:
        try:
            proc = subprocess.Popen(
                argv, cwd=step.code, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )
        except OSError as exc:
            raise StepFailed(step.name, f"cannot start {argv[0]}: {exc}") from None
        try:
            while proc.poll() is None:
                if stop.is_set():
                    raise KeyboardInterrupt
                display.tick(index, step.name, time.monotonic() - started)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.25)
        except BaseException:
            _stop(proc)
            raise
    elapsed = time.monotonic() - started
    display.done(index, step.name, elapsed, ok=proc.returncode == 0)
    if proc.returncode != 0:
        reason = _last_line(stderr_log) or _last_line(stdout_log) or "no output"
        raise StepFailed(step.name, f"{reason} ({_exit(proc.returncode)})")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM (Ctrl-C, a cancel) set the event instead of raising wherever the
    interpreter happens to be: the executor then stops the running step itself. An exception
    raised inside ``Popen()`` would orphan a step that keeps training after the run says Failed.
    Outside the main thread signals cannot be handled; the event then stays clear."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed from C, cannot be restored from Python
                signal.signal(sig, handler)


def _exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(path: Path, tail: int = 4096) -> str:
    """Last non-empty line of a log (progress bars rewrite a line with '\\r': take the last)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
    return lines[-1] if lines else ""


def _metrics(steps: list[Step], outputs: Mapping[str, Mapping[str, Path]]) -> dict[str, Any]:
    """The score step's metrics.json, found through the pipeline output ``output_result``
    (or, failing that, any output of the last step)."""
    candidates = [
        (s.name, outputs[s.name][o])
        for s in steps
        for o, published in s.pipeline_outputs.items()
        if published == RESULT_OUTPUT
    ] or [(steps[-1].name, folder) for folder in outputs[steps[-1].name].values()]
    for node, folder in candidates:
        path = folder / METRICS_FILE
        if path.is_file():
            try:
                metrics = json.loads(path.read_text())
            except ValueError as exc:
                raise StepFailed(node, f"{path} is not valid JSON: {exc}") from None
            if not isinstance(metrics, dict) or "accuracy" not in metrics:
                raise StepFailed(node, f"{path} has no accuracy")
            return metrics
    node = candidates[0][0] if candidates else steps[-1].name
    raise StepFailed(node, f"wrote no {METRICS_FILE}")
