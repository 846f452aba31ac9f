"""train: outputs, determinism, the exported predictor, augmentation and schedule."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from component_helpers import run_train

from components.train import train
from components.train.model import FashionNet, ModelConfig, Predictor

ROOT = Path(__file__).resolve().parents[2]
TRAIN_DIR = ROOT / "components" / "train"


def test_writes_weights_config_predictor_and_log(tiny_model: Path) -> None:
    names = sorted(p.name for p in tiny_model.iterdir())
    assert names == ["config.json", "predictor.pt", "training_log.json", "weights.pt"]

    config = json.loads((tiny_model / "config.json").read_text())
    assert config["training"]["epochs"] == 1 and config["training"]["seed"] == 0
    assert config["preset"] == config["model"]["name"] == "cpu"
    model = FashionNet(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(torch.load(tiny_model / "weights.pt", weights_only=True))

    log = json.loads((tiny_model / "training_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1]
    assert math.isfinite(log["epochs"][0]["loss"]) and 0 <= log["epochs"][0]["accuracy"] <= 1
    assert log["device"] == "cpu" and log["images_per_second"] > 0
    assert log["seconds_per_epoch_median"] == log["epochs"][0]["seconds"]
    assert "test_accuracy" not in log["epochs"][0]  # no --eval_data: no evaluation


def test_eval_data_scores_each_epoch_untimed_and_preset_can_be_chosen(tiny_prepared, tmp_path):
    """What bench_accuracy reads: test accuracy after each epoch, and training time without it."""
    training, test = tiny_prepared
    argv = ["--input_data", str(training), "--epochs", "2", "--batch_size", "128", "--seed", "0"]
    argv += ["--output_model", str(tmp_path / "m"), "--eval_data", str(test), "--preset", "gpu"]
    assert train.main(argv) == 0
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    assert json.loads((tmp_path / "m" / "config.json").read_text())["preset"] == "gpu"
    first, second = log["epochs"]
    assert 0 <= first["test_accuracy"] <= 1 and 0 <= second["test_accuracy"] <= 1
    assert (first["elapsed"], second["elapsed"]) == (
        first["seconds"],
        first["seconds"] + second["seconds"],
    )
    assert log["seconds"] == second["elapsed"]
    assert log["seconds_per_epoch_median"] == (first["seconds"] + second["seconds"]) / 2


def test_predictor_matches_the_weights_with_flip_averaging(tiny_model: Path, tiny_prepared):
    """The TorchScript artifact is the trained net plus flip test-time augmentation."""
    config = json.loads((tiny_model / "config.json").read_text())
    net = FashionNet(ModelConfig.from_dict(config["model"]))
    net.load_state_dict(torch.load(tiny_model / "weights.pt", weights_only=True))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(tiny_model / "predictor.pt"))
    images = torch.from_numpy(np.load(tiny_prepared[1] / "images.npy")[:37]).unsqueeze(1)
    with torch.inference_mode():
        expected = (net(images) + net(images.flip(-1))) / 2
        assert torch.allclose(scripted(images), expected, atol=1e-5)
        assert torch.allclose(Predictor(net)(images), expected, atol=1e-6)


def test_same_seed_same_weights_other_seed_differs(tiny_prepared, tiny_model, tmp_path) -> None:
    a = tiny_model  # seed 0, one epoch
    b = run_train(tiny_prepared[0], tmp_path / "b", seed=0)
    c = run_train(tiny_prepared[0], tmp_path / "c", seed=1)
    wa, wb, wc = (torch.load(p / "weights.pt", weights_only=True) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    logs = [json.loads((p / "training_log.json").read_text())["epochs"] for p in (a, b)]
    assert [e["loss"] for e in logs[0]] == [e["loss"] for e in logs[1]]


def test_runs_as_a_script_from_its_folder(tiny_prepared, tmp_path: Path) -> None:
    """As Azure ML runs it (`python train.py`): the model module is found beside it."""
    argv = [sys.executable, "train.py", "--input_data", str(tiny_prepared[0])]
    argv += ["--epochs", "1", "--batch_size", "256", "--learning_rate", "0.05", "--seed", "0"]
    argv += ["--output_model", str(tmp_path / "model")]
    done = subprocess.run(argv, cwd=TRAIN_DIR, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "epoch   1/1" in done.stdout
    assert "images/s" in done.stdout.splitlines()[-1]
    assert (tmp_path / "model" / "predictor.pt").is_file()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    argv = ["--input_data", str(tmp_path / "nowhere"), "--output_model", str(tmp_path / "m")]
    assert train.main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("train: ") and "images.npy" in err[0]
    assert not (tmp_path / "m").exists()


def test_wrong_shape_is_refused(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(4, np.uint8))
    assert train.main(["--input_data", str(tmp_path), "--output_model", str(tmp_path / "m")]) == 1
    assert "expected uint8 N x 28 x 28" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag",
    [
        *("--epochs=0", "--batch_size=0", "--learning_rate=0", "--learning_rate=-0.1"),
        *("--learning_rate=nan", "--learning_rate=inf", "--learning_rate=fast"),
    ],
)
def test_nonsense_settings_are_usage_errors(tmp_path: Path, flag: str) -> None:
    with pytest.raises(SystemExit) as caught:
        train.main(["--input_data", str(tmp_path), "--output_model", str(tmp_path), flag])
    assert caught.value.code == 2


@pytest.mark.parametrize("s", [1, 2])
def test_augment_shifts_and_mirrors_whole_images(s: int) -> None:
    """Each output is its input shifted by at most s pixels, maybe mirrored; zeros fill in."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 1, 28, 28), dtype=torch.uint8)  # no zero pixels
    out = train.augment(images, generator, s)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images[:, 0], (s, s, s, s))
    flips, offsets = 0, set()
    for i in range(len(images)):
        candidates = {
            (dy, dx, flip): padded[i, dy : dy + 28, dx : dx + 28].flip(-1)
            if flip
            else padded[i, dy : dy + 28, dx : dx + 28]
            for dy in range(2 * s + 1)
            for dx in range(2 * s + 1)
            for flip in (False, True)
        }
        matches = [key for key, c in candidates.items() if torch.equal(c, out[i, 0])]
        assert matches, f"image {i} is not a shift/flip of its input"
        flips += matches[0][2]
        offsets.add(matches[0][:2])
    assert 10 < flips < 54  # about half are mirrored
    if s == 1:  # every offset in -1..1 occurs, and no other
        assert offsets == set(itertools.product(range(3), repeat=2))
    else:
        assert max(max(o) for o in offsets) == 2 * s  # the full range is used


