"""Image folders in the course layout, `PATH/{Train,Test}/<label>/*.png`: checked and decoded in one pass with PIL.

Every way a folder can be unusable is one DataError naming the folder or file: a missing split, label folders
that are not the class indices 0..k-1 (or that the model has no output for), an empty label folder, a file that
is not an image or whose pixel data cannot be decoded or that is too large to decode (a decompression bomb),
images of different sizes, a link that leads nowhere or out of the data folder (links are never followed out of
it). Files that file managers leave behind (`.DS_Store`, `Thumbs.db`, `desktop.ini`, any dot-file) are skipped.

The arrays are those TFDS's `ImageFolder` gave (the reader this replaced; tests/test_image_folder.py compares
both where TensorFlow is installed): each image decoded to 3 channels as `tf.io.decode_image(channels=3)` does,
a split whose every pixel has R = G = B kept as 1 channel, and the examples in the order of their full paths.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import os
import warnings

import numpy as np

from common.core.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_LAYOUT = "PATH/{Train,Test}/<label>/*.png (e.g. ../shared/data/elec576/CIFAR10)"
SKIPPED_FILES = ("thumbs.db", "desktop.ini")  # besides every name that starts with a dot (.DS_Store, ._x.png)
GRAY_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "1")
_HINT = f"expected an image folder laid out as {FOLDER_LAYOUT}"


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of a label folder as listed (not yet opened): what the cache's source fingerprint is made of."""

    path: str
    label: int
    size: int
    mtime_ns: int
    ctime_ns: int  # changes on every write, and cannot be set back as the mtime can


def is_skipped(name: str) -> bool:
    """Files a file manager writes into folders (never images of the data set)."""
    return name.startswith(".") or name.lower() in SKIPPED_FILES


# ------------------------------------------------------------------------------------------- the layout


def list_image_folder(root: str, num_classes: int | None = None) -> dict[str, tuple[str, list[FileEntry]]]:
    """Checks the layout without opening an image; returns {'train'|'test': (split folder name, files)}, the
    files of each split in the order of their full paths.

    Label folders must be the class indices 0, 1, ..., k-1 without gaps, the same in both splits, each with
    at least one file, and below `num_classes` (the model's outputs) when given: a label the model has no
    output for trains to NaN.
    """
    names = _split_folders(root)
    out, label_sets = {}, {}
    for split, name in names.items():
        label_sets[split], files = _list_split(os.path.join(root, name), num_classes)
        out[split] = (name, files)
    _check_same_labels(root, label_sets)
    return out


def _split_folders(root: str) -> dict[str, str]:
    """{'train': name, 'test': name} of the split folders (any capitalisation)."""
    if not os.path.isdir(root):
        raise DataError(f"data folder {root!r} does not exist; {_HINT}")
    with _unreadable(root):
        entries = {e.lower(): e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e))}
    missing = [s for s in ("train", "test") if s not in entries]
    if missing:
        raise DataError(f"data folder {root!r} has no {' or '.join(m.capitalize() for m in missing)} split "
                        f"folder; {_HINT}")
    for split in ("train", "test"):
        check_link(root, os.path.join(root, entries[split]))
    return {"train": entries["train"], "test": entries["test"]}


def check_link(root: str, path: str) -> None:
    """A link in the data folder `root` must lead to something inside it: one that leads nowhere (dangling, or a
    loop) or out of the folder is one DataError (links are never followed out of a folder the project reads)."""
    if not os.path.islink(path):
        return
    target = os.path.realpath(path)
    if not os.path.exists(target):
        raise DataError(f"{path!r} is a link to {os.readlink(path)!r}, which does not exist (or is a loop of "
                        "links); remove it from the data folder")
    top = os.path.realpath(root)
    if os.path.commonpath([top, target]) != top:
        raise DataError(f"{path!r} is a link to {target!r}, outside the data folder {root!r}; links out of it are "
                        "not followed: copy the file in instead")


def _list_split(split_dir: str, num_classes: int | None) -> tuple[list[str], list[FileEntry]]:
    with _unreadable(split_dir):
        labels = _check_labels(split_dir, num_classes)
        root = os.path.dirname(split_dir)
        for label in labels:
            check_link(root, os.path.join(split_dir, label))
        return labels, _list_files(split_dir, labels)


@contextlib.contextmanager
def _unreadable(where: str):
    """A folder that cannot be listed (no permission, a vanished network mount) as one DataError."""
    try:
        yield
    except OSError as e:
        raise DataError(f"cannot read {e.filename or where!r} in the data folder ({e.strerror or e}); check its "
                        "permissions") from None


def _check_same_labels(root: str, label_sets: dict[str, list[str]]) -> None:
    if label_sets["train"] != label_sets["test"]:
        only = sorted(set(label_sets["train"]) ^ set(label_sets["test"]), key=int)[0]
        raise DataError(f"the Train and Test folders of {root!r} must hold the same label folders; {only!r} is "
                        "in only one of them")


