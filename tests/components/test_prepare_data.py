"""prepare_data: every validation failure is one clear line naming the file; nothing is written."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from components.prepare_data import prepare_data as pd
from retrain.data.fashion_mnist import FILE_NAMES, idx_bytes, write_batch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "components" / "prepare_data" / "prepare_data.py"


def make_batch(folder: Path, *, gz: bool = False, n_train: int = 40, n_test: int = 20) -> Path:
    write_batch(folder, n_train, n_test, seed=7, gzip=gz)
    return folder


def put(folder: Path, name: str, data: bytes, *, gz: bool = False) -> None:
    """Replace one of the four files (raw or .gz) with ``data``."""
    for stale in (folder / name, folder / f"{name}.gz"):
        stale.unlink(missing_ok=True)
    (folder / (f"{name}.gz" if gz else name)).write_bytes(data)


def run(raw: Path, out: Path) -> int:
    argv = ["--input_data", str(raw), "--training_data", str(out / "train")]
    return pd.main([*argv, "--test_data", str(out / "test")])


def assert_one_line_failure(capsys, rc: int, out: Path, file: str, *reason: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert rc == 1
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"prepare_data: {file}: "), lines[0]
    for word in reason:
        assert word in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == [], written
    return lines[0]


def images_header(count: int, rows: int = 28, cols: int = 28) -> bytes:
    return np.array([0x803, count, rows, cols], ">u4").tobytes()


def labels_header(count: int) -> bytes:
    return np.array([0x801, count], ">u4").tobytes()


# --- happy paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_writes_npy_splits_and_meta(tmp_path: Path, gz: bool) -> None:
    raw = make_batch(tmp_path / "in", gz=gz)
    assert run(raw, tmp_path / "out") == 0

    for split, n, stem in (("train", 40, "train"), ("test", 20, "t10k")):
        folder = tmp_path / "out" / split
        images = np.load(folder / "images.npy", mmap_mode="r")
        labels = np.load(folder / "labels.npy")
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["count"] == n
        assert meta["class_counts"] == np.bincount(labels, minlength=10).tolist()
        suffix = ".gz" if gz else ""
        assert meta["source"] == {
            "images": f"{stem}-images-idx3-ubyte{suffix}",
            "labels": f"{stem}-labels-idx1-ubyte{suffix}",
        }
        assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "labels.npy", "meta.json"]


def test_generator_round_trips_through_prepare(tmp_path: Path) -> None:
    """The generator's IDX files decode to exactly the arrays it wrote, raw and gzip alike."""
    paths = write_batch(tmp_path / "in", 300, 50, seed=11)
    assert set(paths) == set(FILE_NAMES)
    assert run(tmp_path / "in", tmp_path / "out") == 0
    for name, split, field in (
        ("train-images-idx3-ubyte", "train", "images"),
        ("train-labels-idx1-ubyte", "train", "labels"),
        ("t10k-images-idx3-ubyte", "test", "images"),
        ("t10k-labels-idx1-ubyte", "test", "labels"),
    ):
        raw = gzip.decompress(paths[name].read_bytes())
        offset = 16 if field == "images" else 8
        expected = np.frombuffer(raw, np.uint8, offset=offset)
        got = np.load(tmp_path / "out" / split / f"{field}.npy")
        assert np.array_equal(got.reshape(-1), expected)


def test_generated_labels_are_balanced_and_images_vary(tmp_path: Path) -> None:
    write_batch(tmp_path / "in", 1000, 100, seed=1, gzip=False)
    assert run(tmp_path / "in", tmp_path / "out") == 0
    labels = np.load(tmp_path / "out" / "train" / "labels.npy")
    images = np.load(tmp_path / "out" / "train" / "images.npy")
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    assert len({img.tobytes() for img in images}) == 1000  # no two images alike


def test_generator_is_reproducible(tmp_path: Path) -> None:
    a = write_batch(tmp_path / "a", 100, 10, seed=5)
    b = write_batch(tmp_path / "b", 100, 10, seed=5)
    c = write_batch(tmp_path / "c", 100, 10, seed=6)
    name = "train-images-idx3-ubyte"
    assert a[name].read_bytes() == b[name].read_bytes()
    assert a[name].read_bytes() != c[name].read_bytes()


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    raw = make_batch(tmp_path / "in")
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    half = len(data) // 2
    put(
        raw,
        "train-images-idx3-ubyte",
        gzip.compress(data[:half]) + gzip.compress(data[half:]),
        gz=True,
    )
    assert run(raw, tmp_path / "out") == 0
    images = np.load(tmp_path / "out" / "train" / "images.npy")
    assert images.tobytes() == data[16:]


def test_raw_file_preferred_when_both_variants_exist(tmp_path: Path) -> None:
    raw = make_batch(tmp_path / "in")
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not even gzip")
    assert run(raw, tmp_path / "out") == 0
    meta = json.loads((tmp_path / "out" / "train" / "meta.json").read_text())
    assert meta["source"]["labels"] == "train-labels-idx1-ubyte"


