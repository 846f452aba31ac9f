"""Command-line figures: start-up, the dry run, data pack, and one local run end to end.

    .venv/bin/python benchmarks/bench_cli.py [--images 1000] [--skip-run]

- ``python -m retrain --help`` in a fresh interpreter (best of 5): no Azure SDK, torch or numpy.
- ``python -m retrain pipeline show --data DIR`` (best of 3): almost all of it azure.ai.ml's import.
- ``data pack`` in-process on N generated 64x64 PNGs (half RGB, half grayscale), 10 classes:
  the first call (paying the imports) and a second one.
- ``run DIR --epochs 2 --batch-size 64`` on a generated batch of 3,000 + 500 images, in a fresh
  runs folder: wall time and test accuracy (skipped with --skip-run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def best_of(n: int, argv: list[str], env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def make_images(root: Path, count: int) -> None:
    from PIL import Image

    for i in range(count):
        folder = root / f"class-{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        level = 20 + 22 * (i % 10)
        mode, color = ("RGB", (level, level, level)) if i % 2 else ("L", level)
        Image.new(mode, (64, 64), color).save(folder / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=1000, help="images for data pack")
    parser.add_argument("--skip-run", action="store_true", help="no end-to-end training run")
    args = parser.parse_args()
    from retrain.data.fashion_mnist import write_batch
    from retrain.data.pack import pack

    python = [sys.executable, "-m", "retrain"]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        batch = root / "batch"
        write_batch(batch, n_train=3000, n_test=500, seed=1)
        print(
            f"{'python -m retrain --help (best of 5)':48}{best_of(5, [*python, '--help']):8.2f} s"
        )
        show = best_of(3, [*python, "pipeline", "show", "--data", str(batch)])
        print(f"{'pipeline show (best of 3)':48}{show:8.2f} s")

        make_images(root / "images", args.images)
        for run in ("cold", "warm"):
            start = time.perf_counter()
            packed = pack(root / "images", root / "packed", test_fraction=0.2)
            took = time.perf_counter() - start
            print(f"{f'data pack, {args.images} PNGs 64x64, {run}':48}{took:8.2f} s  "
                  f"({args.images / took:,.0f} images/s)")  # fmt: skip
        assert packed.n_train + packed.n_test == args.images

        if not args.skip_run:
            env = {**os.environ, "LOCAL_RUNS_DIR": str(root / "runs")}
            argv = [*python, "run", str(batch), "--epochs", "2", "--batch-size", "64", "--json"]
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
            took = time.perf_counter() - start
            summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
            label = "run, 3,000 + 500 images, 2 epochs"
            print(f"{label:48}{took:8.2f} s  (test accuracy {summary['accuracy']:.4f})")
    print(f"({os.cpu_count()} CPU cores visible)")


if __name__ == "__main__":
    main()
