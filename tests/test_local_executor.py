"""The local executor runs the builder's PipelineJob: order, bindings, logs, status.json.

Two kinds of pipeline: tiny command components written here (a diamond of plain-Python steps,
to pin down ordering, defaults, optional arguments and failure handling in a fraction of a
second), and the real pipeline from ``pipeline_builder``: planned, and run on broken batches.
The real pipeline's one training run, end to end to > 90% test accuracy, is in test_cli.py
(``run --json``), so the suite trains once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.ai.ml import Input, load_component
from azure.ai.ml.dsl import pipeline

from pipeline_builder import PipelineSettings, build_pipeline
from retrain.data.fashion_mnist import write_batch
from retrain.errors import InvalidRequestError
from retrain.local.events import RUN_STATUS_CHANGED, pending
from retrain.local.executor import (
    FromNode,
    FromPipeline,
    Literal,
    plan,
    read_status,
    render_command,
    run_pipeline,
)

# --- the real pipeline: plan and bindings (no step runs) ----------------------------------------


@pytest.fixture(scope="module")
def real_job():
    return build_pipeline("/data/batch", PipelineSettings(epochs=4, seed=9))


def test_plan_orders_real_pipeline_by_its_bindings(real_job):
    steps = plan(real_job)
    assert [s.name for s in steps] == ["prepare_data_node", "train_node", "score_node"]
    prepare, train, score = steps
    assert prepare.inputs == {"input_data": FromPipeline("pipeline_input_data")}
    assert train.inputs["input_data"] == FromNode("prepare_data_node", "training_data")
    assert train.inputs["epochs"] == Literal(4)
    assert train.inputs["seed"] == Literal(9)
    assert score.inputs == {
        "input_data": FromNode("prepare_data_node", "test_data"),
        "input_model": FromNode("train_node", "output_model"),
    }
    assert score.pipeline_outputs == {"output_result": "output_result"}
    assert prepare.outputs == ("training_data", "test_data")
    assert train.code.name == "train" and (train.code / "train.yml").is_file()


def test_plan_does_not_depend_on_the_order_nodes_are_listed(real_job):
    shuffled = SimpleNamespace(jobs=dict(reversed(real_job.jobs.items())), inputs=real_job.inputs)
    assert [s.name for s in plan(shuffled)] == ["prepare_data_node", "train_node", "score_node"]


def test_render_command_binds_folders_and_this_interpreter(real_job, tmp_path):
    train = plan(real_job)[1]
    data = tmp_path / "with space" / "training_data"
    argv = render_command(
        train,
        {"input_data": data, "epochs": 4, "batch_size": 256, "learning_rate": 0.05, "seed": 9},
        {"output_model": tmp_path / "model"},
    )
    assert argv[0] == sys.executable
    assert argv[1] == "train.py"
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags == {
        "--input_data": str(data),
        "--epochs": "4",
        "--batch_size": "256",
        "--learning_rate": "0.05",
        "--seed": "9",
        "--output_model": str(tmp_path / "model"),
    }


def test_a_champion_folder_is_a_literal_of_score_and_renders_its_optional_blocks(tmp_path):
    champion = tmp_path / "champion model"
    settings = PipelineSettings(champion_model=str(champion), champion_version="12")
    score = plan(build_pipeline("/data/batch", settings))[2]
    assert score.inputs["champion_model"] == Literal(str(champion))
    assert score.inputs["champion_version"] == Literal("12")
    ports = {"input_data": tmp_path / "test", "input_model": tmp_path / "model"}
    outputs = {"output_result": tmp_path / "out"}
    argv = render_command(score, {**ports, "champion_model": champion}, outputs)
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags["--champion_model"] == str(champion)  # one argument, though it has a space
    assert "--champion_version" not in flags  # its block is dropped when it has no value
    argv = render_command(
        score, {**ports, "champion_model": champion, "champion_version": 12}, outputs
    )
    assert dict(zip(argv[2::2], argv[3::2], strict=True))["--champion_version"] == "12"


def test_without_a_champion_score_renders_no_champion_flags(real_job, tmp_path):
    score = plan(real_job)[2]
    ports = {"input_data": tmp_path / "test", "input_model": tmp_path / "model"}
    argv = render_command(score, ports, {"output_result": tmp_path / "out"})
    assert argv[1:] == [
        "score.py",
        *("--input_data", str(tmp_path / "test"), "--input_model", str(tmp_path / "model")),
        *("--output_result", str(tmp_path / "out")),
    ]


def test_remote_pipeline_input_is_refused_before_anything_runs(tmp_path):
    job = build_pipeline("azureml:fashion-mnist:3")
    with pytest.raises(InvalidRequestError, match="pipeline_input_data: azureml:fashion-mnist:3"):
        run_pipeline(job, None, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- tiny components: a diamond of plain-Python steps -------------------------------------------

TOOL = """
import argparse, json, os, sys
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("action")
p.add_argument("--n", type=int)
p.add_argument("--label", default="none")
p.add_argument("--src", action="append", default=[])
p.add_argument("--out")
a = p.parse_args()
with open(os.environ["TRACE"], "a") as f:
    f.write(a.action + "\\n")
