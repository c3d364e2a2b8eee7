"""Portable dataset files: one `.npz` (plain numpy, readable without this project) with both splits, decoded.

What `python run.py --task export` writes and what the decoded-array cache (common/data/cache.py) keeps; every
task's `--data-dir` takes such a file (the `.npz` extension says so). Entries (docs/data.md describes them):

  x_train, x_test   uint8 [n, height, width, channels] (channels 1 or 3), the pixels as decoded from the source
  y_train, y_test   int32 [n], class indices 0..len(class_names)-1
  class_names       str [k]
  image_mode        str: 'L' (1 channel) or 'RGB' (3 channels), of x_train
  source            str: where the arrays came from (an image folder's path, 'tfds:mnist/3.0.1 in DIR', ...)
  source_fingerprint str: the source's files (names, sizes, mtimes, ctimes) when exported; what the cache compares
  fingerprint       str: 'blake2b:<hex>' of the class names and the four arrays; checked on every read
  format, format_version  'elec576-jax dataset', 1

The arrays are the source's, before any preprocessing (grayscale, resize, the validation holdout), so a task
fed the file does exactly what it does fed the source.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import zipfile
import zlib

import numpy as np

from common.core.errors import DataError

FORMAT = "elec576-jax dataset"
FORMAT_VERSION = 1
EXTENSION = ".npz"
SPLITS = ("train", "test")
Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # {'train'|'test': (uint8 images, int32 labels)}
Headers = dict[str, tuple[tuple[int, ...], np.dtype]]  # {entry: (shape, dtype)}, from the .npy headers alone
# What reading a damaged or foreign .npz can raise (zlib.error: a damaged compressed member; RuntimeError: an
# encrypted one; MemoryError: an array larger than memory that its zip entry claims to hold)
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError,
               RuntimeError, MemoryError)


@dataclasses.dataclass(frozen=True)
class DatasetFile:
    splits: Splits
    class_names: tuple[str, ...]
    source: str
    source_fingerprint: str


def is_dataset_file(path: str | None) -> bool:
    """A --data-dir that names a dataset file rather than an image folder."""
    return bool(path) and path.lower().endswith(EXTENSION)


def content_fingerprint(splits: Splits, class_names) -> str:
    """'blake2b:<hex>' of the class names and every split's dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(str(c) for c in class_names)).encode())
    for split in SPLITS:
        for a in splits[split]:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return f"blake2b:{h.hexdigest()}"


def to_bytes(f: DatasetFile) -> bytes:
    """The file's bytes (an uncompressed .npz: it loads at disk speed, and MNIST is 55 MB either way)."""
    (x_train, y_train), (x_test, y_test) = f.splits["train"], f.splits["test"]
    buf = io.BytesIO()
    np.savez(buf, x_train=x_train.astype(np.uint8), y_train=y_train.astype(np.int32),
             x_test=x_test.astype(np.uint8), y_test=y_test.astype(np.int32),
             class_names=np.asarray(f.class_names, dtype=str), image_mode=np.asarray(_mode(x_train)),
             source=np.asarray(f.source), source_fingerprint=np.asarray(f.source_fingerprint),
             fingerprint=np.asarray(content_fingerprint(f.splits, f.class_names)),
             format=np.asarray(FORMAT), format_version=np.asarray(FORMAT_VERSION))
    return buf.getvalue()


def write(path: str, f: DatasetFile) -> None:
    """Writes `f` to `path` atomically (a reader never sees half a file; a failed write leaves the old one)."""
    from common.runtime.outputs import atomic_write_bytes  # pylint: disable=import-outside-toplevel (it imports jax)

    atomic_write_bytes(path, to_bytes(f))


def _mode(images: np.ndarray) -> str:
    return "L" if images.shape[-1] == 1 else "RGB"


