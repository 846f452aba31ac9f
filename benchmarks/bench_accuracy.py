"""accuracy: train and score on the real Fashion-MNIST, as the pipeline runs it; print the figures.

Needs the real files (never used by the tests). On Debian or Ubuntu::

    apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fmnist
    export FASHION_MNIST_DIR=/tmp/fmnist/usr/share/datasets/fashion-mnist
    .venv/bin/python benchmarks/bench_accuracy.py --seeds 0,1

Elsewhere, online: ``--data ~/fashion-mnist --download`` fetches them
(``retrain.data.fashion_mnist``).
Either way every file's content is checked against the official checksums first.

Runs ``prepare_data.py``, ``train.py`` and ``score.py`` as the pipeline does, with the defaults
(20 epochs, batch 256, the preset's own learning rate) unless told otherwise, and prints: train's
line per epoch as it goes; the preset, device and bf16; the test accuracy and per-class recall
(score's metrics.json); the training wall time, mean and median epoch time and images/s (train's
training_log.json); the CPU's flags; and on CUDA (on CPU with ``--eval-each-epoch``) the training
time to reach 94 % test accuracy (train evaluates after each epoch, untimed). Without a GPU,
``--preset gpu --device cpu`` measures the Azure ML default (about 15 minutes a seed on one bf16
core).
``--train-dir`` points at another train component (say, an older checkout) for a side-by-side
time comparison on the same machine; ``--threads`` and ``--cpus`` pin it (``taskset -c``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrain.data.fashion_mnist import CLASS_NAMES, download_fashion_mnist  # noqa: E402

COMPONENTS = ROOT / "components"
TARGET = 0.94  # the accuracy whose time-to-reach is reported on CUDA
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    default_data = os.environ.get("FASHION_MNIST_DIR")
    parser.add_argument("--data", type=Path, default=default_data, required=not default_data)
    parser.add_argument("--download", action="store_true", help="fetch missing files (online)")
    parser.add_argument("--preset", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", default="0", help="comma-separated, one run each")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (OMP_NUM_THREADS)")
    parser.add_argument("--cpus", help="pin to these CPUs (taskset -c), e.g. 1")
    parser.add_argument("--train-dir", type=Path, default=COMPONENTS / "train")
    parser.add_argument("--eval-each-epoch", action="store_true", help="also on CPU (slower)")
    args = parser.parse_args()
    try:
        download_fashion_mnist(args.data, download=args.download)
    except RuntimeError as error:
        sys.exit(f"bench_accuracy: {error}")

    env = dict(os.environ)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    pin = ["taskset", "-c", args.cpus] if args.cpus else []
    cuda = _cuda(env)
    print(f"machine: {_cpu_model()}")
    print(f"CPU flags: {' '.join(f for f in FLAGS if f in _cpu_flags()) or 'none of'} "
          f"({'bf16' if _cpu_bf16() else 'no bf16'}); GPU: {cuda or 'none'}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _run(COMPONENTS / "prepare_data", "prepare_data.py", env, [],
             "--input_data", args.data, "--training_data", root / "train",
             "--test_data", root / "test")  # fmt: skip
        for seed in (int(s) for s in args.seeds.split(",")):
            model, result = root / f"model-{seed}", root / f"result-{seed}"
            extra = ["--preset", args.preset]
            if cuda or args.eval_each_epoch:
                extra += ["--eval_data", root / "test"]
            print(f"\nseed {seed}: training (one line per epoch)", flush=True)
            _run(args.train_dir, "train.py", env, pin,
                 "--input_data", root / "train", "--epochs", args.epochs, "--seed", seed,
                 "--output_model", model, *extra, quiet=False)  # fmt: skip
            _run(COMPONENTS / "score", "score.py", env, [],
                 "--input_data", root / "test", "--input_model", model,
                 "--output_result", result)  # fmt: skip
            report(seed, model, result)


def report(seed: int, model: Path, result: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    log = json.loads((model / "training_log.json").read_text())
    metrics = json.loads((result / "metrics.json").read_text())
    epochs = log["epochs"]
    preset = config.get("preset") or config["model"]["name"]
    print(f"\nseed {seed}: preset {preset}, {len(epochs)} epochs on {log['device']}"
          f"{' with bf16' if log['bf16'] else ''}")  # fmt: skip
    print(f"  test accuracy {metrics['accuracy']:.4f} on {metrics['count']} images")
    recall = metrics["recall"]
    print(
        "  recall: " + ", ".join(f"{n} {r:.2f}" for n, r in zip(CLASS_NAMES, recall, strict=True))
    )
    median = log.get("seconds_per_epoch_median")
    median_text = f", {median:.2f} median" if median else ""
    print(f"  training {log['seconds']:.1f} s: {log['seconds_per_epoch']:.2f} s/epoch mean"
          f"{median_text}, {log['images_per_second']:.0f} images/s")  # fmt: skip
    reached = [e for e in epochs if e.get("test_accuracy", 0) >= TARGET]
    if reached:
        first = reached[0]
        when = f"after epoch {first['epoch']}, {first['elapsed']:.1f} s of training"
        print(f"  {TARGET:.0%} reached {when}")
    elif any("test_accuracy" in e for e in epochs):
        best = max(epochs, key=lambda e: e["test_accuracy"])
        print(
            f"  {TARGET:.0%} not reached (best {best['test_accuracy']:.4f}, epoch {best['epoch']})"
        )


def _run(
    folder: Path, script: str, env: dict, pin: list[str], *args: object, quiet: bool = True
) -> None:
    """Run one component script; train's per-epoch lines show (a gpu() run on CPU takes long)."""
    argv = [*pin, sys.executable, script, *map(str, args)]
    done = subprocess.run(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL if quiet else None)
    if done.returncode:
        sys.exit(f"bench_accuracy: {script} failed (exit code {done.returncode})")


def _cuda(env: dict) -> str | None:
    probe = "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    name = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return name.stdout.strip() or None


def _cpu_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return set()
    return next((set(ln.split(":", 1)[1].split()) for ln in text.splitlines()
                 if ln.startswith("flags")), set())  # fmt: skip


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "?")  # fmt: skip
    return f"{name}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
