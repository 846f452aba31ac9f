"""Run the shared builder's ``PipelineJob`` on this machine, step by step, with no Azure.

The executor keeps no copy of the steps: it walks ``job.jobs``, reads each node's component
(command, code folder, inputs with defaults, outputs) and its input bindings exactly as the SDK
would serialise them for Azure ML (``${{parent.inputs.X}}``, ``${{parent.jobs.NODE.outputs.Y}}``
or a literal), orders the nodes by those bindings, and runs each command with the current
interpreter in the component's code folder. Outputs are folders of the run directory::

    RUN_DIR/status.json                  where the run stands (the LocalBackend reads it)
    RUN_DIR/<node>/<output>/             each node output
    RUN_DIR/<node>/stdout.log            the step's stdout, streamed
    RUN_DIR/<node>/stderr.log            the step's stderr, streamed

``status.json`` is replaced atomically at every change; see ``write_status`` for its fields.
Nothing here imports azure.ai.ml: the job object arrives already built.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigurationError, InvalidRequestError

RESULT_OUTPUT = "output_result"  # the pipeline output holding the score step's metrics.json
METRICS_FILE = "metrics.json"
PYTHON_NAMES = ("python", "python3")

_EXPR = re.compile(r"\$\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)  # Azure ML's optional-argument block
_PARENT_INPUT = re.compile(r"parent\.inputs\.(\w+)")
_NODE_OUTPUT = re.compile(r"parent\.jobs\.(\w+)\.outputs\.(\w+)")
_PARENT_OUTPUT = re.compile(r"parent\.outputs\.(\w+)")


# --- the plan: what the job says, in the order it must run --------------------------------------


@dataclass(frozen=True)
class FromPipeline:
    """A node input bound to a pipeline input: ``${{parent.inputs.NAME}}``."""

    name: str


@dataclass(frozen=True)
class FromNode:
    """A node input bound to another node's output: ``${{parent.jobs.NODE.outputs.OUTPUT}}``."""

    node: str
    output: str


@dataclass(frozen=True)
class Literal:
    """A node input given a value (a parameter, or a path set on the node itself)."""

    value: Any


Binding = FromPipeline | FromNode | Literal


@dataclass(frozen=True)
class Step:
    """One node, resolved: its command template and where its inputs come from."""

    name: str
    command: str
    code: Path
    inputs: Mapping[str, Binding]  # unbound optional inputs are absent
    outputs: tuple[str, ...]
    pipeline_outputs: Mapping[str, str]  # node output -> pipeline output it is published as

    @property
    def needs(self) -> set[str]:
        return {b.node for b in self.inputs.values() if isinstance(b, FromNode)}


def plan(job: Any) -> list[Step]:
    """The job's nodes as Steps, in dependency order (stable: ties keep the job's order)."""
    steps = {name: _step(name, node) for name, node in job.jobs.items()}
    for step in steps.values():
        for input_name, binding in step.inputs.items():
            if isinstance(binding, FromNode) and (
                binding.node not in steps or binding.output not in steps[binding.node].outputs
            ):
                raise ConfigurationError(
                    f"{step.name}.inputs.{input_name}: bound to unknown output "
                    f"{binding.node}.outputs.{binding.output}"
                )
            if isinstance(binding, FromPipeline) and binding.name not in job.inputs:
                raise ConfigurationError(
                    f"{step.name}.inputs.{input_name}: bound to unknown pipeline input "
                    f"{binding.name}"
                )
    ordered: list[Step] = []
    done: set[str] = set()
    pending = list(steps.values())
    while pending:
        ready = [s for s in pending if s.needs <= done]
        if not ready:
            cycle = ", ".join(s.name for s in pending)
            raise ConfigurationError(f"pipeline nodes depend on each other in a cycle: {cycle}")
        for s in ready:
            ordered.append(s)
            done.add(s.name)
        pending = [s for s in pending if s.name not in done]
    return ordered


