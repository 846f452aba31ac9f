"""Cheap validation of a complete landed batch: what ``prepare_data`` would reject, caught
before anything is submitted, without downloading the image files.

Per file, one ranged read of the first few KB (gzip is recognised by its content and inflated
just far enough to see the IDX header), then the header checks of ``prepare_data`` itself (magic
number, 28x28 images, a non-zero count) and image count == label count per split. Sizes:

- raw file: its size must be the size its header declares;
- gzip file: its compressed size must fit the declared size both ways. Deflate turns one byte
  into at most ``DEFLATE_MAX_RATIO`` (1032) bytes, so fewer compressed bytes cannot hold it; and
  deflate never makes a stream much larger than its input (at most 9 bits a byte, plus gzip's
  header), so more compressed bytes hold more data than declared. The second bound is what
  stops a "bomb" whose gzip trailer wraps: ISIZE is the size mod 2**32, so 4 GiB plus the
  declared size has a matching trailer, but its ~4 MB of zeros are far too many for a small
  declared size. Then one more ranged read, the trailer's ISIZE, must equal the declared size
  mod 2**32.
- label files up to ``LABELS_READ_MAX`` (Fashion-MNIST's are 60 KB) are read and inflated whole,
  bounded by the declared size: exact size, and every label 0-9 (``prepare_data.check_labels``).

A lying header is caught by the size checks; nothing is ever sized from a header.

Limits: ISIZE covers a gzip file's last member only, so a multi-member gzip image file (rare:
made by concatenating .gz files) is rejected here although ``prepare_data`` would read it. A gzip
image file of over ~4 MB could hold 4 GiB more than it declares with a matching ISIZE; telling
would mean inflating it all, so ``prepare_data`` does that, stopping at the declared size.
"""

from __future__ import annotations

import gzip
import io
import zlib
from concurrent.futures import ThreadPoolExecutor

from components.prepare_data.prepare_data import (
    DEFLATE_MAX_RATIO,
    IdxError,
    IdxHeader,
    check_labels,
    parse_header,
)

from ..errors import InvalidBatchError, TransientError
from ..storage import BlobInfo, BlobStore, ETagMismatch
from .batches import SPLITS, Batch

GZIP_MAGIC = b"\x1f\x8b"
HEADER_SIZE = 16  # the longest IDX header we accept (images); labels use 8
HEAD_READ = 4096  # bytes read first: a gzip header plus enough deflate data for 16 bytes
HEAD_READ_MAX = 65536  # second try, for a gzip header with a long name, comment or extra field
GZIP_MIN = 18  # a gzip member's smallest size: 10-byte header + 8-byte trailer
LABELS_READ_MAX = 1 << 20  # label files up to 1 MiB (a million labels) are read whole


def validate_batch(store: BlobStore, batch: Batch) -> dict[str, IdxHeader]:
    """Check every file of ``batch``; returns each file's header, or raises InvalidBatchError."""
    with ThreadPoolExecutor(max_workers=len(batch.files)) as pool:
        futures = {
            base: pool.submit(check_file, store, batch.container, batch.name, blob)
            for base, blob in batch.files.items()
        }
        headers = {base: future.result() for base, future in futures.items()}
    for images, labels in SPLITS.values():
        n_images, n_labels = headers[images].count, headers[labels].count
        if n_images != n_labels:
            raise InvalidBatchError(
                _file(batch.name, batch.files[labels]),
                f"{n_labels} labels for {n_images} images in "
                f"{_file(batch.name, batch.files[images])}",
            )
    return headers


