"""``python -m retrain data pack``: an image folder (ImageFolder layout) -> a Fashion-MNIST batch.

The packing itself is ``retrain.data.pack`` (torchvision's folder helpers, Pillow); this module is
its command line: flags, the default output folder, and what it prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .flags import non_negative_int, open_fraction


def add_data_parser(commands: Any) -> None:
    """``data pack FOLDER [--out DIR] [--test-fraction F] [--seed N] [--invert]``."""
    data = commands.add_parser("data", help="bring your own data: pack an image folder")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    pack = actions.add_parser(
        "pack",
        help="turn a folder of images (one subfolder per class) into the four IDX files",
        description="Turn FOLDER, in torchvision's ImageFolder layout (exactly ten subfolders, "
        "one per class, labels in sorted folder-name order; PNG or JPEG images of any size), "
        "into a Fashion-MNIST batch: 28x28 grayscale (Pillow convert('L'), then LANCZOS resize "
        "to 28x28, stretched, no crop or padding), split into train and test, stratified and "
        "seeded, written as the four gzip-compressed IDX files.",
    )
    pack.add_argument("folder", type=Path, metavar="FOLDER", help="one subfolder per class")
    pack.add_argument(
        "--out", type=Path, metavar="DIR", help="where the four files go (default: FOLDER-batch)"
    )
    pack.add_argument(
        "--test-fraction",
        type=open_fraction,
        default=0.2,
        metavar="F",
        help="share of each class held out for test, between 0 and 1 (default 0.2)",
    )
    pack.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="N", help="of the split (default 0)"
    )
    pack.add_argument(
        "--invert",
        action="store_true",
        help="invert the gray levels: for dark items on a light background (Fashion-MNIST is "
        "light on black)",
    )
    pack.set_defaults(func=cmd_data_pack)


def cmd_data_pack(args: argparse.Namespace) -> int:
    try:
        from ..data.pack import pack
    except ModuleNotFoundError as exc:  # pragma: no cover - the dev install has them
        raise ConfigurationError(
            f"data pack needs numpy, torchvision and Pillow ({exc.name} is missing): "
            "pip install -r requirements-train.txt"
        ) from None

    folder = args.folder.expanduser().resolve()
    out = (args.out or folder.with_name(folder.name + "-batch")).expanduser().resolve()
    packed = pack(folder, out, test_fraction=args.test_fraction, seed=args.seed, invert=args.invert)
    for label, name in enumerate(packed.classes):
        print(f"label {label}: {name}", file=sys.stderr)
    print(
        f"packed {packed.n_train} training and {packed.n_test} test images into {out}",
        file=sys.stderr,
    )
    print(out)
    return 0
