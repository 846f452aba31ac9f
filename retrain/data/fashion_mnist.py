"""Fashion-MNIST-format IDX batches: generated offline at any size, or the real files when online.

The generator draws each class as a simple silhouette (a T-shirt is a body with short sleeves, a
trouser two legs, a boot a shaft on a foot...), in a few jittered variants per class, then gives
every image a random shift, an intensity, a texture and noise, and blends a faint second
silhouette into some. A small CNN learns it to more than 90% in an epoch or two on a few thousand
images, but not to 100%: tops (T-shirt, pullover, coat, shirt) differ only in details, as in the
real data set.

Files are written in the IDX format of the real data (big-endian header, uint8 payload), so the
same ``prepare_data`` step reads both::

    images: magic 0x00000803, count, 28, 28, then count*28*28 bytes
    labels: magic 0x00000801, count, then count bytes (0-9)
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

# The file names and classes are prepare_data's: the format contract lives with its reader.
from components.prepare_data.prepare_data import CLASS_NAMES, FILE_NAMES

__all__ = ["CLASS_NAMES", "FILE_NAMES", "download_fashion_mnist", "write_batch"]

SIDE = 28
SHIFT = 2  # pixels of random translation each way
VARIANTS = 12  # jittered silhouettes per class
GZIP_LEVEL = 1  # fast to write; decompression speed barely depends on it

# The real files (zalandoresearch/fashion-mnist), with the MD5 sums torchvision checks too: of
# each .gz as published, and of its uncompressed content. Other copies of the same content (the
# Debian package dataset-fashion-mnist) were compressed again, with other gzip headers, so only
# the second sum matches them.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def write_batch(
    folder: Path, n_train: int = 6000, n_test: int = 1000, *, seed: int = 0, gzip: bool = True
) -> dict[str, Path]:
    """Write the four IDX files (name + '.gz' when gzip) into folder; return {base_name: path}.

    Train and test come from the same distribution but from different random draws, so test
    accuracy measures generalisation, not memory.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prototypes = _prototypes(np.random.default_rng([seed, 1]))
    train_x, train_y = generate(n_train, rng, prototypes)
    test_x, test_y = generate(n_test, rng, prototypes)
    arrays = dict(zip(FILE_NAMES, (train_x, train_y, test_x, test_y), strict=True))
    paths = {}
    for name, array in arrays.items():
        path = folder / (name + ".gz" if gzip else name)
        write_idx(path, array, gzip=gzip)
        paths[name] = path
    return paths


