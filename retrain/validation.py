"""Cheap validation of a complete landed batch, without downloading whole files.

Per file, one ranged read of the first few KB (gzip is recognised by its content and inflated
just far enough to see the IDX header) and, for gzip, one of the last 4 bytes: the gzip trailer's
ISIZE, the uncompressed size mod 2**32. Then the header checks of ``prepare_data`` itself (magic
number, 28x28 images, a non-zero count), the size the header declares against the real size, and
image count == label count per split. A lying header is caught by the size check; nothing is ever
sized from a header.

Limit: ISIZE covers a gzip file's last member only, so a multi-member gzip file (rare: made by
concatenating .gz files) is rejected here although ``prepare_data`` would read it.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor

from components.prepare_data.prepare_data import IdxError, IdxHeader, parse_header

from .batches import SPLITS, Batch
from .errors import InvalidBatchError, TransientError
from .storage import BlobInfo, BlobStore, ETagMismatch

GZIP_MAGIC = b"\x1f\x8b"
HEADER_SIZE = 16  # the longest IDX header we accept (images); labels use 8
HEAD_READ = 4096  # bytes read first: a gzip header plus enough deflate data for 16 bytes
HEAD_READ_MAX = 65536  # second try, for a gzip header with a long name, comment or extra field
GZIP_MIN = 18  # a gzip member's smallest size: 10-byte header + 8-byte trailer


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
    """Header and size checks of one blob, pinned to the ETag it was listed with."""
    file = _file(batch, blob)
    if blob.size == 0:
        raise InvalidBatchError(file, "empty file")
    try:
        head = _read(store, container, blob, 0, HEAD_READ)
        if not head.startswith(GZIP_MAGIC):
            header = _parse(file, head)
            _check_size(file, header, blob.size, "holds")
            return header
        if blob.size < GZIP_MIN:
            raise InvalidBatchError(file, f"truncated gzip file ({blob.size} bytes)")
        data = _inflate_head(file, head, complete=blob.size <= HEAD_READ)
        if len(data) < HEADER_SIZE and blob.size > HEAD_READ:
            head = _read(store, container, blob, 0, HEAD_READ_MAX)
            data = _inflate_head(file, head, complete=blob.size <= HEAD_READ_MAX)
        header = _parse(file, data)
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
        raise InvalidBatchError(
            file,
            f"header declares {header.count} {header.kind} ({header.total_size} bytes) "
            f"but the file {verb} {actual} bytes",
        )
