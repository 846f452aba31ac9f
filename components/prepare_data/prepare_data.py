"""Validate the four Fashion-MNIST IDX files; write them as .npy arrays that load in milliseconds.

Input  ``--input_data``: a folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
       ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or ``.gz`` (gzip is
       recognised by its content; when both variants exist the raw file is used).
Output ``--training_data`` and ``--test_data``: each a folder with ``images.npy`` (uint8,
       N x 28 x 28), ``labels.npy`` (uint8, N) and ``meta.json`` (counts, class names, sources).

Every file is checked: IDX magic number, 28 x 28 images, image count equal to label count,
labels 0-9, and the size its header declares equal to the bytes it holds. A failure exits with
status 1 and one line on stderr, ``prepare_data: <file>: <reason>``, and leaves no output file.

The step streams: each file is inflated in bounded chunks straight into its .npy file, so its cost
is the decompression itself, and a header that lies about its size never sizes an allocation.
It imports no numpy (the .npy header is written here), which keeps start-up short and lets the
Function App import the header check without the training stack.

Public surface, also used by the Function App's cheap blob validation (this folder is all that
Azure ML uploads, so the module imports nothing from the project):

- ``IdxError(file, reason)``: a file failed validation; ``str()`` is the one-line message.
- ``IdxHeader``: kind (``images`` | ``labels``), count, rows, cols, ``header_size``,
  ``payload_size`` and ``total_size`` (what the uncompressed file must measure).
- ``parse_header(name, head)``: check the first bytes (16 suffice) of an uncompressed file.
- ``peek_header(name, prefix)``: the same from the first bytes of a raw *or gzip* file.
- ``FILE_NAMES``, ``CLASS_NAMES``, ``main(argv)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SPLITS = {"train": FILE_NAMES[:2], "test": FILE_NAMES[2:]}

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SIDE = 28
HEADER_MAX = 16  # bytes that hold any header we accept
CHUNK = 1 << 20  # bytes read or inflated per step: bounded memory, few Python calls
GZIP_MAGIC = b"\x1f\x8b"
DEFLATE_MAX_RATIO = 1032  # deflate never expands a compressed byte into more than this
VALID_LABELS = bytes(range(10))


class IdxError(Exception):
    """A file failed validation; the message is one line that names it."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares. Labels have ``rows == cols == 1``."""

    kind: str
    count: int
    rows: int
    cols: int

    @property
    def header_size(self) -> int:
        return 16 if self.kind == "images" else 8

    @property
    def payload_size(self) -> int:
        return self.count * self.rows * self.cols

    @property
    def total_size(self) -> int:
        return self.header_size + self.payload_size

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, self.rows, self.cols) if self.kind == "images" else (self.count,)