def generate(
    n: int, rng: np.random.Generator, prototypes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` images (uint8, n x 28 x 28) and balanced labels (uint8, 0-9)."""
    if prototypes is None:
        prototypes = _prototypes(rng)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = np.empty((n, SIDE, SIDE), np.uint8)
    textures = _textures(rng)
    for start in range(0, n, 8192):  # bounded temporaries at any size
        stop = min(n, start + 8192)
        images[start:stop] = _render(labels[start:stop], rng, prototypes, textures)
    return images, labels


def download_fashion_mnist(folder: Path, *, download: bool = True) -> dict[str, Path]:
    """The real four files in ``folder``, verified; those missing are fetched (online only).

    A file is kept when its content is the official one: the published ``.gz``, any other gzip
    of the same content (the Debian copies), or the uncompressed file. Raises ``RuntimeError``
    with one line when a file is missing or wrong and cannot be fetched (offline, or
    ``download=False``), or when what was fetched does not match its checksum.
    """
    folder = Path(folder)
    paths = {}
    for name in FILE_NAMES:
        found = next(
            (p for p in _candidates(folder, name) if _is_official(name, p.read_bytes())), None
        )
        if found is None:
            if not download:
                raise RuntimeError(
                    f"{folder}: no {name}[.gz] with the official content (see docs/components.md "
                    "for where to get the real files)"
                )
            found = _fetch(folder, name)
        paths[name] = found
    return paths


def _candidates(folder: Path, name: str) -> list[Path]:
    return [p for p in (folder / (name + ".gz"), folder / name) if p.is_file()]


def _is_official(name: str, data: bytes) -> bool:
    """Whether ``data`` is the official file, gzipped (any header) or not."""
    digest = _md5(data)
    if digest in (FASHION_MNIST_MD5[name + ".gz"], FASHION_MNIST_RAW_MD5[name]):
        return True
    if not data.startswith(b"\x1f\x8b"):
        return False
    try:
        return _md5(gzip_module.decompress(data)) == FASHION_MNIST_RAW_MD5[name]
    except (OSError, EOFError, zlib.error):
        return False


def _fetch(folder: Path, name: str) -> Path:
    url = FASHION_MNIST_URL + name + ".gz"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise RuntimeError(
            f"cannot download {url} (offline?): {error}; "
            "use write_batch() for a generated batch instead"
        ) from error
    if not _is_official(name, data):
        raise RuntimeError(f"{name}.gz: checksum mismatch, download corrupted")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name + ".gz")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# --- rendering ---------------------------------------------------------------------------------


def _render(
    labels: np.ndarray, rng: np.random.Generator, prototypes: np.ndarray, textures: np.ndarray
) -> np.ndarray:
    """Draw one image per label: shifted silhouette, texture, intensity, faint blend, noise."""
    n = len(labels)
    span = 2 * SHIFT + 1
    windows = np.lib.stride_tricks.sliding_window_view(prototypes, (SIDE, SIDE), axis=(2, 3))
    variant = rng.integers(0, VARIANTS, n)
    dy, dx = rng.integers(0, span, (2, n))
    x = windows[labels, variant, dy, dx]  # (n, 28, 28) float32, a copy

    texture = textures[rng.integers(0, len(textures), n)]
    x *= 1.0 - rng.uniform(0.0, 0.45, (n, 1, 1)).astype(np.float32) * texture
    x *= rng.uniform(0.5, 1.0, (n, 1, 1)).astype(np.float32)

    # A faint silhouette of another class in some images: the hard cases.
    other = (labels + rng.integers(1, 10, n)) % 10
    ghost = windows[other, rng.integers(0, VARIANTS, n), SHIFT, SHIFT]
    alpha = rng.uniform(0.0, 0.5, (n, 1, 1)).astype(np.float32)
    alpha *= rng.random((n, 1, 1)) < 0.3
    x = np.maximum(x, alpha * ghost)

    # Sensor-like noise on the garment only: the background stays clean, as in the real files.
    x += rng.standard_normal((n, SIDE, SIDE), np.float32) * np.float32(0.08) * (x > 0.02)
    np.clip(x, 0.0, 1.0, out=x)
    return (x * 255.0 + 0.5).astype(np.uint8)


def _textures(rng: np.random.Generator, count: int = 32) -> np.ndarray:
    """Stripe and check patterns in [0, 1] that fabrics vary by."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    f = rng.uniform(0.1, 0.5, (count, 2, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1)).astype(np.float32)
    waves = np.sin(2 * np.pi * (f[:, 0] * yy + f[:, 1] * xx) + phase)
    return (0.5 + 0.5 * waves).astype(np.float32)


def _prototypes(rng: np.random.Generator) -> np.ndarray:
    """(10, VARIANTS, 28+2*SHIFT, 28+2*SHIFT) float32 silhouettes, padded for shifting."""
    pad = SIDE + 2 * SHIFT
    out = np.zeros((10, VARIANTS, pad, pad), np.float32)
    for label in range(10):
        for v in range(VARIANTS):
            mask = _SHAPES[label](lambda a, b: float(rng.uniform(a, b)))
            shade = rng.uniform(0.6, 1.0)
            out[label, v, SHIFT : SHIFT + SIDE, SHIFT : SHIFT + SIDE] = mask * shade
    return out


_Y, _X = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)


def _box(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Soft-edged rectangle (anti-aliased by one pixel)."""
    fx = np.clip(np.minimum(_X - x0, x1 - _X) + 0.5, 0, 1)
    fy = np.clip(np.minimum(_Y - y0, y1 - _Y) + 0.5, 0, 1)
    return fx * fy


def _torso(u, sleeve: float, width: float = 0.0) -> np.ndarray:
    """Body plus sleeves of length ``sleeve`` (rows); the shared shape of all tops."""
    half = u(5.0, 6.5) + width
    top, bottom = u(4, 6), u(23, 26)
    body = _box(14 - half, 14 + half, top, bottom)
    reach = u(4.0, 5.5) + width / 2
    shoulders = _box(14 - half - reach, 14 + half + reach, top + 0.5, top + 4)
    gap = u(0.8, 1.4)  # the armpit: sleeves hang apart from the body
    left = _box(14 - half - reach, 14 - half - gap, top + 0.5, top + sleeve)
    right = _box(14 + half + gap, 14 + half + reach, top + 0.5, top + sleeve)
    return np.maximum(np.maximum(body, shoulders), np.maximum(left, right))


def _tshirt(u) -> np.ndarray:
    return _torso(u, sleeve=u(5, 8)) * (1 - 0.6 * _box(12, 16, 3, u(5, 7)))  # round neck


def _pullover(u) -> np.ndarray:
    return _torso(u, sleeve=u(17, 20))


def _coat(u) -> np.ndarray:
    opening = 1 - 0.7 * _box(13.4, 14.6, 6, 26)  # zip / buttons line down the front
    return _torso(u, sleeve=u(18, 21), width=u(0.5, 1.5)) * opening


def _shirt(u) -> np.ndarray:
    collar = 1 - 0.6 * np.clip(1 - np.abs(_X - 14) / 2.5 - (_Y - 4) / 5, 0, 1)  # V collar
    pocket = 1 - 0.3 * _box(u(15, 16), u(18, 19), 9, 12)
    return _torso(u, sleeve=u(14, 19)) * collar * pocket


def _trouser(u) -> np.ndarray:
    gap = u(0.8, 1.8)
    leg = u(3.5, 5.0)
    waist = _box(14 - gap - leg, 14 + gap + leg, 2, u(7, 9))
    legs = np.maximum(
        _box(14 - gap - leg, 14 - gap, 2, u(25, 27)), _box(14 + gap, 14 + gap + leg, 2, u(25, 27))
    )
    return np.maximum(waist, legs)


def _dress(u) -> np.ndarray:
    top, bottom = u(2, 4), u(25, 27)
    flare = u(0.25, 0.45)
    half = u(2.5, 4.0) + np.clip(_Y - top, 0, None) * flare
    inside = np.clip(half - np.abs(_X - 14) + 0.5, 0, 1)
    return inside * _box(0, 28, top, bottom)


def _sandal(u) -> np.ndarray:
    sole = _box(2, 26, u(20, 21), 23)
    period = u(2.5, 3.5)
    straps = (np.sin(2 * np.pi * _X / period) > 0.2).astype(np.float32)
    upper = straps * _box(u(3, 5), u(22, 25), u(13, 15), 21)
    return np.maximum(sole, upper * 0.9)


def _sneaker(u) -> np.ndarray:
    heel = u(10, 13)
    toe = u(16, 18)
    top = heel + (toe - heel) * _X / 27  # slopes down toward the toe
    shoe = np.clip(_Y - top + 0.5, 0, 1) * _box(u(1, 3), u(25, 27), 0, u(22, 23))
    laces = 1 - 0.4 * _box(10, 20, heel + 1, heel + 3)
    return shoe * laces


def _bag(u) -> np.ndarray:
    top = u(9, 12)
    body = _box(u(3, 5), u(23, 25), top, u(24, 26))
    r = np.hypot(_X - 14, (_Y - top) * 1.3)
    radius = u(5, 7)
    handle = np.clip(1.2 - np.abs(r - radius), 0, 1) * (_Y - top < 0)
    return np.maximum(body, handle)


def _boot(u) -> np.ndarray:
    shaft = _box(u(12, 15), u(22, 24), u(2, 5), 24)
    foot = _box(u(2, 4), u(23, 25), u(15, 17), 24)
    sole = _box(2, 25, 23, 25.5)
    return np.maximum(np.maximum(shaft, foot), sole)


_SHAPES = (_tshirt, _trouser, _pullover, _dress, _coat, _sandal, _shirt, _sneaker, _bag, _boot)


# --- IDX writing -------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: images (N x 28 x 28) or labels (N)."""
    array = np.ascontiguousarray(array, np.uint8)
    magic = 0x00000800 | array.ndim
    header = np.array([magic, *array.shape], ">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, gzip: bool) -> None:
    """Write ``array`` as one IDX file (gzip-compressed when ``gzip``), whole or not at all."""
    data = idx_bytes(array)
    if gzip:
        data = gzip_module.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
