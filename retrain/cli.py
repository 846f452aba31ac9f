"""The command line, ``python -m retrain``: show, run and follow the shared pipeline.

Every command builds its job with ``pipeline_builder`` and runs it through the local executor or
a backend, so what it shows is what it runs. Heavy imports (azure.ai.ml, torch, numpy) happen
inside the commands, so ``--help`` answers at once. A RetrainError prints one ``error: ...`` line
and exits 2; a run that ends Failed exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import keys
from .errors import (
    InvalidBatchError,
    InvalidRequestError,
    NotFoundError,
    RetrainError,
    TransientError,
)
from .settings import BACKENDS, Settings

if TYPE_CHECKING:
    from .backends import Backend, DataSource, JobState
    from .local_executor import RunSummary

PROG = "python -m retrain"
EXIT_FAILED, EXIT_ERROR = 1, 2

EXAMPLES = f"""\
examples:
  {PROG} demo                                  the whole flow here, on a generated batch
  {PROG} pipeline show --data ./batch          the job that would be submitted, as YAML
  {PROG} run ./batch --epochs 3                run the pipeline on this machine
  {PROG} run ./batch --backend azureml --wait  submit to Azure ML and follow it
  {PROG} run landing/batch-7 --backend azureml --json
  {PROG} run azureml:fashion-mnist:7 --backend azureml
  {PROG} status fashion-retrain-0123456789abcdef

