"""Pack a folder of images into a Fashion-MNIST batch: the four IDX files, with a test split.

The folder has torchvision's ``ImageFolder`` layout, read by torchvision's own helpers: one
subfolder per class, classes in sorted folder-name order, each class's label its index (so the
folders must be exactly ten). Files ending ``.png``, ``.jpg`` or ``.jpeg`` (any case) are
images; anything else is skipped, as ImageFolder skips it. Each image, with Pillow:

1. ``ImageOps.exif_transpose``: a photo's EXIF orientation is applied;
2. ``convert("L")``: 8-bit grayscale, L = R*299/1000 + G*587/1000 + B*114/1000 (alpha dropped);
3. ``resize((28, 28), Image.Resampling.LANCZOS)``: stretched to 28x28 whatever its size and
   shape, with no crop and no padding (crop or pad non-square images first if that matters);
4. with ``invert``, ``ImageOps.invert``: Fashion-MNIST is light clothes on black, so dark
   items photographed on a light background should be inverted.

The split is stratified and seeded: per class, ``round(n * test_fraction)`` images chosen by a
NumPy generator seeded with ``seed`` go to the test split (at least one image each way, or the
class is refused), then each split is shuffled with the same generator. Output: the four files,
gzip-compressed (``train-images-idx3-ubyte.gz``, ...), as Fashion-MNIST is distributed.
Problems raise ``PackError``, one line that names the folder, class or file at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RetrainError

if TYPE_CHECKING:
    import numpy as np

N_CLASSES = 10
SIDE = 28
EXTENSIONS = (".png", ".jpg", ".jpeg")
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class PackError(RetrainError):
    """The folder cannot be packed; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Packed:
    """What ``pack`` wrote: the four files, the classes in label order, and the split sizes."""

    files: dict[str, Path]
    classes: tuple[str, ...]
    n_train: int
    n_test: int


def pack(
    folder: Path,
    out: Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    invert: bool = False,
) -> Packed:
    """Read ``folder``'s images, split them, and write the four IDX files into ``out``."""
    import numpy as np

    if not 0 < test_fraction < 1:
        raise PackError(f"test fraction: expected a number between 0 and 1, got {test_fraction}")
    classes, samples = _samples(Path(folder))
    images = np.empty((len(samples), SIDE, SIDE), np.uint8)
    for i, (path, _) in enumerate(samples):
        images[i] = _load(Path(path), invert=invert)
    labels = np.array([label for _, label in samples], np.uint8)
    train, test = _split(labels, classes, test_fraction, np.random.default_rng(seed))
    return Packed(
        files=_write(Path(out), images, labels, train, test),
        classes=tuple(classes),
        n_train=len(train),
        n_test=len(test),
    )


def _samples(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, [(path, label)]) by ImageFolder's rules; exactly ten classes, none empty."""
    from torchvision.datasets.folder import find_classes, make_dataset

    if not folder.is_dir():
        raise PackError(f"{folder}: no such folder")
    try:
        classes, class_to_idx = find_classes(str(folder))
    except FileNotFoundError:
        classes, class_to_idx = [], {}
    if len(classes) != N_CLASSES:
        found = f": {', '.join(classes)}" if classes else ""
        raise PackError(
            f"{folder}: expected {N_CLASSES} class folders (one per label, in sorted order), "
            f"found {len(classes)}{found}"
        )
    samples = make_dataset(str(folder), class_to_idx, extensions=EXTENSIONS, allow_empty=True)
    counts = {label: 0 for label in range(N_CLASSES)}
    for _, label in samples:
        counts[label] += 1
    for name in classes:
        if counts[class_to_idx[name]] == 0:
            raise PackError(f"{folder / name}: class {name!r} holds no PNG or JPEG image")
    return classes, samples


def _load(path: Path, *, invert: bool) -> np.ndarray:
    """One image as 28x28 uint8 grayscale (see the module docstring for each step)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            gray = ImageOps.exif_transpose(image).convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PackError(f"{path}: not a readable PNG or JPEG image ({exc})") from None
    small = gray.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(ImageOps.invert(small) if invert else small, np.uint8)


def _split(
    labels: np.ndarray, classes: Sequence[str], fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: the same fraction of each class goes to test; each split then shuffled."""
    import numpy as np

    train, test = [], []
    for label, name in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(members) * fraction)
        if not 0 < n_test < len(members):
            raise PackError(
                f"class {name!r}: {len(members)} image(s) are too few to split with test "
                f"fraction {fraction} (each split needs at least one)"
            )
        test.append(members[:n_test])
        train.append(members[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _write(
    out: Path, images: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, Path]:
    from .fashion_mnist import write_idx

    out.mkdir(parents=True, exist_ok=True)
    arrays = (images[train], labels[train], images[test], labels[test])
    files = {}
    for name, array in zip(FILE_NAMES, arrays, strict=True):
        files[name] = out / f"{name}.gz"
        write_idx(files[name], array, gzip=True)
    return files