def _step(name: str, node: Any) -> Step:
    component = node.component
    if isinstance(component, str) or not getattr(component, "command", None):
        raise ConfigurationError(
            f"{name}: the local executor runs command components given as specs, got {component!r}"
        )
    inputs: dict[str, Binding] = {}
    for input_name, spec in (component.inputs or {}).items():
        node_input = node.inputs.get(input_name) if node.inputs else None
        binding = _binding(node_input) if node_input is not None else None
        if binding is None and getattr(spec, "default", None) is not None:
            binding = Literal(spec.default)
        if binding is not None:
            inputs[input_name] = binding
    pipeline_outputs = {}
    for output_name in node.outputs or {}:
        target = _expression(_output_path(node.outputs[output_name]))
        if target and (m := _PARENT_OUTPUT.fullmatch(target)):
            pipeline_outputs[output_name] = m.group(1)
    return Step(
        name=name,
        command=str(component.command),
        code=_code_folder(name, component),
        inputs=inputs,
        outputs=tuple(component.outputs or ()),
        pipeline_outputs=pipeline_outputs,
    )


def _binding(node_input: Any) -> Binding | None:
    """Where a node input comes from, read through the SDK's own job serialisation."""
    data = node_input._to_job_input()  # Input(path="${{...}}"), a literal, or None if unset
    if data is None:
        return None
    path = getattr(data, "path", data)
    if expression := _expression(path):
        if m := _PARENT_INPUT.fullmatch(expression):
            return FromPipeline(m.group(1))
        if m := _NODE_OUTPUT.fullmatch(expression):
            return FromNode(m.group(1), m.group(2))
        raise ConfigurationError(f"unsupported input binding {path!r}")
    return Literal(path)


def _output_path(node_output: Any) -> Any:
    data = node_output._to_job_output()
    return getattr(data, "path", None)


def _expression(value: Any) -> str | None:
    """``parent.inputs.x`` for the string ``${{parent.inputs.x}}``; None for anything else."""
    if isinstance(value, str) and (m := _EXPR.fullmatch(value.strip())):
        return m.group(1)
    return None


def _code_folder(name: str, component: Any) -> Path:
    code = str(component.code or ".")
    if ":" in code and not Path(code).exists():  # azureml:..., https://...
        raise ConfigurationError(f"{name}: component code {code!r} is not a local folder")
    base = Path(getattr(component, "base_path", None) or Path.cwd())
    folder = (base / code).resolve()
    if not folder.is_dir():
        raise ConfigurationError(f"{name}: component code folder {folder} does not exist")
    return folder


def render_command(step: Step, values: Mapping[str, Any], outputs: Mapping[str, Path]) -> list[str]:
    """The step's argv: bindings substituted (shell-quoted), optional blocks kept only when all
    their inputs have values, and a leading ``python`` replaced by this interpreter."""

    def substitute(match: re.Match[str]) -> str:
        kind, _, port = match.group(1).partition(".")
        if kind == "inputs" and port in values:
            return shlex.quote(_text(values[port]))
        if kind == "outputs" and port in outputs:
            return shlex.quote(str(outputs[port]))
        raise _Unbound(match.group(0))

    def optional(match: re.Match[str]) -> str:
        try:
            return _EXPR.sub(substitute, match.group(1))
        except _Unbound:
            return ""

    try:
        command = _EXPR.sub(substitute, _OPTIONAL.sub(optional, step.command))
    except _Unbound as unbound:
        raise ConfigurationError(
            f"{step.name}: command needs {unbound}, which has no value"
        ) from None
    argv = shlex.split(command)
    if argv and argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable
    return argv


class _Unbound(Exception):
    pass


def _text(value: Any) -> str:
    return str(value.path if hasattr(value, "path") else value)


# --- status.json: the contract with the background LocalBackend -------------------------------


def _now() -> datetime:
    return datetime.now(timezone.utc)