out = Path(a.out)
assert out.is_dir(), "the executor creates output folders"
print("working on", a.action)
if a.action == "gen":
    (out / "value.txt").write_text(f"{a.n} {a.label}")
elif a.action == "double":
    n = int((Path(a.src[0]) / "value.txt").read_text().split()[0])
    (out / "value.txt").write_text(str(2 * n))
elif a.action == "fail":
    print("something on stdout first")
    print("Traceback (most recent call last): ...", file=sys.stderr)
    print("ValueError: the data is cursed", file=sys.stderr)
    sys.exit(3)
elif a.action == "report":
    total = sum(int((Path(s) / "value.txt").read_text()) for s in a.src)
    (out / "metrics.json").write_text(json.dumps({"accuracy": total / 100, "total": total}))
"""

SPEC = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: {name}
version: "1"
code: .
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:1
{body}
"""

GEN = """\
inputs:
  n: {type: integer, default: 3}
  label: {type: string, optional: true}
outputs:
  out: {type: uri_folder}
command: >-
  python tool.py gen --n ${{inputs.n}} $[[--label ${{inputs.label}}]] --out ${{outputs.out}}
"""

DOUBLE = """\
inputs:
  src: {type: uri_folder}
outputs:
  out: {type: uri_folder}
command: python tool.py double --src ${{inputs.src}} --out ${{outputs.out}}
"""

