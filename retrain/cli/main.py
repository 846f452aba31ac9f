"""The command line, ``python -m retrain``: show, run and follow the shared pipeline.

Every command builds its job with ``pipeline_builder`` and runs it through the local executor or
a backend, so what it shows is what it runs. Heavy imports (azure.ai.ml, torch, numpy) happen
inside the commands, so ``--help`` answers at once. A RetrainError prints one ``error: ...`` line
and exits 2; a run that ends Failed exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import keys
from ..errors import RetrainError
from ..settings import BACKENDS, Settings
from .data import asked_params, data_source, folder_keys, local_folder, overrides, run_params
from .flags import non_negative_float, non_negative_int, positive_float, positive_int
from .models import cmd_models
from .pack import add_data_parser
from .run import add_champion_flags, cmd_run, cmd_status
from .serve import add_serve_parser

PROG = "python -m retrain"
EXIT_ERROR = 2  # a RetrainError; a run that ends Failed exits 1 (cli.run)

EXAMPLES = f"""\
examples:
  {PROG} demo                                  the whole flow here, on a generated batch
  {PROG} pipeline show --data ./batch          the job that would be submitted, as YAML
  {PROG} run ./batch --epochs 3                run the pipeline on this machine
  {PROG} run ./batch --backend azureml --wait  submit to Azure ML and follow it
  {PROG} run landing/batch-7 --backend azureml --json
  {PROG} run azureml:fashion-mnist:7 --backend azureml
  {PROG} status fashion-retrain-0123456789abcdef
  {PROG} models                                registered versions and the champion
  {PROG} serve --port 8080                     score images with the champion (POST /score)
  {PROG} data pack ./my-images                 an image folder -> the four IDX files

DATA is a folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
and t10k-labels-idx1-ubyte (each optionally .gz); for Azure ML also a batch of the landing
container ([<landing-container>/]<batch>) or a data asset, azureml:NAME:VERSION.
Settings come from the environment (RETRAIN_BACKEND, EXPERIMENT_NAME, AZUREML_GPU_COMPUTE, ...,
see local.settings.json.example); flags such as --epochs override them for one command.
"""


# --- arguments ----------------------------------------------------------------------------------


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
    group.add_argument("--epochs", type=positive_int, metavar="N", help="training epochs")
    group.add_argument("--batch-size", type=positive_int, metavar="N")
    group.add_argument("--learning-rate", type=positive_float, metavar="LR")
    group.add_argument("--seed", type=non_negative_int, metavar="N")
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
        "--poll-interval",
        type=non_negative_float,
        default=15.0,
        metavar="S",
        help="seconds (default 15)",
    )
    add_champion_flags(run)
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

    models = commands.add_parser(
        "models",
        help="registered model versions and the champion",
        description="The registered versions of MODEL_NAME, newest first, and which one is "
        "champion, from the run ledger (what GET /api/models shows).",
    )
    models.add_argument("--limit", type=positive_int, default=20, help="versions (default 20)")
    models.add_argument("--json", action="store_true", help="print the GET /api/models document")
    models.set_defaults(func=cmd_models)

    add_data_parser(commands)
    add_serve_parser(commands)

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


# --- pipeline show ------------------------------------------------------------------------------


def cmd_pipeline_show(args: argparse.Namespace) -> int:
    """Print the job for DATA. A dry run needs no backend: a data asset is shown as it is even
    with the local backend, with a note that only azureml can run it."""
    from pipeline_builder import build_pipeline

    from ..backends import DataAsset

    settings = Settings.from_env()
    backend = args.backend or settings.backend
    pipeline = settings.pipeline_settings(**overrides(args))
    if backend == "local" and not args.data.startswith("azureml:"):
        folder = local_folder(args.data)  # the local executor reads the folder itself
        keyed, path = folder_keys(folder, run_params(pipeline)), str(folder)
    else:
        source, keyed = data_source(args.data, settings, asked_params(args, {}))
        if isinstance(source, DataAsset):
            path = source.uri
            if backend == "local":
                print(
                    f"note: {path} is a data asset in the Azure ML workspace; the local backend "
                    "runs local folders only, so this job runs with --backend azureml",
                    file=sys.stderr,
                )
        else:  # what the azureml backend registers the folder or batch as, then submits
            path = DataAsset(settings.data_asset_name, keys.data_version(keyed.content)).uri
    job_name = args.job_name or keys.job_name(keyed.run)
    job = build_pipeline(path, replace(pipeline, job_name=job_name))
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


# --- demo ---------------------------------------------------------------------------------------


def cmd_demo(argv: list[str]) -> int:
    """``make demo``: the event-driven flow on this machine (``retrain.cli.demo``)."""
    from . import demo

    return int(demo.main(argv) or 0)
