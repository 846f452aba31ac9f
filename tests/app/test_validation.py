"""Cheap validation at the trigger, on Azurite: labels out of range and gzip files whose size
cannot match their header (the wrapped-ISIZE bomb) are Rejected naming the file; nothing is
submitted. Honest files of every shape still pass."""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib

import pytest
from apphelpers import N_TEST, N_TRAIN, batch_files, idx_images, idx_labels, upload

from retrain.backends.base import RunStatus
from retrain.errors import InvalidBatchError
from retrain.landing import validation
from retrain.landing.batches import Batch, select_files
from retrain.landing.validation import validate_batch
from retrain.storage import BlobStore

GIB4 = 2**32
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
ZEROS = bytes(1 << 20)  # the bomb's repeated unit: 1 MiB of zeros


def zero_tail_gzip(payload: bytes, zero_mib: int, *, crc: int | None = None) -> bytes:
    """A genuine gzip file of ``payload`` followed by ``zero_mib`` MiB of zeros, built in
    milliseconds: after a full flush, deflate encodes each MiB of zeros as the same bytes, so
    one encoded MiB is repeated. ``crc`` is the CRC-32 of the whole content (computed if None)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(payload) + deflate.flush(zlib.Z_FULL_FLUSH)
    unit = deflate.compress(ZEROS) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert deflate.compress(ZEROS) + deflate.flush(zlib.Z_FULL_FLUSH) == unit
    last = deflate.flush(zlib.Z_FINISH)
    if crc is None:
        crc = zlib.crc32(payload)
        for _ in range(zero_mib):
            crc = zlib.crc32(ZEROS, crc)
    size = len(payload) + zero_mib * len(ZEROS)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, mtime 0
    trailer = struct.pack("<II", crc, size % GIB4)
    return header + first + unit * zero_mib + last + trailer


@functools.cache
def wrapped_bomb() -> bytes:
    """Valid training images, then 4 GiB of zeros: its ISIZE equals the size the header
    declares, because ISIZE is the size mod 2**32. About 4 MB; the CRC takes ~2 s, once."""
    return zero_tail_gzip(idx_images(N_TRAIN), GIB4 // len(ZEROS))


def test_the_bomb_builder_makes_what_it_says():
    small = zero_tail_gzip(b"IDX!", 3)
    assert gzip.decompress(small) == b"IDX!" + bytes(3 << 20)
    bomb = wrapped_bomb()
    assert len(bomb) < 5_000_000
    declared = len(idx_images(N_TRAIN))
    assert int.from_bytes(bomb[-4:], "little") == declared  # the trailer "agrees"
    inflater = zlib.decompressobj(31)
    assert len(inflater.decompress(bomb[:200_000], 10 * declared)) == 10 * declared  # it lies


def _batch(store: BlobStore, container: str, name: str, files: dict[str, bytes]) -> Batch:
    upload(store, container, name, files)
    found, missing = select_files(name, store.list(container, f"{name}/"))
    assert not missing
    return Batch(container, name, found)


def _with(replaced: dict[str, bytes], gz: bool = True) -> dict[str, bytes]:
    """A valid batch with some files replaced (by file name; the other variant is dropped)."""
    files = batch_files(gz=gz)
    for file in replaced:
        base = file.removesuffix(".gz")
        files = {name: data for name, data in files.items() if name.removesuffix(".gz") != base}
    return {**files, **replaced}


def _bad_labels(count: int, at: int, value: int) -> bytes:
    labels = bytearray(idx_labels(count))
    labels[8 + at] = value
    return bytes(labels)


INVALID = {
    "label out of range (gzip)": (
        "t10k-labels-idx1-ubyte.gz",
        gzip.compress(_bad_labels(N_TEST, 4, 42), mtime=0),
        "label 42 at index 4 is out of range 0-9",
    ),
    "label out of range (raw)": (
        "train-labels-idx1-ubyte",
        _bad_labels(N_TRAIN, 0, 10),
        "label 10 at index 0 is out of range 0-9",
    ),
    "label out of range (multi-member gzip)": (
        "train-labels-idx1-ubyte.gz",
        gzip.compress(idx_labels(N_TRAIN)[:12], mtime=0)
        + gzip.compress(bytes([3] * (N_TRAIN - 5) + [255]), mtime=0),
        "label 255 at index 11 is out of range 0-9",
    ),
    "labels inflating past the declared size": (
        "train-labels-idx1-ubyte.gz",
        gzip.compress(idx_labels(N_TRAIN) + b"\x01", mtime=0),
        "but the file holds more data",
    ),
    "4 GiB bomb with a wrapped ISIZE": (
        "train-images-idx3-ubyte.gz",
        None,  # wrapped_bomb(), built on first use
        "compressed bytes, more than deflate makes of that",
    ),
    "header declaring more than 1032 bytes per compressed byte": (
        "t10k-images-idx3-ubyte.gz",
        gzip.compress(idx_images(N_TEST, declared=60_000), mtime=0),
        "compressed bytes, too few to inflate to that",
    ),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_an_invalid_file_is_named_with_the_reason(store, settings, case):
    file, data, reason = INVALID[case]
    batch = _batch(store, settings.landing_container, "b", _with({file: data or wrapped_bomb()}))
    with pytest.raises(InvalidBatchError) as caught:
        validate_batch(store, batch)
    assert caught.value.file == file
    assert reason in caught.value.reason, caught.value.reason


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_the_blob_trigger_rejects_bad_labels_and_submits_nothing(service, store, backend, gz):
    name = "t10k-labels-idx1-ubyte" + (".gz" if gz else "")
    bad = _bad_labels(N_TEST, N_TEST - 1, 200)
    files = _with({name: gzip.compress(bad, mtime=0) if gz else bad}, gz=gz)
    paths = upload(store, service.settings.landing_container, "bad-labels", files)

    outcomes = [service.handle_blob(path) for path in paths]  # each sees the whole batch

    assert [o.action for o in outcomes] == ["rejected"] + ["duplicate"] * 3, outcomes
    run = service.get_run(outcomes[0].run_id)
    assert run.status is RunStatus.REJECTED
    assert run.reason == f"{name}: label 200 at index {N_TEST - 1} is out of range 0-9"
    assert backend.submits == []


def test_the_blob_trigger_rejects_the_wrapped_bomb(service, store, backend):
    files = _with({"train-images-idx3-ubyte.gz": wrapped_bomb()})
    paths = upload(store, service.settings.landing_container, "bomb", files)

    outcomes = [service.handle_blob(path) for path in paths]

    assert [o.action for o in outcomes] == ["rejected"] + ["duplicate"] * 3, outcomes
    run = service.get_run(outcomes[0].run_id)
    assert run.status is RunStatus.REJECTED
    assert run.reason.startswith("train-images-idx3-ubyte.gz: header declares 12 images")
    assert backend.submits == []


def _random_images(count: int) -> bytes:
    return idx_images(count)[:16] + os.urandom(count * 28 * 28)


HONEST = {
    "stored, not compressed (level 0)": {
        "train-images-idx3-ubyte.gz": gzip.compress(_random_images(N_TRAIN), 0, mtime=0)
    },
    "incompressible images": {
        "train-images-idx3-ubyte.gz": gzip.compress(_random_images(N_TRAIN), mtime=0)
    },
    "highly compressible images (zeros)": {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_images(2000), mtime=0),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_labels(2000), mtime=0),
    },
    "gzip header with a long file name": {
        "t10k-labels-idx1-ubyte.gz": b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\xff"
        + b"n" * 20_000
        + b"\x00"
        + gzip.compress(idx_labels(N_TEST), mtime=0)[10:]
    },
    "labels as two gzip members": {
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_labels(N_TEST)[:10], mtime=0)
        + gzip.compress(idx_labels(N_TEST)[10:], mtime=0)
    },
    "every class label 0-9": {
        "train-labels-idx1-ubyte": idx_labels(N_TRAIN),
        "train-images-idx3-ubyte": idx_images(N_TRAIN),
    },
}


@pytest.mark.parametrize("case", list(HONEST), ids=list(HONEST))
def test_honest_files_pass(store, settings, case):
    batch = _batch(store, settings.landing_container, "ok", _with(HONEST[case]))
    headers = validate_batch(store, batch)
    assert {h.kind for h in headers.values()} == {"images", "labels"}


def test_labels_over_the_read_limit_get_the_cheap_checks_only(store, settings, monkeypatch):
    """Past LABELS_READ_MAX a label file is not read whole: prepare_data checks its labels."""
    monkeypatch.setattr(validation, "LABELS_READ_MAX", len(idx_labels(N_TRAIN)) - 1)
    bad = gzip.compress(_bad_labels(N_TRAIN, 3, 77), mtime=0)
    batch = _batch(store, settings.landing_container, "big", _with({TRAIN_LABELS: bad}))
    assert validate_batch(store, batch)["train-labels-idx1-ubyte"].count == N_TRAIN

    monkeypatch.setattr(validation, "LABELS_READ_MAX", len(idx_labels(N_TRAIN)))
    with pytest.raises(InvalidBatchError, match="label 77 at index 3"):
        validate_batch(store, batch)
