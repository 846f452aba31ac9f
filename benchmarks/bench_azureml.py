"""Azure ML backend figures: what one submission costs, in time and on the wire, through the
real SDK against the loopback fake of the service (tests/azureml/fake_azureml.py) with Azurite
as its storage.

    .venv/bin/python benchmarks/bench_azureml.py [--warm 5]

Each scenario runs in a fresh interpreter, as a Function App worker would start:

- registered components (what the backend does): in a new workspace the first submission
  registers the environment and the three components (code uploaded once); a new process in a
  workspace that has them GETs each once; a warm process asks nothing about them;
- anonymous components (the specs submitted as they are, for comparison): every
  new process hashes each component folder, looks its code up, and uploads it when new.

Per submission it prints the HTTP requests the fake saw and their body bytes (sent / received;
headers not counted), and the time. The fake answers in well under a millisecond, so times are
the client's own costs (SDK work, TLS, serialisation); on Azure each request adds its network
round trip (tens of ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKE_DIR = ROOT / "tests" / "azureml"
MARK = "bench-mark/"  # a request the fake answers 404 and records: splits the phases


def child(url: str, ca_file: str, mode: str, warm: int, first: int) -> dict[str, float]:
    """One worker process: submit ``warm + 1`` new batches and a repeat, marking each phase."""
    sys.path[:0] = [str(ROOT), str(FAKE_DIR)]
    from amlhelpers import aml_settings, landing_batch, request_for
    from fake_azureml import FakeCredential

    from retrain.backends import azureml_client

    figures: dict[str, float] = {}
    start = time.perf_counter()
    import azure.ai.ml  # noqa: F401  (what the first use of the backend pays)

    figures["import_s"] = time.perf_counter() - start
    from retrain.backends.azureml import AzureMLBackend

    azureml_client.configure(credential=FakeCredential(), endpoint=url, ca_file=ca_file)
    settings = aml_settings()
    start = time.perf_counter()
    azureml_client.get_client(settings)
    figures["client_s"] = time.perf_counter() - start

    backend = AzureMLBackend(settings)
    submit = backend.submit if mode == "registered" else _anonymous(backend)
    requests = [request_for(landing_batch(f"batch-{first + i}")) for i in range(warm + 1)]
    context = ssl.create_default_context(cafile=ca_file)
    _mark(url, context, "start")
    start = time.perf_counter()
    submit(requests[0])
    figures["first_submit_s"] = time.perf_counter() - start
    _mark(url, context, "first")

    warm_times = []
    for request in requests[1:]:
        start = time.perf_counter()
        submit(request)
        warm_times.append(time.perf_counter() - start)
        _mark(url, context, "warm")
    figures["warm_submit_s"] = statistics.median(warm_times)

    start = time.perf_counter()
    assert backend.submit(requests[0]).already_existed
    figures["repeat_submit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    backend.job_state(requests[0].job_name)
    figures["status_s"] = time.perf_counter() - start
    return figures


def _anonymous(backend: Any) -> Any:
    """The submission as it was with anonymous components: the same steps as the backend's
    (job look-up, data version, create), with the spec-loaded components kept per process."""
    from pipeline_builder import build_pipeline, load_components
    from retrain.backends.azureml import _get_job

    components = load_components()

    def submit(request: Any) -> None:
        client = backend.client
        assert _get_job(client, request.job_name) is None
        data = backend._data_input(client, request)
        job = build_pipeline(data, request.pipeline, components=components)
        client.jobs.create_or_update(job, experiment_name=request.pipeline.experiment_name)

    return submit


def _mark(url: str, context: ssl.SSLContext, label: str) -> None:
    with contextlib.suppress(urllib.error.HTTPError):  # a 404, recorded: all a mark is for
        urllib.request.urlopen(f"{url}{MARK}{label}", context=context, timeout=10)


def run_child(url: str, ca_file: str, mode: str, warm: int, first: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, ca_file, mode, str(warm), str(first)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # the SDK's own storage clients (code uploads) trust the fake's CA through requests
        env={**os.environ, "REQUESTS_CA_BUNDLE": ca_file},
    )
    if out.returncode:
        raise SystemExit(f"{mode} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def wire(requests: list[Any]) -> dict[str, tuple[int, int, int, int]]:
    """Per phase (first, warm): (requests, bytes sent, bytes received, code uploads)."""
    phases: dict[str, list[Any]] = {"first": [], "warm": []}
    current: list[Any] | None = None
    for r in requests:
        if r.path.startswith(f"/{MARK}"):
            label = r.path.removeprefix(f"/{MARK}")
            current = phases["first"] if label == "start" else None
            if label == "first":
                current = phases["warm"]
            continue
        if current is not None:
            current.append(r)
    return {
        phase: (
            len(found),
            sum(r.sent for r in found),
            sum(r.received for r in found),
            sum(1 for r in found if r.path.endswith("/startPendingUpload")),
        )
        for phase, found in phases.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=5, help="warm submissions to time")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, ca_file, mode, warm, first = args.child
        print(json.dumps(child(url, ca_file, mode, int(warm), int(first))))
        return

    sys.path[:0] = [str(ROOT), str(FAKE_DIR)]
    import trustme
    from fake_azureml import FakeAzureML

    from retrain.emulators.azurite import running

    scenarios = {  # mode -> labels of a new workspace, then of a new process after it
        "registered": ("registered, new workspace", "registered, components there"),
        "anonymous": ("anonymous, new workspace", "anonymous, code already there"),
    }
    times: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, tuple[int, int, int, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp) / "azurite") as storage:
        ca = trustme.CA()
        ca_file = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        for n, (mode, labels) in enumerate(scenarios.items()):
            fake = FakeAzureML(storage.connection_string)  # a workspace of its own
            with fake.serve(ca, ca_file):
                for m, label in enumerate(labels):
                    before = len(fake.requests)
                    first = 1000 * n + 100 * m
                    times[label] = run_child(fake.url, ca_file, mode, args.warm, first)
                    counts[label] = wire(fake.requests[before:])

    print("one submission: requests / body bytes sent / received / code uploads")
    print(f"{'':32}{'first in a process':>36}{'warm process':>32}")
    for label, phases in counts.items():
        cells = [f"{c[0]:4} / {c[1]:7,} / {c[2]:7,} / {c[3]}" for c in phases.values()]
        print(f"{label:32}{cells[0]:>36}{cells[1]:>32}")
    print()
    ms = lambda s: f"{s * 1000:7.0f} ms"  # noqa: E731
    labels = list(times)
    print(f"{'time':44}" + "".join(f"{label[:30]:>32}" for label in labels))
    rows = [
        ("import azure.ai.ml", "import_s"),
        ("MLClient creation", "client_s"),
        ("first submission (cold)", "first_submit_s"),
        (f"warm submission, new batch (median of {args.warm})", "warm_submit_s"),
        ("warm repeat submission (job exists)", "repeat_submit_s"),
        ("warm status read", "status_s"),
    ]
    for text, key in rows:
        print(f"{text:44}" + "".join(f"{ms(times[label][key]):>32}" for label in labels))


if __name__ == "__main__":
    main()