def parse_header(name: str, head: bytes) -> IdxHeader:
    """Parse and check the header at the start of the uncompressed IDX file ``name``.

    The kind expected (images or labels) comes from the name. Raises ``IdxError`` for an empty
    or short file, a wrong magic number, or images that are not 28 x 28.
    """
    kind = "labels" if "labels" in name else "images"
    magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    if not head:
        raise IdxError(name, "empty file")
    if len(head) < 4:
        raise IdxError(name, f"too short for an IDX header ({len(head)} bytes)")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise IdxError(name, f"wrong magic number 0x{found:08x}, expected 0x{magic:08x} ({kind})")
    size = 16 if kind == "images" else 8
    if len(head) < size:
        raise IdxError(name, f"too short for an IDX header ({len(head)} of {size} bytes)")
    count = int.from_bytes(head[4:8], "big")
    rows, cols = (int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big"))
    if kind == "labels":
        rows = cols = 1
    elif (rows, cols) != (SIDE, SIDE):
        raise IdxError(name, f"images are {rows}x{cols}, expected {SIDE}x{SIDE}")
    if count == 0:
        raise IdxError(name, f"holds no {kind}")
    return IdxHeader(kind, count, rows, cols)


def peek_header(name: str, prefix: bytes) -> IdxHeader:
    """``parse_header`` on the first bytes of a raw or gzip file (the first KiB is plenty)."""
    if prefix.startswith(GZIP_MAGIC):
        try:
            prefix = zlib.decompressobj(31).decompress(prefix, HEADER_MAX)
        except zlib.error as error:
            raise IdxError(name, f"corrupt gzip data ({error})") from None
    return parse_header(name, prefix[:HEADER_MAX])


# --- reading -----------------------------------------------------------------------------------


def find_inputs(folder: Path) -> dict[str, Path]:
    """Map each of the four base names to its file in ``folder`` (raw preferred over .gz)."""
    if not folder.is_dir():
        raise IdxError(str(folder), "input folder does not exist")
    found = {}
    for name in FILE_NAMES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            raise IdxError(name, f"missing from {folder} (expected {name} or {name}.gz)")
    return found


def _chunks(name: str, source: BinaryIO) -> Iterator[bytes]:
    """The uncompressed bytes of a raw or gzip file, in chunks of at most CHUNK bytes."""
    data = source.read(CHUNK)
    if not data:
        raise IdxError(name, "empty file")
    if not data.startswith(GZIP_MAGIC):
        while data:
            yield data
            data = source.read(CHUNK)
        return
    while data:  # one gzip member per turn (concatenated members are valid gzip)
        if not data.startswith(GZIP_MAGIC):
            raise IdxError(name, "unexpected bytes after the end of the gzip stream")
        inflater = zlib.decompressobj(31)
        while not inflater.eof:
            try:
                out = inflater.decompress(data, CHUNK)
                data = inflater.unconsumed_tail or source.read(CHUNK)
                if not data and not inflater.eof:
                    out += inflater.flush()
            except zlib.error as error:
                raise IdxError(name, f"corrupt gzip data ({error})") from None
            if out:
                yield out
            if not data and not inflater.eof:
                raise IdxError(name, "truncated gzip data (the stream ends early)")
        data = inflater.unused_data or source.read(CHUNK)


class _Input:
    """One open input file: its header checked, its payload streamed on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("rb")
        try:
            self.header, self.rest = self._read_header()
        except BaseException:
            self.file.close()
            raise

    def _read_header(self) -> tuple[IdxHeader, bytes]:
        """Check the header, and the declared size wherever it can be known before reading."""
        name = self.path.name
        compressed = self.file.read(2) == GZIP_MAGIC
        self.file.seek(0)
        self.chunks = _chunks(name, self.file)
        head = b""
        for chunk in self.chunks:
            head += chunk
            if len(head) >= HEADER_MAX:
                break
        header = parse_header(name, head)
        actual = self.path.stat().st_size
        if not compressed and actual != header.total_size:
            raise IdxError(name, _size_reason(header, f"{actual} bytes"))
        if compressed and header.total_size > actual * DEFLATE_MAX_RATIO:
            raise IdxError(name, _size_reason(header, f"{actual} compressed bytes, too few"))
        return header, head[header.header_size :]  # and the payload bytes already read

    def copy_payload(self, out: BinaryIO) -> bytes | None:
        """Write the payload to ``out``; return it too for labels (small, checked afterwards)."""
        expected = self.header.payload_size
        kept: list[bytes] | None = [] if self.header.kind == "labels" else None
        written = 0
        for chunk in _prepend(self.rest, self.chunks):
            written += len(chunk)
            if written > expected:  # stop reading: the header bounds what we accept
                raise IdxError(self.path.name, _size_reason(self.header, "more data"))
            out.write(chunk)
            if kept is not None:
                kept.append(chunk)
        if written < expected:
            total = self.header.header_size + written
            raise IdxError(self.path.name, _size_reason(self.header, f"{total} bytes"))
        return b"".join(kept) if kept is not None else None

    def close(self) -> None:
        self.file.close()


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _size_reason(header: IdxHeader, actual: str) -> str:
    declared = f"{header.count} {header.kind} ({header.total_size} bytes)"
    return f"header declares {declared} but the file holds {actual}"


# --- writing -----------------------------------------------------------------------------------


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy (format 1.0) header of a C-ordered uint8 array of ``shape``, 64-byte aligned."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = -(10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin-1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def check_labels(file: str, labels: bytes) -> None:
    """Every label must be a class index 0-9."""
    bad = labels.translate(None, VALID_LABELS)
    if bad:
        index = labels.index(bad[:1])
        raise IdxError(file, f"label {bad[0]} at index {index} is out of range 0-9")


def _meta(split: str, images: _Input, labels: _Input, label_bytes: bytes) -> dict:
    return {
        "split": split,
        "count": images.header.count,
        "image_shape": [SIDE, SIDE],
        "dtype": "uint8",
        "files": {"images": "images.npy", "labels": "labels.npy"},
        "class_names": list(CLASS_NAMES),
        "class_counts": [label_bytes.count(bytes([k])) for k in range(10)],
        "source": {"images": images.path.name, "labels": labels.path.name},
    }


def prepare(input_dir: Path, outputs: dict[str, Path]) -> dict[str, dict]:
    """Validate the four files and write each split; return the meta of each split.

    All headers are checked before any payload is read. The test split is converted on a second
    thread while this one converts the training split (zlib and file writes release the GIL).
    Outputs are written under temporary names and renamed only once both splits are valid, so a
    failed run leaves nothing that looks like a result.
    """
    paths = find_inputs(input_dir)
    inputs: dict[str, _Input] = {}
    written: dict[str, list[tuple[Path, Path]] | BaseException] = {}
    try:
        for name, path in paths.items():
            inputs[name] = _Input(path)
        splits = {split: (inputs[a], inputs[b]) for split, (a, b) in SPLITS.items()}
        for images, labels in splits.values():
            if images.header.count != labels.header.count:
                reason = (
                    f"holds {labels.header.count} labels but {images.path.name} holds "
                    f"{images.header.count} images"
                )
                raise IdxError(labels.path.name, reason)

        def convert(split: str) -> None:
            try:
                written[split] = _write_split(split, *splits[split], outputs[split])
            except BaseException as error:  # re-raised on the main thread below
                written[split] = error

        worker = threading.Thread(target=convert, args=("test",))
        worker.start()
        convert("train")
        worker.join()
        for result in written.values():
            if isinstance(result, BaseException):
                raise result
        for split in SPLITS:  # meta.json comes last in each folder: it marks a complete split
            for tmp, final in written[split]:  # type: ignore[union-attr]
                os.replace(tmp, final)
        return {split: json.loads((outputs[split] / "meta.json").read_text()) for split in SPLITS}
    finally:
        for source in inputs.values():
            source.close()
        for result in written.values():
            for tmp, _ in result if isinstance(result, list) else ():
                tmp.unlink(missing_ok=True)


def _write_split(
    split: str, images: _Input, labels: _Input, folder: Path
) -> list[tuple[Path, Path]]:
    """Write one split under temporary names; return (temporary, final) pairs, meta.json last."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    label_bytes = b""
    try:
        for field, source in (("images", images), ("labels", labels)):
            tmp = folder / f".{field}.npy.tmp"
            pairs.append((tmp, folder / f"{field}.npy"))
            with tmp.open("wb") as out:
                out.write(npy_header(source.header.shape))
                payload = source.copy_payload(out)
            if payload is not None:
                check_labels(source.path.name, payload)
                label_bytes = payload
        tmp = folder / ".meta.json.tmp"
        pairs.append((tmp, folder / "meta.json"))
        meta = _meta(split, images, labels, label_bytes)
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    except BaseException:
        for tmp, _ in pairs:
            tmp.unlink(missing_ok=True)
        raise
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input_data", type=Path, required=True, help="folder of the IDX files")
    parser.add_argument("--training_data", type=Path, required=True, help="output folder (train)")
    parser.add_argument("--test_data", type=Path, required=True, help="output folder (test)")
    args = parser.parse_args(argv)
    if args.training_data.resolve() == args.test_data.resolve():
        parser.error("--training_data and --test_data must be different folders")
    try:
        metas = prepare(args.input_data, {"train": args.training_data, "test": args.test_data})
    except IdxError as error:
        print(f"prepare_data: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"prepare_data: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(
        f"prepare_data: {metas['train']['count']} training and {metas['test']['count']} test "
        f"images written to {args.training_data} and {args.test_data}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