def read(path: str, num_classes: int | None = None) -> DatasetFile:
    """Reads and checks a dataset file; every problem is one DataError naming the file."""
    if not os.path.isfile(path):
        raise DataError(f"dataset file {path!r} does not exist; make one with `python run.py --task export "
                        f"--data-dir FOLDER --out {path}` (or --dataset mnist for a TFDS dataset)")
    try:
        headers = read_headers(path)
        check_headers(path, headers)  # shapes and sizes before any array is read
        with np.load(path, allow_pickle=False) as z:  # the arrays only: np.load gives other members as bytes
            entries = {k: z[k] for k in z.files if k in headers}
    except READ_ERRORS as e:
        raise DataError(f"dataset file {path!r} cannot be read ({e.__class__.__name__}: {str(e)[:120]}); it is "
                        "truncated or not an .npz: export it again") from None
    f = _from_entries(path, from_keras_layout(path, entries))
    check_labels(path, f, num_classes)
    check_classes(path, f)
    return f


def read_headers(path: str) -> Headers:
    """{entry: (shape, dtype)} of every array in the .npz, read from the .npy headers alone (np.load allocates
    what a header claims before it reads a byte: a small file claiming 10^12 images must be refused first).
    A header that claims more bytes than its zip member holds is one DataError."""
    headers = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0  # 3.0 differs only in the header's text encoding
                shape, _, dtype = read_header(f)
                claimed = f.tell() + math.prod(shape) * dtype.itemsize
            name = info.filename[:-len(".npy")]
            if not dtype.hasobject and claimed > info.file_size:
                raise DataError(f"dataset file {path!r}: the header of {name} claims {dtype} {list(shape)} "
                                f"({claimed / 1e6:,.1f} MB), its entry holds {info.file_size / 1e6:,.1f} MB; the "
                                "file is damaged: export it again")
            headers[name] = (tuple(shape), dtype)
    return headers


def check_headers(path: str, headers: Headers) -> None:
    """What the headers say, checked before any array is read: that the arrays fit in memory (a few MB of zeros
    compressed can hold an honest header of 20 GB), and, for a file that says it is in this format, the splits'
    shapes and dtypes (another file is refused, or converted, from its contents)."""
    total, memory = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values()), physical_memory()
    if memory and total > memory:
        raise DataError(f"dataset file {path!r}: its arrays hold {total / 1e9:,.1f} GB once read, more than this "
                        f"machine's {memory / 1e9:,.1f} GB of memory")
    if "format" not in headers:
        return
    for s in SPLITS:
        if f"x_{s}" in headers and f"y_{s}" in headers:
            problem = split_problem(s, *headers[f"x_{s}"], *headers[f"y_{s}"])
            if problem:
                raise DataError(f"dataset file {path!r}: {problem}")


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def split_problem(split: str, x_shape, x_dtype, y_shape, y_dtype) -> str | None:
    """Why (x, y) of `split` are not uint8 images [n, h, w, 1|3] and integer labels [n], or None."""
    x_shape, y_shape = tuple(x_shape), tuple(y_shape)
    if x_dtype != np.uint8 or len(x_shape) != 4 or x_shape[-1] not in (1, 3) or min(x_shape[:3]) == 0:
        return f"x_{split} must be uint8 [n, height, width, 1 or 3] with n, height, width > 0, it is {x_dtype} " \
            f"{list(x_shape)}"
    if not np.issubdtype(y_dtype, np.integer) or y_shape != x_shape[:1]:
        return f"y_{split} must be integers [{x_shape[0]}], it is {y_dtype} {list(y_shape)}"
    return None


