"""``python -m retrain serve``: score images with the local registry's champion, on 127.0.0.1.

It follows promotions: a new champion is loaded beside the served one and swapped in without a
failed request (``retrain.serving.server``). Runs in the foreground; Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..settings import Settings
from .flags import positive_float

DEFAULT_PORT = 8080


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected 0-65535 (0: any free port), got {value}")
    return value


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="score images with the champion on 127.0.0.1 (POST /score), following promotions",
        description="Serve the champion of the local registry (LOCAL_MODELS_DIR, MODEL_NAME) "
        "on 127.0.0.1: POST /score, GET /healthz, GET /. A new champion is swapped in without "
        "a failed request. Ctrl-C stops it. See docs/serving.md.",
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port, printed)",
    )
    serve.add_argument(
        "--poll",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="seconds between checks of the registry's champion tag (default 2)",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.local import LocalServing
    from ..serving.payload import Limits

    settings = Settings.from_env()
    _log_to_stderr()
    serving = LocalServing(
        settings.local_models_dir,
        settings.model_name,
        port=args.port,
        poll_seconds=args.poll,
        limits=Limits(settings.serve_max_images),
    )
    print(f"{serving.banner()}; Ctrl-C stops", file=sys.stderr, flush=True)
    serving.serve_until_signal()
    return 0


def _log_to_stderr() -> None:
    """The server's log lines (swaps, refusals, stop) on stderr, one per line."""
    logger = logging.getLogger("retrain.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