def write_status(run_dir: Path, status: Mapping[str, Any]) -> None:
    """Replace ``RUN_DIR/status.json`` atomically, so a reader never sees half a file.

    Fields: job_name, status (Running | Completed | Failed), step (node running, or the one that
    failed; null when done), error, started_at / ended_at (ISO 8601 UTC), duration_s, metrics
    (the score step's metrics.json once Completed, with "accuracy"), outputs ({node: {output:
    path}}), pid (the executor's process).
    """
    write_json_atomic(run_dir / "status.json", status)


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to a temporary name beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """``status.json`` of a run folder, or None if there is none.

    A run that says Running but whose process is gone (killed, machine restarted) is reported as
    Failed, so no reader waits on it forever.
    """
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{run_dir}/status.json: unreadable ({exc})") from None
    pid = status.get("pid")
    if status.get("status") == "Running" and isinstance(pid, int) and not process_alive(pid):
        status.update(status="Failed", error=f"the run's process (pid {pid}) is gone")
    return status


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): kill(0) is all we know
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


# --- running ------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """How a local run ended: what the command line prints and ``--json`` serialises."""

    status: str  # Completed | Failed
    accuracy: float | None
    run_dir: str
    job_name: str
    error: str | None = None
    duration_s: float | None = None
    metrics: dict[str, Any] | None = None
    step: str | None = None  # the step that failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_status(cls, run_dir: Path, status: Mapping[str, Any]) -> RunSummary:
        metrics = status.get("metrics")
        return cls(
            status=status.get("status", "Unknown"),
            accuracy=(metrics or {}).get("accuracy"),
            run_dir=str(run_dir),
            job_name=status.get("job_name") or Path(run_dir).name,
            error=status.get("error"),
            duration_s=status.get("duration_s"),
            metrics=metrics,
            step=status.get("step") if status.get("status") == "Failed" else None,
        )


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
    started = _now()
    state: dict[str, Any] = {
        "job_name": job_name,
        "status": "Running",
        "step": None,
        "error": None,
        "started_at": started.isoformat(),
        "ended_at": None,
        "duration_s": None,
        "metrics": None,
        "outputs": {n: {o: str(p) for o, p in ports.items()} for n, ports in outputs.items()},
        "pid": os.getpid(),
    }
    write_status(run_dir, state)
    display = _Progress(len(steps), enabled=progress)

    def finish(status: str, error: str | None = None, metrics: dict | None = None) -> RunSummary:
        ended = _now()
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
        return RunSummary.from_status(run_dir, state)

    try:
        with stop_on_signals() as stop:
            for index, step in enumerate(steps, 1):
                state["step"] = step.name
                write_status(run_dir, state)
                values = _input_values(step, pipeline_inputs, outputs)
                step_dir = run_dir / step.name
                _run_step(step, index, values, outputs[step.name], step_dir, display, stop)
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
    display: _Progress,
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
    display.start(index, step.name)
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
                display.tick(index, step.name, time.monotonic() - started, _last_line(stdout_log))
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


# --- the live status line -----------------------------------------------------------------------


@dataclass
class _Progress:
    """``[2/3] train_node  12.4 s  <last log line>`` rewritten in place on a terminal; plain
    start/end lines otherwise (logs, CI). Written to stderr so stdout stays for results."""

    total: int
    enabled: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.tty = self.enabled and self.stream.isatty()
        self._last = 0.0

    def start(self, index: int, name: str) -> None:
        if self.enabled and not self.tty:
            self._print(f"[{index}/{self.total}] {name} started")

    def tick(self, index: int, name: str, elapsed: float, detail: str) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.2:
            return
        self._last = now
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = f"[{index}/{self.total}] {name}  {elapsed:5.1f} s  {detail}"
        self.stream.write("\r\x1b[K" + line[:width])
        self.stream.flush()

    def done(self, index: int, name: str, elapsed: float, *, ok: bool) -> None:
        if not self.enabled:
            return
        word = "done" if ok else "FAILED"
        if self.tty:
            self.stream.write("\r\x1b[K")
        self._print(f"[{index}/{self.total}] {name} {word} in {elapsed:.1f} s")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