def has_marker(path: str) -> bool:
    """Whether `path` is a regular file (not a link) holding this project's format entry: a file `--task export`
    wrote, so the only kind it may replace (a user's .npz of weights or Keras's mnist.npz never is)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        shape, dtype = read_headers(path).get("format", ((None,), None))
        if shape != () or dtype.kind != "U":
            return False
        with np.load(path, allow_pickle=False) as z:
            return str(z["format"]) == FORMAT
    except (DataError, *READ_ERRORS):
        return False


KERAS_ENTRIES = frozenset({"x_train", "y_train", "x_test", "y_test"})


def from_keras_layout(path: str, e: dict) -> dict:
    """The entries of a Keras-layout .npz (`keras.datasets.mnist`'s mnist.npz: x_train, y_train, x_test, y_test
    only; uint8 images [n, height, width] or [n, height, width, 1 or 3], labels [n] or [n, 1]) as this project's
    (a channel axis, int32 labels, class names '0'..'k-1', the format entries); any other file as it is.
    So full MNIST needs no TensorFlow: `--mnist mnist.npz` with the file Keras downloads (docs/data.md)."""
    if set(e) != KERAS_ENTRIES:
        return e
    xs = {s: e[f"x_{s}"] for s in SPLITS}
    ys = {s: e[f"y_{s}"].reshape(-1) if e[f"y_{s}"].ndim == 2 else e[f"y_{s}"] for s in SPLITS}
    if any(x.ndim == 3 for x in xs.values()):
        xs = {s: x[..., None] if x.ndim == 3 else x for s, x in xs.items()}
    top = max((int(y.max()) for y in ys.values() if y.size and np.issubdtype(y.dtype, np.integer)), default=-1)
    return {**{f"x_{s}": xs[s] for s in SPLITS}, **{f"y_{s}": ys[s] for s in SPLITS},
            "class_names": np.asarray([str(i) for i in range(top + 1)]), "source": np.asarray(f"keras npz: {path}"),
            "format": np.asarray(FORMAT), "format_version": np.asarray(FORMAT_VERSION)}


def _from_entries(path: str, e: dict) -> DatasetFile:
    """The checked contents of a loaded .npz."""
    if str(e.get("format", "")) != FORMAT:
        raise DataError(f"{path!r} is not a dataset file of this project (no format entry {FORMAT!r}); make one "
                        "with `python run.py --task export`")
    version = e.get("format_version")
    if version is None or version.shape != () or not np.issubdtype(version.dtype, np.integer) \
            or int(version) != FORMAT_VERSION:
        shown = "none" if version is None else repr(version.tolist())[:40]
        raise DataError(f"dataset file {path!r} has format version {shown}, this project reads version "
                        f"{FORMAT_VERSION}; export it again")
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test", "class_names") if k not in e]
    if missing:
        raise DataError(f"dataset file {path!r} has no {missing[0]!r} entry; export it again")
    raw = {s: (e[f"x_{s}"], e[f"y_{s}"]) for s in SPLITS}
    for s, (x, y) in raw.items():
        problem = split_problem(s, x.shape, x.dtype, y.shape, y.dtype)
        if problem:
            raise DataError(f"dataset file {path!r}: {problem}")
    names = tuple(str(c) for c in np.atleast_1d(e["class_names"]))
    check_labels(path, DatasetFile(raw, names, "", ""), None)  # before the cast: a uint64 2**32 + 3 is not 3
    splits = {s: (x, y.astype(np.int32)) for s, (x, y) in raw.items()}
    if "fingerprint" in e and str(e["fingerprint"]) != content_fingerprint(splits, names):
        raise DataError(f"dataset file {path!r}: its arrays do not match its fingerprint (the file was changed "
                        "or damaged); export it again")
    return DatasetFile(splits, names, str(e.get("source", path)), str(e.get("source_fingerprint", "")))


def check_labels(path: str, f: DatasetFile, num_classes: int | None) -> None:
    """Every label a class of the file and of the model (a label the model has no output for trains to NaN)."""
    k = len(f.class_names) if num_classes is None else min(num_classes, len(f.class_names))
    for s, (_, y) in f.splits.items():
        bad = y[(y < 0) | (y >= k)]
        if len(bad):
            model = f"the model has {num_classes} classes" if num_classes is not None and num_classes <= len(
                f.class_names) else f"the file names {len(f.class_names)} classes"
            raise DataError(f"dataset file {path!r}: y_{s} holds label {int(bad[0])}, outside 0-{k - 1}: {model}")


def check_classes(path: str, f: DatasetFile) -> None:
    """As for an image folder: every class from 0 to the highest label has examples in both splits (a file that
    lacks a class would train silently on the others, as a folder with an empty label folder would)."""
    top = max(int(y.max()) for _, y in f.splits.values())
    for s, (_, y) in f.splits.items():
        missing = np.setdiff1d(np.arange(top + 1), y)
        if len(missing):
            c = int(missing[0])
            name = f" ({f.class_names[c]!r})" if c < len(f.class_names) else ""
            raise DataError(f"dataset file {path!r}: y_{s} has no example of class {c}{name}; every class from 0 "
                            f"to {top} needs examples in both splits: add them, or export the file again")
