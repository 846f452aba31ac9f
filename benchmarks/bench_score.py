"""score: 10k test images through the exported predictor, as the pipeline runs it.

Goal (issue #2): 10k images scored in 2 s or less on CPU. Trains a throw-away model on a small
generated batch first (accuracy is not the point here), then runs `python score.py` on 10k
images REPEAT times and prints what score.py measures itself (metrics.json "seconds"): loading
the predictor and data, predicting with flip averaging, and the metrics ("scoring"); the PNG
report; and the whole process, whose start-up is mostly `import torch` and torchvision.

    .venv/bin/python benchmarks/bench_score.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrain.data.fashion_mnist import write_batch  # noqa: E402

COMPONENTS = ROOT / "components"
REPEAT = 3


def run(script: str, *args: str) -> float:
    started = time.perf_counter()
    argv = [sys.executable, f"{script}.py", *args]
    subprocess.run(argv, cwd=COMPONENTS / script, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_batch(root / "raw", 2_000, 10_000, seed=0)
        run("prepare_data", "--input_data", str(root / "raw"), "--training_data",
            str(root / "train"), "--test_data", str(root / "test"))  # fmt: skip
        run("train", "--input_data", str(root / "train"), "--epochs", "1", "--batch_size",
            "256", "--learning_rate", "0.05", "--seed", "0", "--output_model",
            str(root / "model"))  # fmt: skip

        rows = []
        for i in range(REPEAT):
            out = root / f"result{i}"
            wall = run("score", "--input_data", str(root / "test"), "--input_model",
                       str(root / "model"), "--output_result", str(out))  # fmt: skip
            seconds = json.loads((out / "metrics.json").read_text())["seconds"]
            rows.append((seconds["load"], seconds["predict"], seconds["scoring"],
                         seconds["report"], wall))  # fmt: skip
        names = ("load", "predict", "scoring", "report", "process")
        medians = [statistics.median(column) for column in zip(*rows, strict=True)]
        print(f"score, 10000 images, median of {REPEAT} runs:")
        for name, value in zip(names, medians, strict=True):
            print(f"  {name:8s} {value:6.2f} s")
        print("  (scoring = load + predict + metrics; goal: <= 2 s)")


if __name__ == "__main__":
    main()
