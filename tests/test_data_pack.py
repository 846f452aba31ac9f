"""``python -m retrain data pack``: generated PNG and JPEG images (RGB and grayscale, of several
sizes) packed into a batch that the project's own validation and prepare_data accept, and every
bad input refused in one line with exit 2."""

from __future__ import annotations

import gzip
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli
from PIL import Image

from components.prepare_data import prepare_data
from retrain.cli.data import folder_files
from retrain.cli.main import main
from retrain.data.pack import FILE_NAMES, pack

CLASSES = [f"{k}_{name}" for k, name in enumerate("abcdefghij")]
SIZES = [(28, 28), (40, 20), (64, 64), (13, 31), (100, 80)]


def gray_level(label: int) -> int:
    return 20 + 22 * label  # one level per class: the packed pixels tell each image's class


def make_images(root: Path, per_class: int = 5, classes: list[str] = CLASSES) -> Path:
    """Solid images, one gray level per class, as RGB or L, PNG or JPEG, of assorted sizes."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        level = gray_level(label)
        for i in range(per_class):
            size = SIZES[i % len(SIZES)]
            mode, color = ("RGB", (level, level, level)) if i % 2 else ("L", level)
            suffix = (".png", ".jpg", ".JPEG")[i % 3]
            Image.new(mode, size, color).save(folder / f"img{i}{suffix}")
    return root


def idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * d : 8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("pack") / "images")


def test_pack_writes_a_batch_the_pipeline_accepts(images, tmp_path):
    out = tmp_path / "batch"
    result = cli("data", "pack", images, "--out", out, "--test-fraction", "0.4", "--seed", "3")
    assert result.code == 0, result.err
    assert result.out.strip() == str(out)
    assert "packed 30 training and 20 test images into" in result.err
    assert "label 0: 0_a" in result.err and "label 9: 9_j" in result.err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.gz" for n in FILE_NAMES)

    folder_files(out)  # the command line's checks before a run
    prepared = tmp_path / "prepared"
    argv = ["--input_data", str(out), "--training_data", str(prepared / "train")]
    assert prepare_data.main([*argv, "--test_data", str(prepared / "test")]) == 0
    labels = np.load(prepared / "test" / "labels.npy")
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10  # stratified: 2 of 5 each

    for split in ("train", "t10k"):
        pixels = idx(out / f"{split}-images-idx3-ubyte.gz")
        labels = idx(out / f"{split}-labels-idx1-ubyte.gz")
        assert pixels.shape[1:] == (28, 28) and pixels.dtype == np.uint8
        expected = np.array([gray_level(k) for k in labels])
        assert np.abs(pixels.reshape(len(labels), -1).mean(axis=1) - expected).max() < 3


def test_a_packed_batch_passes_the_landing_validation(images, tmp_path, azurite):
    from retrain.landing.decisions import Submit, decide_batch
    from retrain.landing.validation import validate_batch
    from retrain.settings import Settings
    from retrain.storage import BlobStore

    out = pack(images, tmp_path / "batch").files
    store = BlobStore(Settings(storage_connection=azurite.connection_string))
    store.ensure_container("packed")
    for path in out.values():
        store.put("packed", f"mine/{path.name}", path.read_bytes())
    decision = decide_batch("packed", "mine", store.list("packed", "mine/"))
    assert isinstance(decision, Submit)
    headers = validate_batch(store, decision.batch)
    assert headers["train-images-idx3-ubyte"].count == 40  # round(5 * 0.2) = 1 test image each
    assert headers["t10k-labels-idx1-ubyte"].count == 10


def test_the_split_is_seeded(images, tmp_path):
    def packed(seed: int, name: str) -> list[bytes]:
        files = pack(images, tmp_path / name, test_fraction=0.4, seed=seed).files
        return [files[n].read_bytes() for n in FILE_NAMES]

    assert packed(1, "a") == packed(1, "b")
    assert packed(1, "a") != packed(2, "c")


def test_invert_turns_dark_on_light_into_light_on_dark(images, tmp_path):
    plain = pack(images, tmp_path / "plain", seed=5).files
    inverted = pack(images, tmp_path / "inverted", seed=5, invert=True).files
    name = "train-images-idx3-ubyte"
    assert np.array_equal(idx(inverted[name]), 255 - idx(plain[name]))


def test_the_default_output_is_beside_the_folder(tmp_path):
    images = make_images(tmp_path / "shop", per_class=2)
    result = cli("data", "pack", images, "--test-fraction", "0.5")
    assert result.code == 0, result.err
    assert (tmp_path / "shop-batch" / "t10k-images-idx3-ubyte.gz").is_file()


# --- bad input: one line, exit 2, nothing written -----------------------------------------------


def refused(*argv: object) -> str:
    result = cli("data", "pack", *argv)
    assert result.code == 2, result.err
    assert result.out == ""
    (line,) = result.err.splitlines()
    return line


def test_not_ten_classes(tmp_path):
    nine = make_images(tmp_path / "nine", per_class=2, classes=CLASSES[:9])
    assert refused(nine, "--out", tmp_path / "out") == (
        f"error: {nine}: expected 10 class folders (one per label, in sorted order), found 9: "
        + ", ".join(CLASSES[:9])
    )
    eleven = make_images(tmp_path / "eleven", per_class=2, classes=[*CLASSES, "extra"])
    assert "expected 10 class folders" in refused(eleven, "--out", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refused(empty, "--out", tmp_path / "out").endswith("found 0")
    assert not (tmp_path / "out").exists()


def test_no_such_folder(tmp_path):
    assert refused(tmp_path / "nope") == f"error: {tmp_path / 'nope'}: no such folder"


def test_an_unreadable_image_is_named(tmp_path):
    images = make_images(tmp_path / "images", per_class=2)
    broken = images / "3_d" / "broken.png"
    broken.write_bytes(b"not an image at all")
    line = refused(images, "--out", tmp_path / "out")
    assert line.startswith(f"error: {broken}: not a readable PNG or JPEG image (")
    assert not (tmp_path / "out").exists()


def test_a_truncated_jpeg_is_named(tmp_path):
    images = make_images(tmp_path / "images", per_class=2)
    photo = images / "5_f" / "big.jpg"
    Image.effect_noise((200, 200), 60).save(photo)
    photo.write_bytes(photo.read_bytes()[:500])
    assert refused(images).startswith(f"error: {photo}: not a readable PNG or JPEG image (")


def test_an_empty_class_is_named(tmp_path):
    images = make_images(tmp_path / "images", per_class=2)
    for f in (images / "7_h").iterdir():
        f.unlink()
    (images / "7_h" / "notes.txt").write_text("no images here")
    assert refused(images) == f"error: {images / '7_h'}: class '7_h' holds no PNG or JPEG image"


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.2", "nan", "x"])
def test_a_test_fraction_outside_0_1_is_refused(images, fraction):
    err = StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(["data", "pack", str(images), "--test-fraction", fraction])
    assert exit_.value.code == 2
    line = err.getvalue().strip().splitlines()[-1]
    assert line.startswith("python -m retrain data pack: error: argument --test-fraction: ")
    assert line.endswith(f"got {fraction}") or line.endswith(f"got {fraction!r}")
    assert not (images.parent / "images-batch").exists()


def test_a_class_too_small_to_split(tmp_path):
    images = make_images(tmp_path / "images", per_class=3)
    for f in sorted((images / "2_c").iterdir())[1:]:
        f.unlink()
    assert refused(images, "--out", tmp_path / "out") == (
        "error: class '2_c': 1 image(s) are too few to split with test fraction 0.2 "
        "(each split needs at least one)"
    )
    assert not (tmp_path / "out").exists()
