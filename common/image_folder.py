"""Validation of an image folder in the course layout, `PATH/{Train,Test}/<label>/*.png`, before it is read.

Every way a folder can be unusable is one DataError naming the folder or file: a missing split, label folders
that are not the class indices 0..k-1 (or that the model has no output for), a file that is not an image or
whose pixel data cannot be decoded, images of different sizes.
"""
from __future__ import annotations

import os

from common.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_LAYOUT = "PATH/{Train,Test}/<label>/*.png (e.g. ../shared/data/elec576/CIFAR10)"


def validate_image_folder(root: str, num_classes: int | None = None) -> dict[str, str]:
    """Checks the course layout; returns {'train': name, 'test': name} of the split folders.

    Label folders must be the class indices 0, 1, ..., k-1 without gaps, the same in both splits, and below
    `num_classes` (the model's outputs) when given: a label the model has no output for trains to NaN.
    """
    hint = f"expected an image folder laid out as {FOLDER_LAYOUT}"
    if not os.path.isdir(root):
        raise DataError(f"data folder {root!r} does not exist; {hint}")
    entries = {e.lower(): e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e))}
    missing = [s for s in ("train", "test") if s not in entries]
    if missing:
        raise DataError(f"data folder {root!r} has no {' or '.join(m.capitalize() for m in missing)} split "
                        f"folder; {hint}")
    label_sets = {}
    for split in ("train", "test"):
        split_dir = os.path.join(root, entries[split])
        label_sets[split] = _check_labels(split_dir, num_classes, hint)
        _check_images(split_dir, label_sets[split], hint)
    if label_sets["train"] != label_sets["test"]:
        only = sorted(set(label_sets["train"]) ^ set(label_sets["test"]), key=int)[0]
        raise DataError(f"the Train and Test folders of {root!r} must hold the same label folders; {only!r} is "
                        "in only one of them")
    return {"train": entries["train"], "test": entries["test"]}


def _check_labels(split_dir: str, num_classes: int | None, hint: str) -> list[str]:
    """The label folder names of one split, checked to be 0..k-1 (k <= num_classes when given)."""
    labels = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not labels:
        raise DataError(f"split folder {split_dir!r} has no label folders; {hint}")
    bad_labels = [lab for lab in labels if not (lab.isdigit() and str(int(lab)) == lab)]
    if bad_labels:
        raise DataError(f"label folder names must be class indices 0, 1, ...; found {bad_labels[0]!r} in "
                        f"{split_dir!r}")
    labels.sort(key=int)
    if num_classes is not None and int(labels[-1]) >= num_classes:
        raise DataError(f"label folder {os.path.join(split_dir, labels[-1])!r} is outside 0-{num_classes - 1}: "
                        f"the model has {num_classes} classes; remove or rename it")
    gaps = sorted(set(range(int(labels[-1]) + 1)) - {int(lab) for lab in labels})
    if gaps:
        raise DataError(f"label folders of {split_dir!r} must be 0 to {labels[-1]} without gaps; {gaps[0]} is "
                        "missing")
    return labels


def _check_images(split_dir: str, labels: list[str], hint: str) -> None:
    """Every file is a readable image and all have one size and colour mode."""
    sizes: dict[tuple, str] = {}
    n_images = 0
    for label in labels:
        for name in sorted(os.listdir(os.path.join(split_dir, label))):
            path = os.path.join(split_dir, label, name)
            sizes.setdefault(_image_size(path), path)
            n_images += 1
            if len(sizes) > 1:
                (s1, p1), (s2, p2) = list(sizes.items())[:2]
                raise DataError(f"images of different sizes: {p1} is {s1[0]}x{s1[1]} {s1[2]}, {p2} is "
                                f"{s2[0]}x{s2[1]} {s2[2]}; all images must have one size and colour mode")
    if n_images == 0:
        raise DataError(f"split folder {split_dir!r} contains no images; {hint}")


def _image_size(path: str) -> tuple[int, int, str]:
    from PIL import Image, UnidentifiedImageError

    if not path.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
        raise DataError(f"{path!r} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)}); remove it "
                        "from the data folder")
    try:
        with Image.open(path) as im:
            im.verify()  # the chunk checksums
        with Image.open(path) as im:
            im.load()  # the pixel data: a corrupt stream can have valid checksums (+1.4 s per 10,000 28x28 PNGs)
            return im.size[1], im.size[0], "grayscale" if im.mode in ("L", "I", "I;16", "1") else "colour"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path!r} is not a readable image ({e.__class__.__name__}: {e}); remove or replace "
                        "it") from None
