"""train: one epoch over 60k generated images on this machine's CPU; 10 epochs on a GPU if any.

Goal (issue #2): one epoch of 60k images in 12 s or less on 2 CPU cores; on a GPU, 10 epochs in
seconds. Runs `python train.py` as the pipeline does and reads the timings it logs
(training_log.json: seconds per epoch, images per second). Two CPU epochs are run: the first
includes oneDNN's one-off kernel set-up. Shared machines are noisy.

    .venv/bin/python benchmarks/bench_train.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrain.data.fashion_mnist import write_batch  # noqa: E402

COMPONENTS = ROOT / "components"


def run(script: str, *args: str) -> float:
    started = time.perf_counter()
    argv = [sys.executable, f"{script}.py", *args]
    subprocess.run(argv, cwd=COMPONENTS / script, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def train(data: Path, out: Path, epochs: int, env: dict[str, str] | None = None) -> dict:
    args = ["--input_data", str(data), "--epochs", str(epochs), "--batch_size", "256"]
    args += ["--learning_rate", "0.05", "--seed", "0", "--output_model", str(out)]
    started = time.perf_counter()
    argv = [sys.executable, "train.py", *args]
    subprocess.run(argv, cwd=COMPONENTS / "train", check=True, stdout=subprocess.DEVNULL, env=env)
    log = json.loads((out / "training_log.json").read_text())
    log["process_seconds"] = time.perf_counter() - started
    return log


def main() -> None:
    import torch  # only to ask whether there is a GPU

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_batch(root / "raw", 60_000, 100, seed=0)
        run("prepare_data", "--input_data", str(root / "raw"), "--training_data",
            str(root / "train"), "--test_data", str(root / "test"))  # fmt: skip

        cpu_env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        log = train(root / "train", root / "cpu", epochs=2, env=cpu_env)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"CPU ({torch.get_num_threads()} threads), 60000 images, batch 256:")
        for entry in log["epochs"]:
            print(
                f"  epoch {entry['epoch']}: {entry['seconds']:.2f} s  "
                f"({60_000 // 256 * 256 / entry['seconds']:.0f} images/s)"
            )
        print(
            f"  process: {log['process_seconds']:.1f} s in all (start-up, 2 epochs, export); "
            f"peak memory {rss:.0f} MiB   (goal: one epoch <= 12 s)"
        )

        if torch.cuda.is_available():
            log = train(root / "train", root / "gpu", epochs=10)
            print(f"GPU ({torch.cuda.get_device_name()}), 60000 images, batch 256, bf16:")
            print(
                f"  10 epochs: {log['seconds']:.1f} s ({log['seconds_per_epoch']:.2f} s/epoch "
                f"mean, {log['seconds_per_epoch_median']:.2f} median, "
                f"{log['images_per_second']:.0f} images/s); process {log['process_seconds']:.1f} s"
            )
        else:
            print("GPU: none here (run this on a CUDA machine for the 10-epoch figure)")


if __name__ == "__main__":
    main()
