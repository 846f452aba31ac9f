"""The local executor's plan: a ``PipelineJob``'s nodes as Steps, in the order they must run.

The plan keeps no copy of the steps: it walks ``job.jobs``, reads each node's component (command,
code folder, inputs with defaults, outputs) and its input bindings exactly as the SDK would
serialise them for Azure ML (``${{parent.inputs.X}}``, ``${{parent.jobs.NODE.outputs.Y}}`` or a
literal), and orders the nodes by those bindings. ``render_command`` turns a Step and its values
into the argv the executor runs. Nothing here imports azure.ai.ml: the job arrives built.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

PYTHON_NAMES = ("python", "python3")

_EXPR = re.compile(r"\$\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)  # Azure ML's optional-argument block
_PARENT_INPUT = re.compile(r"parent\.inputs\.(\w+)")
_NODE_OUTPUT = re.compile(r"parent\.jobs\.(\w+)\.outputs\.(\w+)")
_PARENT_OUTPUT = re.compile(r"parent\.outputs\.(\w+)")


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
