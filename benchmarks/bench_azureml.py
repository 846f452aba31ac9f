"""Azure ML backend figures: cold and warm submissions through the real SDK, against the
loopback fake of the service (tests/azureml/fake_azureml.py) with Azurite as its storage.

    .venv/bin/python benchmarks/bench_azureml.py [--warm 5]

Each scenario runs in a fresh interpreter, as a Function App worker would start:

- cold, new workspace: ``import azure.ai.ml``, MLClient creation, and the first submission
  (load the three component specs, upload their code, register environment and components,
  register the data version, create the job);
- cold, code already in the workspace: the same in a new process, where the SDK finds each
  component's code by its content hash and uploads nothing;
- warm: further submissions of new batches in the same process (data version + job only), a
  repeat submission of an existing batch (one GET), and a status read.

The fake answers in well under a millisecond, so these are the client's own costs (SDK work,
TLS, serialisation); on Azure each request adds its network round trip (tens of ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_DIR = ROOT / "tests" / "azureml"


def child(url: str, ca_file: str, warm: int, first_batch: int) -> dict[str, float | int]:
    """One worker process: measure its phases against the fake at ``url``."""
    sys.path[:0] = [str(ROOT), str(FAKE_DIR)]
    from amlhelpers import aml_settings, landing_batch, request_for
    from fake_azureml import FakeCredential

    from retrain.backends import azureml_client

    figures: dict[str, float | int] = {}
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
    requests = [request_for(landing_batch(f"batch-{first_batch + i}")) for i in range(warm + 1)]
    start = time.perf_counter()
    backend.submit(requests[0])
    figures["first_submit_s"] = time.perf_counter() - start

    warm_times = []
    for request in requests[1:]:
        start = time.perf_counter()
        backend.submit(request)
        warm_times.append(time.perf_counter() - start)
    figures["warm_submit_s"] = statistics.median(warm_times)

    start = time.perf_counter()
    again = backend.submit(requests[0])
    figures["repeat_submit_s"] = time.perf_counter() - start
    assert again.already_existed

    start = time.perf_counter()
    backend.job_state(requests[0].job_name)
    figures["status_s"] = time.perf_counter() - start
    return figures


def run_child(url: str, ca_file: str, warm: int, first_batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, ca_file, str(warm), str(first_batch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=5, help="warm submissions to time")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, ca_file, warm, first = args.child
        print(json.dumps(child(url, ca_file, int(warm), int(first))))
        return

    sys.path[:0] = [str(ROOT), str(FAKE_DIR)]
    import trustme
    from fake_azureml import FakeAzureML

    from retrain.emulators.azurite import running

    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp) / "azurite") as storage:
        connection = storage.connection_string
        ca = trustme.CA()
        ca_file = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        fake = FakeAzureML(connection)
        with fake.serve(ca, ca_file):
            cold = run_child(fake.url, ca_file, args.warm, first_batch=0)
            uploads = len(fake.calls("POST", r"/startPendingUpload$"))
            again = run_child(fake.url, ca_file, args.warm, first_batch=100)
            uploads_again = len(fake.calls("POST", r"/startPendingUpload$")) - uploads

    ms = lambda s: f"{s * 1000:7.0f} ms"  # noqa: E731
    print(f"{'':44}{'new workspace':>16}{'code already there':>20}")
    rows = [
        ("import azure.ai.ml", "import_s"),
        ("MLClient creation", "client_s"),
        ("first submission (cold)", "first_submit_s"),
        (f"warm submission, new batch (median of {args.warm})", "warm_submit_s"),
        ("warm repeat submission (job exists)", "repeat_submit_s"),
        ("warm status read", "status_s"),
    ]
    for label, key in rows:
        print(f"{label:44}{ms(cold[key]):>16}{ms(again[key]):>20}")
    cold_total = cold["import_s"] + cold["client_s"] + cold["first_submit_s"]
    print(f"{'cold total (import + client + first)':44}{ms(cold_total):>16}", end="")
    print(f"{ms(again['import_s'] + again['client_s'] + again['first_submit_s']):>20}")
    print(f"component code uploads: {uploads} in the first process, {uploads_again} in the second")


if __name__ == "__main__":
    main()