def check_file(store: BlobStore, container: str, batch: str, blob: BlobInfo) -> IdxHeader:
    """Header and size checks of one blob (labels: every label), pinned to its listed ETag."""
    file = _file(batch, blob)
    if blob.size == 0:
        raise InvalidBatchError(file, "empty file")
    try:
        head = _read(store, container, blob, 0, HEAD_READ)
        compressed = head.startswith(GZIP_MAGIC)
        if not compressed:
            header = _parse(file, head)
            _check_size(file, header, blob.size, "holds")
        else:
            if blob.size < GZIP_MIN:
                raise InvalidBatchError(file, f"truncated gzip file ({blob.size} bytes)")
            data = _inflate_head(file, head, complete=blob.size <= HEAD_READ)
            if len(data) < HEADER_SIZE and blob.size > HEAD_READ:
                head = _read(store, container, blob, 0, HEAD_READ_MAX)
                data = _inflate_head(file, head, complete=blob.size <= HEAD_READ_MAX)
            header = _parse(file, data)
            _check_compressed_size(file, header, blob.size)
        if header.kind == "labels" and header.total_size <= LABELS_READ_MAX:
            whole = head if len(head) == blob.size else _read(store, container, blob, 0, blob.size)
            _check_labels(file, header, _inflate_all(file, header, whole) if compressed else whole)
        elif compressed:
            trailer = _read(store, container, blob, blob.size - 4, 4)
            _check_size(file, header, int.from_bytes(trailer, "little"), "inflates to", modulo=True)
        return header
    except ETagMismatch:
        raise TransientError(f"{file}: changed while being validated; retry") from None


def _file(batch: str, blob: BlobInfo) -> str:
    """The name a reason gives for a blob: its file name within the batch."""
    return blob.name[len(batch) + 1 :] if blob.name.startswith(f"{batch}/") else blob.name


def _read(store: BlobStore, container: str, blob: BlobInfo, offset: int, length: int) -> bytes:
    return store.read_range(
        container, blob.name, offset, min(length, blob.size - offset), etag=blob.etag
    )


def _inflate_head(file: str, head: bytes, *, complete: bool) -> bytes:
    """The first uncompressed bytes of a gzip file, from its first compressed bytes."""
    inflater = zlib.decompressobj(31)
    try:
        data = inflater.decompress(head, HEADER_SIZE)
    except zlib.error as exc:
        raise InvalidBatchError(file, f"corrupt gzip data ({exc})") from None
    if len(data) < HEADER_SIZE and complete and not inflater.eof:
        raise InvalidBatchError(file, "truncated gzip data (it ends before the IDX header)")
    return data


def _inflate_all(file: str, header: IdxHeader, data: bytes) -> bytes:
    """A whole (small) gzip file inflated, stopping one byte past the size its header declares."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as source:
            return source.read(header.total_size + 1)
    except EOFError:
        raise InvalidBatchError(file, "truncated gzip data (the stream ends early)") from None
    except (OSError, zlib.error) as exc:
        raise InvalidBatchError(file, f"corrupt gzip data ({exc})") from None


def _check_labels(file: str, header: IdxHeader, data: bytes) -> None:
    """A whole label file: exactly the declared size, and every label a class index 0-9."""
    if len(data) > header.total_size:
        raise InvalidBatchError(file, f"{_declares(header)} but the file holds more data")
    _check_size(file, header, len(data), "holds")
    try:
        check_labels(file, data[header.header_size :])
    except IdxError as exc:
        raise InvalidBatchError(file, exc.reason) from None


def _parse(file: str, head: bytes) -> IdxHeader:
    try:
        return parse_header(file, head[:HEADER_SIZE])
    except IdxError as exc:
        raise InvalidBatchError(file, exc.reason) from None


def _check_size(
    file: str, header: IdxHeader, actual: int, verb: str, *, modulo: bool = False
) -> None:
    """The size the header declares must be the real (uncompressed) size."""
    expected = header.total_size % 2**32 if modulo else header.total_size
    if actual != expected:
        raise InvalidBatchError(file, f"{_declares(header)} but the file {verb} {actual} bytes")


def _check_compressed_size(file: str, header: IdxHeader, compressed: int) -> None:
    """A gzip file's size must be one that could inflate to the declared size (see above)."""
    declared = header.total_size
    if declared > compressed * DEFLATE_MAX_RATIO:
        reason = f"{compressed} compressed bytes, too few to inflate to that"
    elif compressed > declared + declared // 8 + HEAD_READ_MAX:
        reason = f"{compressed} compressed bytes, more than deflate makes of that"
    else:
        return
    raise InvalidBatchError(file, f"{_declares(header)} but the file holds {reason}")


def _declares(header: IdxHeader) -> str:
    return f"header declares {header.count} {header.kind} ({header.total_size} bytes)"
