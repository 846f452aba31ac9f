"""The real-data download path accepts exactly the official content, however it was gzipped.

Small generated IDX files stand in for the real ones: their checksums replace the official sums,
and a loopback HTTP server plays the mirror, so no test needs the network or the real data.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from retrain.data import fashion_mnist as fashion_data
from retrain.data.fashion_mnist import FILE_NAMES, download_fashion_mnist, generate, idx_bytes


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def official(tmp_path, monkeypatch):
    """Four generated files as 'the official release': raw content, published .gz, and sums."""
    images, labels = generate(40, np.random.default_rng(3))
    raw = dict(zip(FILE_NAMES, [idx_bytes(images), idx_bytes(labels)] * 2, strict=True))
    published = {n: gzip.compress(data, mtime=1) for n, data in raw.items()}
    monkeypatch.setattr(fashion_data, "FASHION_MNIST_RAW_MD5", {n: _md5(d) for n, d in raw.items()})
    gz_sums = {n + ".gz": _md5(d) for n, d in published.items()}
    monkeypatch.setattr(fashion_data, "FASHION_MNIST_MD5", gz_sums)
    return raw, published


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A loopback HTTP server over a folder, as FASHION_MNIST_URL; yields (folder, requests)."""
    root = tmp_path / "mirror"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(
        fashion_data, "FASHION_MNIST_URL", f"http://127.0.0.1:{server.server_port}/"
    )
    yield root, requests
    server.shutdown()
    server.server_close()


def test_a_regzipped_copy_of_the_official_content_is_accepted_offline(official, mirror, tmp_path):
    raw, published = official
    _, requests = mirror
    folder = tmp_path / "debian"
    folder.mkdir()
    for name, data in raw.items():  # same content, other gzip header and level: other .gz sums
        regzipped = gzip.compress(data, compresslevel=9, mtime=123456)
        assert _md5(regzipped) != _md5(published[name])
        (folder / (name + ".gz")).write_bytes(regzipped)

    paths = download_fashion_mnist(folder, download=False)

    assert paths == {name: folder / (name + ".gz") for name in FILE_NAMES}
    assert requests == []


def test_uncompressed_official_files_are_accepted(official, tmp_path):
    raw, _ = official
    for name, data in raw.items():
        (tmp_path / name).write_bytes(data)
    assert download_fashion_mnist(tmp_path, download=False) == {n: tmp_path / n for n in FILE_NAMES}


def test_other_content_is_refused_offline_and_replaced_online(official, mirror, tmp_path):
    raw, published = official
    root, requests = mirror
    for name, data in published.items():
        (root / (name + ".gz")).write_bytes(data)
    folder = tmp_path / "data"
    folder.mkdir()
    for name, data in raw.items():  # one byte changed: a valid gzip of the wrong content
        (folder / (name + ".gz")).write_bytes(gzip.compress(data[:-1] + b"\x07"))

    with pytest.raises(RuntimeError, match=r"no train-images-idx3-ubyte\[\.gz\] with the official"):
        download_fashion_mnist(folder, download=False)

    paths = download_fashion_mnist(folder)
    assert sorted(requests) == sorted(f"/{n}.gz" for n in FILE_NAMES)
    for name, path in paths.items():
        assert gzip.decompress(path.read_bytes()) == raw[name]


def test_a_corrupted_download_is_refused_and_not_written(official, mirror, tmp_path):
    _, published = official
    root, _ = mirror
    for name, data in published.items():
        (root / (name + ".gz")).write_bytes(data)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not the images"))

    with pytest.raises(RuntimeError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        download_fashion_mnist(tmp_path / "new")
    assert not any(Path(tmp_path / "new").glob("train-images*"))