def _check_labels(split_dir: str, num_classes: int | None) -> list[str]:
    """The label folder names of one split, checked to be 0..k-1 (k <= num_classes when given)."""
    labels = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not labels:
        raise DataError(f"split folder {split_dir!r} has no label folders; {_HINT}")
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


def _list_files(split_dir: str, labels: list[str]) -> list[FileEntry]:
    """Every file of the split's label folders (skipped names left out), sorted by full path as TFDS did."""
    files, empty = [], []
    for label in labels:
        label_dir = os.path.join(split_dir, label)
        found = [e for e in os.scandir(label_dir) if not is_skipped(e.name)]
        if not found:
            empty.append(label_dir)
        for e in found:
            check_link(os.path.dirname(split_dir), e.path)
            st = e.stat()
            files.append(FileEntry(e.path, int(label), st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    if not files:
        raise DataError(f"split folder {split_dir!r} contains no images; {_HINT}")
    if empty:  # silently training on 9 of 10 classes would be worse than stopping
        raise DataError(f"label folder {empty[0]!r} has no images; add its images or remove the folder (and the "
                        "same label in the other split)")
    files.sort(key=lambda f: f.path)  # what np.argsort of TFDS's image/filename gave
    return files


# ----------------------------------------------------------------------------------------- the decoding


def read_image_folder(root: str, num_classes: int | None = None,
                      listing: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train'|'test': (uint8 images [n, h, w, c], int32 labels [n])}, c = 1 when every pixel of the split is
    gray, else 3; each image decoded once, every problem one DataError. `listing`: list_image_folder's result
    when the caller has it already; without it the checks run in the order they always did (Train's layout,
    Train's images, Test's layout, Test's images, then the label sets), so the first problem named is the same."""
    if listing is not None:
        return {key: decode_split(files) for key, (_, files) in listing.items()}
    out, label_sets = {}, {}
    for split, name in _split_folders(root).items():
        label_sets[split], files = _list_split(os.path.join(root, name), num_classes)
        out[split] = decode_split(files)
    _check_same_labels(root, label_sets)
    return out


def decode_split(files: list[FileEntry]) -> tuple[np.ndarray, np.ndarray]:
    """The images of one split, decoded in parallel threads (PIL releases the GIL), checked in file order so
    that the first bad file named is the same on every run."""
    from PIL import Image

    # PIL only warns between MAX_IMAGE_PIXELS and twice that (a decompression bomb): an error here. Set in this
    # thread for the pool's threads too (the filters are the process's; catch_warnings is not thread-safe).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pool = concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1))
        try:
            images = None
            for i, (f, a) in enumerate(zip(files, pool.map(decode_image, [f.path for f in files]))):
                if images is None:
                    first, images = f.path, np.empty((len(files),) + a.shape, np.uint8)
                elif a.shape != images.shape[1:]:
                    raise DataError(f"images of different sizes: {first} is {_describe(images.shape[1:])}, {f.path} "
                                    f"is {_describe(a.shape)}; all images must have one size and colour mode")
                images[i] = a
        finally:  # on an error (or Ctrl-C) the files not yet decoded are dropped, not decoded in vain
            pool.shutdown(wait=True, cancel_futures=True)
    if images.ndim == 4 and _is_gray(images):
        images = images[..., :1]
    elif images.ndim == 3:
        images = images[..., None]
    return images, np.asarray([f.label for f in files], np.int32)


def _describe(shape: tuple) -> str:
    return f"{shape[0]}x{shape[1]} {'grayscale' if len(shape) == 2 else 'colour'}"


def decode_image(path: str) -> np.ndarray:
    """uint8 [h, w] for a grayscale file, [h, w, 3] for any other (alpha dropped, palettes expanded)."""
    from PIL import Image, UnidentifiedImageError

    if not path.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
        raise DataError(f"{path!r} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)}); remove it "
                        "from the data folder")
    try:
        with open(path, "rb") as f:
            payload = f.read()
        with Image.open(io.BytesIO(payload)) as im:
            im.verify()  # the chunk checksums (a corrupt stream can still have valid ones: load() sees those)
        with Image.open(io.BytesIO(payload)) as im:
            im.load()
            return _to_array(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{path!r} is too large to decode ({e}); remove or replace it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path!r} is not a readable image ({e.__class__.__name__}: {e}); remove or replace "
                        "it") from None


def _to_array(im) -> np.ndarray:
    """The pixels as tf.io.decode_image(channels=3) gives them, a gray image's single channel kept apart."""
    if im.mode == "L":
        return np.asarray(im, np.uint8)
    if im.mode == "1":
        return np.asarray(im.convert("L"), np.uint8)
    if im.mode in GRAY_MODES:  # 16-bit: TF keeps the high byte
        return (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), np.uint8)


def _is_gray(images: np.ndarray) -> bool:
    return bool(np.all(images[..., 0] == images[..., 1]) and np.all(images[..., 1] == images[..., 2]))


def validate_image_folder(root: str, num_classes: int | None = None) -> dict[str, str]:
    """Checks the folder as reading it would (every image decoded); returns {'train': name, 'test': name}."""
    read_image_folder(root, num_classes)
    return _split_folders(root)