DATA is a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
and t10k-labels-idx1-ubyte (each optionally .gz); for Azure ML also a batch of the landing
container ([<landing-container>/]<batch>) or a data asset, azureml:NAME:VERSION.
Settings come from the environment (RETRAIN_BACKEND, EXPERIMENT_NAME, AZUREML_GPU_COMPUTE, ...,
see local.settings.json.example); flags such as --epochs override them for one command.
"""


# --- arguments ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Retrain the Fashion-MNIST classifier: on this machine or on Azure ML.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pipeline_flags = argparse.ArgumentParser(add_help=False)
    group = pipeline_flags.add_argument_group("pipeline settings (override the app settings)")
    group.add_argument("--epochs", type=_positive_int, metavar="N", help="training epochs")
    group.add_argument("--batch-size", type=_positive_int, metavar="N")
    group.add_argument("--learning-rate", type=_positive_float, metavar="LR")
    group.add_argument("--seed", type=_non_negative_int, metavar="N")
    group.add_argument("--experiment", dest="experiment_name", metavar="NAME")
    group.add_argument("--cpu-compute", metavar="NAME", help='CPU cluster, or "serverless"')
    group.add_argument("--gpu-compute", metavar="NAME", help='GPU cluster, or "serverless"')
    group.add_argument("--job-name", metavar="NAME", help="default: derived from DATA's content")

    pipeline = commands.add_parser("pipeline", help="inspect the pipeline job")
    actions = pipeline.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        parents=[pipeline_flags],
        help="print the job that would be submitted for DATA, as YAML (dry run)",
        description="Print, as YAML, the pipeline job that would be submitted for DATA. "
        "Nothing is submitted and no network call is made.",
    )
    show.add_argument(
        "--data", required=True, metavar="DATA", help="folder, landing batch or azureml:NAME:VER"
    )
    show.add_argument(
        "--backend",
        choices=BACKENDS,
        help="where it would run (default: $RETRAIN_BACKEND, else local); azureml shows the "
        "data asset version a folder or landing batch is registered as",
    )
    show.set_defaults(func=cmd_pipeline_show)

    run = commands.add_parser(
        "run",
        parents=[pipeline_flags],
        help="run the pipeline on DATA, here or on Azure ML",
        description="Run the pipeline on DATA. With the local backend it runs here, in the "
        "foreground, with a live status line, and ends with a summary (status, test accuracy, "
        "run folder). With azureml it submits the job and prints its name and studio URL.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "data",
        metavar="DATA",
        help="folder of the four files; for azureml also a landing batch or azureml:NAME:VER",
    )
    run.add_argument("--backend", choices=BACKENDS, help="default: $RETRAIN_BACKEND, else local")
    run.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    local = run.add_argument_group("local backend")
    local.add_argument(
        "--run-dir", type=Path, metavar="DIR", help="default: $LOCAL_RUNS_DIR/<job name>"
    )
    local.add_argument(
        "--force", action="store_true", help="run again even if this run already completed"
    )
    remote = run.add_argument_group("azureml backend")
    remote.add_argument("--wait", action="store_true", help="follow the job until it ends")
    remote.add_argument(
        "--poll-interval", type=float, default=15.0, metavar="S", help="seconds (default 15)"
    )
    run.set_defaults(func=cmd_run)

    status = commands.add_parser(
        "status",
        help="show where a run stands",
        description="Show where a run stands: a local run folder, job name or run key, or an "
        "Azure ML job name or run key.",
    )
    status.add_argument("target", metavar="RUN_OR_JOB", help="job name, run key or run folder")
    status.add_argument("--backend", choices=BACKENDS, help="default: $RETRAIN_BACKEND")
    status.add_argument("--json", action="store_true", help="print the status as one JSON line")
    status.set_defaults(func=cmd_status)

    commands.add_parser(
        "demo",
        help="the event-driven flow here: Azurite, a generated batch, the blob and timer "
        "functions, the pipeline run locally (make demo)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 run failed, 2 error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # azure.ai.ml announces its experimental classes on import: noise for a command line.
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    try:
        if argv[:1] == ["demo"]:  # its own options, parsed by the demo itself
            return cmd_demo(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except RetrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("epochs", "batch_size", "learning_rate", "seed", "experiment_name")
    names += ("cpu_compute", "gpu_compute")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


# --- DATA ---------------------------------------------------------------------------------------


def local_folder(data: str) -> Path:
    """DATA as an existing folder, or a one-line error."""
    path = Path(data).expanduser()
    if not path.exists():
        raise InvalidRequestError("DATA", f"no such folder: {data}")
    if not path.is_dir():
        raise InvalidRequestError("DATA", f"{data} is a file; expected a folder of the four files")
    return path.resolve()


def folder_key(folder: Path) -> str:
    """Run key of a local batch: its absolute path and the sha256 of each of its IDX files."""
    from .batches import FILE_NAMES, base_name

    files = [p for p in sorted(folder.iterdir()) if p.is_file() and base_name(p.name)]
    if not files:
        raise InvalidBatchError(
            str(folder), f"holds none of the Fashion-MNIST files ({', '.join(FILE_NAMES)})"
        )
    return keys.run_key(str(folder), [(p.name, _sha256(p)) for p in files])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_source(data: str, settings: Settings) -> tuple[DataSource, str]:
    """DATA as a backend data source and its run key: ``azureml:NAME:VERSION``, a local folder,
    or a batch in the landing container (``[<landing-container>/]<batch>``)."""
    from .backends import DataAsset, LocalFolder
    from .decisions import parse_data

    if data.startswith("azureml:") and isinstance(
        asset := parse_data(data, settings.landing_container), DataAsset
    ):
        return asset, keys.run_key(asset.uri, [])
    if Path(data).expanduser().exists() or data.startswith(("/", ".", "~")):
        folder = local_folder(data)
        return LocalFolder(folder), folder_key(folder)
    return landing_batch(data, settings)


def landing_batch(data: str, settings: Settings) -> tuple[DataSource, str]:
    """A complete, valid batch of the landing container, keyed on its blobs' ETags, exactly as
    the blob trigger keys it (so the CLI and the trigger agree on the run)."""
    from .backends import BlobRef, LandingBatch
    from .decisions import BatchData, Wait, decide_batch, parse_data
    from .storage import BlobStore
    from .validation import validate_batch

    parsed = parse_data(data, settings.landing_container)
    if not isinstance(parsed, BatchData):  # pragma: no cover - assets are handled above
        raise InvalidRequestError("DATA", f"not a landing batch: {data}")
    container = settings.landing_container
    store = BlobStore(settings)
    try:
        listing = store.list(container, f"{parsed.name}/")
    except TransientError as exc:
        raise TransientError(
            f"DATA: {data} is no local folder, and reading it as a landing batch failed: {exc}"
        ) from None
    decision = decide_batch(container, parsed.name, listing)
    if isinstance(decision, Wait):
        raise InvalidBatchError(
            decision.source,
            f"no such folder here, and as a landing batch it lacks {', '.join(decision.missing)}",
        )
    batch = decision.batch
    validate_batch(store, batch)
    blobs = tuple(BlobRef(b.name, b.url, b.etag) for b in batch.files.values())
    return LandingBatch(container, batch.name, blobs), batch.key


# --- pipeline show ------------------------------------------------------------------------------


def cmd_pipeline_show(args: argparse.Namespace) -> int:
    from pipeline_builder import build_pipeline

    from .backends import DataAsset

    settings = Settings.from_env()
    if (args.backend or settings.backend) == "local":
        folder = local_folder(args.data)
        key, path = folder_key(folder), str(folder)  # the local executor reads the folder itself
    else:
        source, key = data_source(args.data, settings)
        if isinstance(source, DataAsset):
            path = source.uri
        else:  # what the azureml backend registers the folder or batch as, then submits
            path = DataAsset(settings.data_asset_name, keys.data_version(key)).uri
    job_name = args.job_name or keys.job_name(key)
    job = build_pipeline(path, settings.pipeline_settings(job_name=job_name, **_overrides(args)))
    print(pipeline_yaml(job), end="")
    return 0


def pipeline_yaml(job: Any) -> str:
    """The job as YAML, in the shape ``az ml job create -f`` takes.

    The SDK's own dump writes a pipeline input's local path as ``azureml:/path``, which reads as
    an asset id; write the path itself, as the job holds it.
    """
    import yaml

    document = job._to_dict()
    for name, pipeline_input in job.inputs.items():
        path = getattr(pipeline_input._data, "path", None)
        entry = document.get("inputs", {}).get(name)
        if path is not None and isinstance(entry, dict):
            entry["path"] = str(path)
    return yaml.safe_dump(document, sort_keys=False, width=100)


# --- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    backend = args.backend or settings.backend
    if backend == "local":
        return _run_local(args, settings)
    return _run_on_backend(args, replace(settings, backend=backend))


def _run_local(args: argparse.Namespace, settings: Settings) -> int:
    from .local_executor import RunSummary, read_status, run_pipeline

    folder = local_folder(args.data)
    job_name = args.job_name or keys.job_name(folder_key(folder))
    run_dir = (args.run_dir or settings.local_runs_dir / job_name).resolve()
    prior = None if args.force else read_status(run_dir)
    if prior and prior.get("status") == "Completed":
        print(
            f"{job_name} already completed in {run_dir}; its summary follows "
            "(--force runs it again)",
            file=sys.stderr,
        )
        return _report(RunSummary.from_status(run_dir, prior), as_json=args.json)
    if prior and prior.get("status") == "Running" and args.run_dir is None:
        raise InvalidRequestError(
            "DATA", f"{job_name} is already running (pid {prior.get('pid')}) in {run_dir}"
        )

    from pipeline_builder import build_pipeline

    pipeline = settings.pipeline_settings(job_name=job_name, **_overrides(args))
    job = build_pipeline(str(folder), pipeline)
    print(f"running {job_name} ({pipeline.epochs} epochs) in {run_dir}", file=sys.stderr)
    summary = run_pipeline(job, None, run_dir, job_name=job_name, progress=True)
    return _report(summary, as_json=args.json)


def _report(summary: RunSummary, *, as_json: bool) -> int:
    """The summary: one clear line for a failure (stderr), then status, accuracy, folder."""
    if summary.error:
        print(summary.error, file=sys.stderr)
    rows = [("status", summary.status)]
    if summary.accuracy is not None:
        rows.append(("test accuracy", f"{summary.accuracy:.4f}"))
    rows.append(("run folder", summary.run_dir))
    if summary.step:
        rows.append(("step logs", str(Path(summary.run_dir) / summary.step)))
    rows.append(("job name", summary.job_name))
    if summary.duration_s is not None:
        rows.append(("duration", f"{summary.duration_s:.1f} s"))
    _print_rows(rows)
    if as_json:
        print(json.dumps(summary.to_dict()))
    return 0 if summary.status == "Completed" else EXIT_FAILED


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {value}")


def _run_on_backend(args: argparse.Namespace, settings: Settings) -> int:
    from . import backends

    source, key = data_source(args.data, settings)
    job_name = args.job_name or keys.job_name(key)
    request = backends.SubmitRequest(
        run_id=key,
        job_name=job_name,
        data=source,
        data_version=keys.data_version(key),
        pipeline=settings.pipeline_settings(job_name=job_name, **_overrides(args)),
    )
    backend = backends.get_backend(settings)
    submission = backend.submit(request)
    result: dict[str, Any] = {
        "run_id": key,
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

    from . import backends

    job_name = keys.job_name(target) if keys.RUN_KEY.fullmatch(target) else target
    state = backends.get_backend(replace(settings, backend=backend)).job_state(job_name)
    if args.json:
        print(json.dumps({"job_name": job_name, **_state_dict(state)}, default=str))
    else:
        _print_rows([("job name", job_name)])
        _print_state(state)
    return 0


def _local_status(target: str, settings: Settings, *, as_json: bool) -> int:
    from .local_executor import read_status

    candidates = [Path(target).expanduser(), settings.local_runs_dir / target]
    if keys.RUN_KEY.fullmatch(target):
        candidates.append(settings.local_runs_dir / keys.job_name(target))
    for run_dir in candidates:
        status = read_status(run_dir) if run_dir.is_dir() else None
        if status is not None:
            break
    else:
        raise NotFoundError(f"no local run {target!r} (looked in {settings.local_runs_dir})")
    run_dir = run_dir.resolve()
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
    rows.append(("run folder", str(run_dir)))
    _print_rows(rows)
    return 0


# --- demo ---------------------------------------------------------------------------------------


def cmd_demo(argv: list[str]) -> int:
    """``make demo``: the event-driven flow on this machine (``retrain.demo``)."""
    from . import demo

    return int(demo.main(argv) or 0)
