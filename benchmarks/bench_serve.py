"""The local scoring server's figures, on this machine's CPU.

    .venv/bin/python benchmarks/bench_serve.py [--n-train 6000] [--n-test 1000] [--epochs 2]

Two models are trained on a generated batch with ``python -m retrain run`` (seeds 0 and 1),
registered in a fresh local registry, the first made champion, and served by the very code of
``python -m retrain serve`` (``LocalServing``, port 0). Every request is a new HTTP connection,
as ``urllib`` makes them. It prints:

- the median latency of a one-image request (JSON), over ``--requests`` requests;
- images/s for requests of 256 images;
- the accuracy through the server on the run's test images, beside the score step's figure for
  the same images (``metrics.json``), and how many predictions differ from ``predictions.csv``;
- the swap: the second model is made champion while 4 clients post without pause; the time from
  the tag to the first answer by the new version, the load time, and the failed requests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAME = "fashion-mnist-cnn"


def train(batch: Path, runs: Path, epochs: int, seed: int) -> dict:
    env = {**os.environ, "LOCAL_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "retrain", "run", str(batch), "--epochs", str(epochs)]
    argv += ["--seed", str(seed), "--json"]
    done = subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200, help="one-image requests")
    args = parser.parse_args()

    import numpy as np

    from retrain.backends.local_models import LocalModelRegistry
    from retrain.data.fashion_mnist import write_batch
    from retrain.serving.local import LocalServing
    from retrain.serving.sample import post_images, run_test_images
    from retrain.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_batch(root / "batch", args.n_train, args.n_test, seed=0)
        runs = [train(root / "batch", root / "runs", args.epochs, seed) for seed in (0, 1)]
        settings = Settings(local_runs_dir=root / "runs", local_models_dir=root / "models")
        registry = LocalModelRegistry(settings)
        versions = []
        for n, run in enumerate(runs, 1):
            version = f"run{n}"
            registry.register(NAME, version, run["job_name"], {})
            versions.append(version)
        registry.mark_champion(NAME, versions[0])
        images, labels = run_test_images(Path(runs[0]["run_dir"]))
        csv = Path(runs[0]["run_dir"]) / "score_node" / "output_result" / "predictions.csv"
        step_predictions = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=2, dtype=int)

        with LocalServing(settings.local_models_dir, NAME, port=0, poll_seconds=0.05) as serving:
            url = f"{serving.url}/score"
            post_images(url, images[:1])  # warm-up
            latencies = []
            for i in range(args.requests):
                started = time.perf_counter()
                post_images(url, images[i % len(images)][None])
                latencies.append(time.perf_counter() - started)
            batch = images[:256]
            started = time.perf_counter()
            rounds = 20
            for _ in range(rounds):
                post_images(url, batch)
            per_second = 256 * rounds / (time.perf_counter() - started)

            predicted = []
            for i in range(0, len(images), 256):
                answer = post_images(url, images[i : i + 256])
                predicted += [p["label"] for p in answer["predictions"]]
            served = np.array(predicted)
            accuracy = float((served == labels).mean())
            differ = int((served != step_predictions).sum())

            swap = swap_under_load(serving, registry, url, images[:16], versions[1])

    print(f"machine: {os.cpu_count()} CPU cores, torch threads {threads()}")
    print(f"one image, median latency over {args.requests} requests: "
          f"{statistics.median(latencies) * 1000:.1f} ms")  # fmt: skip
    print(f"batches of 256: {per_second:,.0f} images/s")
    print(f"accuracy through the server on the run's {len(labels)} test images: {accuracy:.4f}; "
          f"the score step's: {runs[0]['accuracy']:.4f}; predictions differing from the score "
          f"step's predictions.csv: {differ}")  # fmt: skip
    print(f"swap under load (4 clients, 16 images a request): first answer by the new champion "
          f"{swap['to_first_answer']:.2f} s after the tag moved (loading it: {swap['load']:.2f} "
          f"s); {swap['requests']} requests, {swap['failed']} failed")  # fmt: skip


def swap_under_load(serving, registry, url: str, images, version: str) -> dict:
    from retrain.serving.sample import post_images

    failed = requests = 0
    first_new: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        nonlocal failed, requests
        while not stop.is_set():
            try:
                answer = post_images(url, images)
                ok = answer["count"] == len(images)
            except Exception:
                ok, answer = False, {}
            with lock:
                requests += 1
                failed += 0 if ok else 1
                if ok and answer["model"]["version"] == version and not first_new:
                    first_new.append(time.perf_counter())

    threads_ = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads_:
        thread.start()
    time.sleep(1.0)
    tagged = time.perf_counter()
    registry.mark_champion(NAME, version)
    deadline = tagged + 60
    while not first_new and time.perf_counter() < deadline:
        time.sleep(0.005)
    time.sleep(1.0)
    stop.set()
    for thread in threads_:
        thread.join()
    return {
        "to_first_answer": (first_new[0] - tagged) if first_new else float("nan"),
        "load": serving.watcher.last_swap_seconds or float("nan"),
        "requests": requests,
        "failed": failed,
    }


def threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
