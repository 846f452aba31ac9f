"""prepare_data on a full-size batch (60k + 10k, gzip) against plain `gzip -dc` of the same files.

Goal (issue #2): the whole prepare_data process takes at most what `gzip -dc` takes. Both are
run REPEAT times, interleaved; the best and median wall times are printed, and the CPU time
(user + system) of each, which a busy shared machine disturbs less than the wall time.

    .venv/bin/python benchmarks/bench_prepare.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrain.data.fashion_mnist import write_batch  # noqa: E402

SCRIPT = ROOT / "components" / "prepare_data" / "prepare_data.py"
REPEAT = 5


def measure(argv: list[str], **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        paths = write_batch(raw, 60_000, 10_000, seed=0)
        files = [str(p) for p in paths.values()]
        size = sum(p.stat().st_size for p in paths.values())
        print(f"batch: 60000 + 10000 images, {size / 1e6:.1f} MB gzip")
        runs: dict[str, list[tuple[float, float]]] = {"gzip -dc": [], "prepare_data": []}
        for i in range(REPEAT):
            with open("/dev/null", "wb") as null:
                runs["gzip -dc"].append(measure(["gzip", "-dc", *files], stdout=null))
            out = Path(tmp) / f"out{i}"
            argv = [sys.executable, SCRIPT.name, "--input_data", str(raw)]
            argv += ["--training_data", str(out / "train"), "--test_data", str(out / "test")]
            runs["prepare_data"].append(measure(argv, cwd=SCRIPT.parent, stdout=subprocess.DEVNULL))
        summary = {}
        for name, results in runs.items():
            walls, cpus = [w for w, _ in results], [c for _, c in results]
            summary[name] = (min(walls), statistics.median(walls), statistics.median(cpus))
            print(
                f"{name:13s} wall best {summary[name][0]:.3f} s  median {summary[name][1]:.3f} s"
                f"   CPU median {summary[name][2]:.3f} s   ({REPEAT} runs)"
            )
        ratios = [p / g for p, g in zip(summary["prepare_data"], summary["gzip -dc"], strict=True)]
        print(
            f"prepare_data / gzip -dc: wall best {ratios[0]:.2f}  median {ratios[1]:.2f}   "
            f"CPU {ratios[2]:.2f}   (goal: <= 1)"
        )


if __name__ == "__main__":
    main()