@pytest.mark.parametrize(
    ("preset", "shift", "smoothing"), [("cpu", 1, 0.0), ("gpu", 2, 0.1)], ids=["cpu", "gpu"]
)
def test_each_preset_trains_with_its_own_augmentation_and_smoothing(
    tiny_prepared, tmp_path, monkeypatch, preset: str, shift: int, smoothing: float
) -> None:
    """The small cpu() net: 1-pixel shifts and plain cross-entropy; gpu(): 2 pixels and 0.1."""
    shifts: set[int] = set()
    smoothings: set[float] = set()
    augment, cross_entropy = train.augment, train.F.cross_entropy

    def augment_spy(images, generator, s):
        shifts.add(s)
        return augment(images, generator, s)

    def cross_entropy_spy(logits, target, label_smoothing=0.0):
        smoothings.add(label_smoothing)
        return cross_entropy(logits, target, label_smoothing=label_smoothing)

    monkeypatch.setattr(train, "augment", augment_spy)
    monkeypatch.setattr(train.F, "cross_entropy", cross_entropy_spy)
    argv = ["--input_data", str(tiny_prepared[0]), "--epochs", "1", "--batch_size", "256"]
    assert train.main([*argv, "--output_model", str(tmp_path / "m"), "--preset", preset]) == 0
    assert (shifts, smoothings) == ({shift}, {smoothing})
    recorded = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert (recorded["shift"], recorded["label_smoothing"]) == (shift, smoothing)