REPORT = """\
inputs:
  a: {type: uri_folder}
  b: {type: uri_folder}
outputs:
  output_result: {type: uri_folder}
command: >-
  python tool.py report --src ${{inputs.a}} --src ${{inputs.b}} --out ${{outputs.output_result}}
"""


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Load the toy components from specs written to tmp_path; steps log their order to TRACE."""
    folder = tmp_path / "components"
    folder.mkdir()
    (folder / "tool.py").write_text(textwrap.dedent(TOOL))
    components = {}
    for name, body in {"gen": GEN, "double": DOUBLE, "fail": DOUBLE, "report": REPORT}.items():
        spec = folder / f"{name}.yml"
        spec.write_text(
            SPEC.format(name=name, body=body.replace("tool.py double", f"tool.py {name}"))
        )
        components[name] = load_component(source=spec)
        assert components[name]._validate().passed
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("TRACE", str(trace))
    return components, trace


def _diamond(components, *, label=None, middle="double"):
    gen, report = components["gen"], components["report"]

    @pipeline(name="diamond")
    def diamond(seed_folder):  # node names are the variable names: first, left, right, scored
        first = gen(label=label) if label else gen()
        left = components[middle](src=first.outputs.out)
        right = components["double"](src=first.outputs.out)
        scored = report(a=left.outputs.out, b=right.outputs.out)
        return {"output_result": scored.outputs.output_result}

    job = diamond(seed_folder=Input(type="uri_folder", path=str(Path.cwd())))
    job.settings.default_compute = "cpu"
    return job


def test_toy_pipeline_runs_in_order_with_defaults_and_records_status(toy, tmp_path):
    components, trace = toy
    run_dir = tmp_path / "run"
    summary = run_pipeline(_diamond(components), None, run_dir, job_name="toy-1", progress=False)

    assert summary.status == "Completed", summary.error
    order = trace.read_text().split()
    assert order[0] == "gen" and order[-1] == "report" and sorted(order[1:3]) == ["double"] * 2
    # component default n=3; the optional --label block was dropped, so the script's default
    assert (run_dir / "first" / "out" / "value.txt").read_text() == "3 none"
    assert summary.metrics == {"accuracy": 0.12, "total": 12}
    assert summary.accuracy == 0.12
    assert summary.job_name == "toy-1"

    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "Completed"
    assert status["job_name"] == "toy-1"
    assert status["step"] is None and status["error"] is None
    assert status["metrics"] == summary.metrics
    assert status["pid"] == os.getpid()
    assert status["duration_s"] >= 0 and status["ended_at"] >= status["started_at"]
    steps = list(status["steps"])  # each node, in the order it ran, with its duration
    assert steps[0] == "first" and steps[-1] == "scored" and sorted(steps[1:3]) == ["left", "right"]
    for step in status["steps"].values():
        assert step["status"] == "Completed"
        assert step["started_at"] <= step["ended_at"] <= status["ended_at"]
        assert 0 <= step["duration_s"] <= status["duration_s"]
    assert summary.steps == {n: s["duration_s"] for n, s in status["steps"].items()}
    folders = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert set(status["outputs"]) == folders - {"events"}
    # RunStatusChanged events, as Azure ML sends them: the job's own, and a child job per step
    events = [json.loads(p.read_text()) for p in pending(tmp_path)]
    assert {e["eventType"] for e in events} == {RUN_STATUS_CHANGED}
    own = [e["data"]["runStatus"] for e in events if e["data"]["runId"] == "toy-1"]
    assert own == ["Running", "Completed"]
    assert len(events) == 2 + len(status["steps"])
    for node, outputs in status["outputs"].items():
        assert (run_dir / node / "stdout.log").read_text().startswith("working on")
        for path in outputs.values():
            assert Path(path).is_dir() and Path(path).parent.parent == run_dir.resolve()
    assert not list(run_dir.glob("*.tmp"))


def test_optional_input_given_a_value_keeps_its_block(toy, tmp_path):
    components, _ = toy
    run_dir = tmp_path / "run"
    summary = run_pipeline(_diamond(components, label="shirts"), None, run_dir, progress=False)
    assert summary.status == "Completed", summary.error
    assert (run_dir / "first" / "out" / "value.txt").read_text() == "3 shirts"


def test_failing_step_stops_the_run_and_names_step_and_error(toy, tmp_path):
    components, trace = toy
    run_dir = tmp_path / "run"
    job = _diamond(components, middle="fail")
    failing = "left"
    summary = run_pipeline(job, None, run_dir, job_name="toy-2", progress=False)

    assert summary.status == "Failed"
    assert summary.step == failing
    assert summary.error == f"step {failing} failed: ValueError: the data is cursed (exit code 3)"
    assert summary.accuracy is None
    assert "report" not in trace.read_text().split()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "Failed"
    assert status["step"] == failing
    assert status["error"] == summary.error
    assert status["metrics"] is None
    assert status["steps"][failing]["status"] == "Failed"
    assert status["steps"][failing]["duration_s"] >= 0
    assert "report" not in status["steps"]
    assert "ValueError" in (run_dir / failing / "stderr.log").read_text()


def test_a_rerun_starts_each_step_from_empty_output_folders(toy, tmp_path):
    components, _ = toy
    run_dir = tmp_path / "run"
    job = _diamond(components)
    assert run_pipeline(job, None, run_dir, progress=False).status == "Completed"
    stale = next(iter(json.loads((run_dir / "status.json").read_text())["outputs"].values()))
    leftover = Path(next(iter(stale.values()))) / "leftover.bin"
    leftover.write_bytes(b"x")
    assert run_pipeline(job, None, run_dir, progress=False).status == "Completed"
    assert not leftover.exists()


def test_status_of_a_run_whose_process_is_gone_reads_failed(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(gone.stdout)
    (tmp_path / "status.json").write_text(json.dumps({"status": "Running", "pid": pid}))
    status = read_status(tmp_path)
    assert status["status"] == "Failed"
    assert str(pid) in status["error"]
    (tmp_path / "status.json").write_text(json.dumps({"status": "Running", "pid": os.getpid()}))
    assert read_status(tmp_path)["status"] == "Running"
    assert read_status(tmp_path / "nothing-here") is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_status_of_a_run_whose_process_is_a_zombie_reads_failed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not reaped until wait()
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.02)
        (tmp_path / "status.json").write_text(json.dumps({"status": "Running", "pid": child.pid}))
        assert read_status(tmp_path)["status"] == "Failed"
    finally:
        child.wait()


# --- the real pipeline (its one full, training run is tests/test_cli.py's local_run) ------------


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    write_batch(folder, n_train=300, n_test=100, seed=1)
    return folder


def test_corrupt_batch_fails_at_prepare_and_runs_nothing_after(batch, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in batch.iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[: len(data) // 3] if "train-labels" in f.name else data)
    job = build_pipeline(str(broken))
    run_dir = tmp_path / "run"
    summary = run_pipeline(job, None, run_dir, progress=False)

    assert summary.status == "Failed"
    assert summary.step == "prepare_data_node"
    assert summary.error.startswith("step prepare_data_node failed: ")
    assert "train-labels-idx1-ubyte.gz" in summary.error
    assert "Traceback" not in summary.error
    assert not (run_dir / "train_node").exists()
    assert not (run_dir / "score_node").exists()
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["step"]) == ("Failed", "prepare_data_node")
    assert status["error"] == summary.error


def test_pipeline_input_can_be_overridden(batch, tmp_path):
    job = build_pipeline("/nowhere/at/all")
    broken = tmp_path / "empty"
    broken.mkdir()
    summary = run_pipeline(job, {"pipeline_input_data": broken}, tmp_path / "run", progress=False)
    assert summary.status == "Failed" and summary.step == "prepare_data_node"
    assert "train-images-idx3-ubyte" in summary.error  # missing in the given folder, named
    with pytest.raises(InvalidRequestError, match="nope"):
        run_pipeline(job, {"nope": broken}, tmp_path / "run", progress=False)