def test_script_runs_as_a_process_with_exit_codes(tmp_path: Path) -> None:
    """As Azure ML runs it: `python prepare_data.py ...` from its own folder."""
    raw = make_batch(tmp_path / "in", gz=True)
    argv = [sys.executable, SCRIPT.name, "--input_data", str(raw)]
    argv += ["--training_data", str(tmp_path / "tr"), "--test_data", str(tmp_path / "te")]
    ok = subprocess.run(argv, cwd=SCRIPT.parent, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "40 training and 20 test images" in ok.stdout

    put(raw, "t10k-images-idx3-ubyte", b"\x00\x00\x08\x01" + bytes(12))
    bad = subprocess.run(argv, cwd=SCRIPT.parent, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "prepare_data: t10k-images-idx3-ubyte: wrong magic number 0x00000801, "
        "expected 0x00000803 (images)"
    ]


# --- every validation failure ------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_empty_file(tmp_path: Path, capsys, gz: bool) -> None:
    raw = make_batch(tmp_path / "in", gz=gz)
    put(raw, "train-labels-idx1-ubyte", b"", gz=gz)
    rc = run(raw, tmp_path / "out")
    file = "train-labels-idx1-ubyte" + (".gz" if gz else "")
    assert_one_line_failure(capsys, rc, tmp_path / "out", file, "empty file")


def test_truncated_gzip(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in", gz=True)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(capsys, rc, tmp_path / "out", path.name, "truncated gzip")


def test_corrupt_gzip_data(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in", gz=True)
    path = raw / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(capsys, rc, tmp_path / "out", path.name, "corrupt gzip data")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_wrong_magic(tmp_path: Path, capsys, gz: bool) -> None:
    raw = make_batch(tmp_path / "in")
    labels = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    bad = b"\x00\x00\x08\x03" + labels[4:]  # an images magic on a labels file
    put(raw, "t10k-labels-idx1-ubyte", gzip.compress(bad) if gz else bad, gz=gz)
    rc = run(raw, tmp_path / "out")
    file = "t10k-labels-idx1-ubyte" + (".gz" if gz else "")
    line = assert_one_line_failure(capsys, rc, tmp_path / "out", file, "wrong magic number")
    assert "0x00000803" in line and "expected 0x00000801" in line


def test_not_an_idx_file_at_all(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in")
    put(raw, "train-images-idx3-ubyte", b"<html>404 Not Found</html>")
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(capsys, rc, tmp_path / "out", "train-images-idx3-ubyte", "magic")


def test_count_mismatch(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in", n_train=40)
    labels = np.zeros(39, np.uint8)  # a well-formed file, one label short
    put(raw, "train-labels-idx1-ubyte", idx_bytes(labels))
    rc = run(raw, tmp_path / "out")
    line = assert_one_line_failure(
        capsys, rc, tmp_path / "out", "train-labels-idx1-ubyte", "39 labels", "40 images"
    )
    assert "train-images-idx3-ubyte" in line


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_label_out_of_range(tmp_path: Path, capsys, gz: bool) -> None:
    raw = make_batch(tmp_path / "in")
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[13] = 12
    data = idx_bytes(labels)
    put(raw, "t10k-labels-idx1-ubyte", gzip.compress(data) if gz else data, gz=gz)
    rc = run(raw, tmp_path / "out")
    file = "t10k-labels-idx1-ubyte" + (".gz" if gz else "")
    assert_one_line_failure(
        capsys, rc, tmp_path / "out", file, "label 12 at index 13", "out of range 0-9"
    )


def test_wrong_image_shape(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in")
    images = np.zeros((40, 32, 32), np.uint8)  # well-formed IDX, but CIFAR-sized
    put(raw, "train-images-idx3-ubyte", idx_bytes(images))
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(
        capsys, rc, tmp_path / "out", "train-images-idx3-ubyte", "32x32", "expected 28x28"
    )


def test_raw_file_longer_than_declared(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in")
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + bytes(784))
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(
        capsys, rc, tmp_path / "out", path.name, "header declares 40 images", "bytes"
    )


def test_gzip_holding_more_than_declared(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in")
    data = (raw / "t10k-images-idx3-ubyte").read_bytes() + bytes(784)
    put(raw, "t10k-images-idx3-ubyte", gzip.compress(data), gz=True)
    rc = run(raw, tmp_path / "out")
    file = "t10k-images-idx3-ubyte.gz"
    assert_one_line_failure(capsys, rc, tmp_path / "out", file, "holds more data")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_lying_header_does_not_allocate(tmp_path: Path, capsys, gz: bool) -> None:
    """A header claiming 4 billion images (3.4 TB) over 40 real ones: refused, memory bounded."""
    raw = make_batch(tmp_path / "in")
    real = (raw / "train-images-idx3-ubyte").read_bytes()
    data = images_header(0xFFFFFFFF) + real[16:]
    put(raw, "train-images-idx3-ubyte", gzip.compress(data) if gz else data, gz=gz)
    tracemalloc.start()
    try:
        rc = run(raw, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    file = "train-images-idx3-ubyte" + (".gz" if gz else "")
    assert_one_line_failure(capsys, rc, tmp_path / "out", file, "header declares 4294967295 images")
    assert peak < 16 * 2**20  # bounded by the chunk size, not by the header


def test_gzip_header_declaring_more_than_the_data_holds(tmp_path: Path, capsys) -> None:
    """Images and labels agree on 41, but the images stream ends after 40."""
    raw = make_batch(tmp_path / "in")
    images = (raw / "train-images-idx3-ubyte").read_bytes()
    labels = (raw / "train-labels-idx1-ubyte").read_bytes()
    put(raw, "train-images-idx3-ubyte", gzip.compress(images_header(41) + images[16:]), gz=True)
    put(raw, "train-labels-idx1-ubyte", labels_header(41) + labels[8:] + b"\x01")
    rc = run(raw, tmp_path / "out")
    expected = f"header declares 41 images ({16 + 41 * 784} bytes) but the file holds {len(images)}"
    assert_one_line_failure(capsys, rc, tmp_path / "out", "train-images-idx3-ubyte.gz", expected)


def test_missing_file(tmp_path: Path, capsys) -> None:
    raw = make_batch(tmp_path / "in")
    (raw / "t10k-images-idx3-ubyte").unlink()
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(capsys, rc, tmp_path / "out", "t10k-images-idx3-ubyte", "missing")


def test_failure_in_second_split_leaves_first_unwritten(tmp_path: Path, capsys) -> None:
    """Training data is valid, test labels are not: no split is written at all."""
    raw = make_batch(tmp_path / "in")
    labels = np.full(20, 200, np.uint8)
    put(raw, "t10k-labels-idx1-ubyte", idx_bytes(labels))
    (tmp_path / "out" / "train").mkdir(parents=True)
    rc = run(raw, tmp_path / "out")
    assert_one_line_failure(capsys, rc, tmp_path / "out", "t10k-labels-idx1-ubyte", "label 200")


# --- parse_header / peek_header (also used by the Function App) ---------------------------------


def test_parse_header_images_and_labels() -> None:
    header = pd.parse_header("train-images-idx3-ubyte", images_header(60000))
    assert header == pd.IdxHeader("images", 60000, 28, 28)
    assert (header.header_size, header.payload_size) == (16, 60000 * 784)
    assert header.total_size == 16 + 60000 * 784
    labels = pd.parse_header("t10k-labels-idx1-ubyte.gz", labels_header(10000) + b"\x01\x02")
    assert labels.kind == "labels" and labels.count == 10000
    assert labels.total_size == 8 + 10000 and labels.shape == (10000,)


@pytest.mark.parametrize(
    ("name", "head", "reason"),
    [
        ("train-images-idx3-ubyte", b"", "empty file"),
        ("train-images-idx3-ubyte", b"\x00\x00", "too short"),
        ("train-images-idx3-ubyte", images_header(5)[:12], "too short"),
        ("train-labels-idx1-ubyte", b"\x00\x00\x08\x01\x00", "too short"),
        ("train-images-idx3-ubyte", labels_header(5) + bytes(8), "wrong magic number 0x00000801"),
        ("train-labels-idx1-ubyte", images_header(5), "wrong magic number 0x00000803"),
        ("train-images-idx3-ubyte", b"\x1f\x8b\x08\x00" + bytes(12), "wrong magic"),
        ("train-images-idx3-ubyte", images_header(5, 28, 27), "28x27"),
        ("train-images-idx3-ubyte", images_header(0), "holds no images"),
        ("train-labels-idx1-ubyte", labels_header(0), "holds no labels"),
    ],
)
def test_parse_header_rejects(name: str, head: bytes, reason: str) -> None:
    with pytest.raises(pd.IdxError) as caught:
        pd.parse_header(name, head)
    assert caught.value.file == name
    assert reason in caught.value.reason
    assert str(caught.value) == f"{name}: {caught.value.reason}"


def test_peek_header_reads_the_start_of_raw_and_gzip_files(tmp_path: Path) -> None:
    paths = write_batch(tmp_path, 30, 10, seed=2)
    head = paths["train-images-idx3-ubyte"].read_bytes()[:1024]  # a partial gzip stream
    assert pd.peek_header("train-images-idx3-ubyte.gz", head) == pd.IdxHeader("images", 30, 28, 28)
    raw = gzip.decompress(paths["t10k-labels-idx1-ubyte"].read_bytes())
    assert pd.peek_header("t10k-labels-idx1-ubyte", raw[:16]).count == 10
    with pytest.raises(pd.IdxError, match="corrupt gzip"):
        pd.peek_header("x-images.gz", b"\x1f\x8b" + bytes(30))


def test_npy_header_is_what_numpy_reads(tmp_path: Path) -> None:
    for shape in [(3, 28, 28), (7,), (60000, 28, 28)]:
        header = pd.npy_header(shape)
        assert len(header) % 64 == 0
        path = tmp_path / "a.npy"
        path.write_bytes(header + bytes(int(np.prod(shape))))
        array = np.load(path, mmap_mode="r")
        assert array.shape == shape and array.dtype == np.uint8