@pytest.mark.parametrize(
    ("preset", "flag", "peak"),
    [("cpu", None, 0.1), ("gpu", None, 0.05), ("cpu", "auto", 0.1), ("cpu", "0.03", 0.03)],
    ids=["cpu-default", "gpu-default", "cpu-auto", "cpu-number"],
)
def test_learning_rate_auto_is_the_presets_own_and_a_number_overrides_it(
    tiny_prepared, tmp_path, monkeypatch, preset: str, flag: str | None, peak: float
) -> None:
    """--learning_rate defaults to auto: 0.1 for the small cpu() net, 0.05 for gpu()."""
    rates: list[float] = []
    step = torch.optim.SGD.step

    def step_spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step_spy)
    argv = ["--input_data", str(tiny_prepared[0]), "--epochs", "2", "--batch_size", "64"]
    argv += ["--output_model", str(tmp_path / "m"), "--preset", preset]
    assert train.main(argv + (["--learning_rate", flag] if flag else [])) == 0
    assert rates and max(rates) == pytest.approx(peak)  # the warm-up reaches the peak
    recorded = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert recorded["learning_rate"] == pytest.approx(peak)
    assert recorded["learning_rate_flag"] == ("auto" if flag in (None, "auto") else float(flag))


@pytest.mark.parametrize(
    ("preset", "shifts"),
    [("cpu", [1] * 8 + [0] * 2), ("gpu", [2] * 8 + [0] * 2)],
    ids=["cpu", "gpu"],
)
def test_training_ends_without_the_shift(
    tiny_prepared, tmp_path, monkeypatch, preset: str, shifts: list[int]
) -> None:
    """Both presets: the last fifth of the epochs (1 of 5 here, 2 steps each) unshifted."""
    seen: list[int] = []
    augment = train.augment

    def augment_spy(images, generator, s):
        seen.append(s)
        return augment(images, generator, s)

    monkeypatch.setattr(train, "augment", augment_spy)
    argv = ["--input_data", str(tiny_prepared[0]), "--epochs", "5", "--batch_size", "256"]
    assert train.main([*argv, "--output_model", str(tmp_path / "m"), "--preset", preset]) == 0
    assert seen == shifts
    recorded = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert recorded["unshifted_end"] == 0.2


def test_component_spec_passes_auto_by_default() -> None:
    """The pipeline's port: a string, auto unless the pipeline passes a number."""
    spec = yaml.safe_load((TRAIN_DIR / "train.yml").read_text())
    port = spec["inputs"]["learning_rate"]
    assert (port["type"], port["default"]) == ("string", "auto")
    assert "--learning_rate ${{inputs.learning_rate}}" in spec["command"]


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    total = 100
    factors = [train.lr_factor(step, total) for step in range(total)]
    peak = factors.index(max(factors))
    assert max(factors) == 1.0 and 0 < peak < total // 2
    assert all(a < b for a, b in itertools.pairwise(factors[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(factors[peak:]))
    assert factors[0] > 0 and factors[-1] < 0.02
    assert train.lr_factor(0, 1) == 1.0  # a one-step run still trains


@pytest.mark.parametrize("config", [ModelConfig.cpu(), ModelConfig.gpu()], ids=["cpu", "gpu"])
def test_both_presets_build_run_and_round_trip(config: ModelConfig) -> None:
    net = FashionNet(config).eval()
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        assert net(images).shape == (3, 10)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    rebuilt = FashionNet(ModelConfig.from_dict(config.to_dict()))
    rebuilt.load_state_dict(net.state_dict())  # same layout, strict


def test_device_picks_the_preset() -> None:
    assert ModelConfig.for_device(torch.device("cpu")) == ModelConfig.cpu()
    assert ModelConfig.for_device(torch.device("cuda")) == ModelConfig.gpu()
    small, large = (
        sum(p.numel() for p in FashionNet(c).parameters())
        for c in (ModelConfig.cpu(), ModelConfig.gpu())
    )
    assert 50_000 < small < 200_000 < large
