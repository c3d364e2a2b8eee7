"""Input pipeline shared by every experiment: load, preprocess, hold out validation data, batch.

Three sources (docs/data.md):
  * an image-folder tree in the course layout, `PATH/{Train,Test}/<label>/*.png`, checked and decoded in one
    pass with PIL (common/data/image_folder.py);
  * a dataset file, `--data-dir FILE.npz`, as `--task export` writes it (common/data/dataset_file.py);
  * a named TFDS dataset (`cifar10`, `mnist`) read with `tfds.builder(...).as_dataset`, honouring
    `TFDS_DATA_DIR` or an explicit `tfds_data_dir`: the only path that imports TensorFlow.
Folders and TFDS datasets go through the decoded-array cache (common/data/cache.py), so TensorFlow is imported
only to read a TFDS dataset that is not cached yet.

Everything ends up as in-memory numpy arrays (the course datasets are tiny); batches are slices of them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import numpy as np

from common.data import cache as data_cache, dataset_file, image_folder
from common.runtime import tf_quiet
from common.core.config import IMAGE_MODES, DataConfig  # noqa: F401 (API)
from common.data.dataset_file import DatasetFile
from common.core.errors import DataError, UserError
from common.data.image_folder import FOLDER_LAYOUT, IMAGE_EXTENSIONS, validate_image_folder  # noqa: F401 (API)
from common.core.batches import epoch_order, padded, to_float  # noqa: F401 (API: beside the step, one source)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(d) for d in range(10))
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES, "mnist": MNIST_CLASSES}
# Where each named dataset downloads from; probed before a download so that an offline machine fails in
# milliseconds instead of retrying for minutes.
DOWNLOAD_HOSTS = {"cifar10": "www.cs.toronto.edu", "mnist": "storage.googleapis.com"}


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray  # [n, height, width, channels] uint8 (`to_float` gives float32 in [0, 1])
    labels: np.ndarray  # [n] int32

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    source: str  # human-readable description, recorded in metrics.json

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def fingerprint(dataset: Dataset) -> str:
    """'blake2b:<hex>' over every split's shapes, dtypes, labels and pixels and the class names: what a
    resumed run or a skipped sweep member checks, so that other data under the same path is never mistaken
    for the data a result was trained on."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(dataset.class_names)).encode())
    for split in (dataset.train, dataset.val, dataset.test):
        for a in (split.images, split.labels):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.reshape(-1).view(np.uint8))  # the raw bytes, without a copy
    return f"blake2b:{h.hexdigest()}"


def load_dataset(config: DataConfig) -> Dataset:
    """Loads, preprocesses and splits the data that `config` describes."""
    for ok, message in config.checks():
        if not ok:
            raise DataError(message)
    classes = len(CLASS_NAMES[config.dataset]) if config.dataset in CLASS_NAMES else None
    entry, source = read_source(config, classes)
    raw = entry.splits
    (x_train, y_train), (x_test, y_test) = raw["train"], raw["test"]
    x_train, x_test = to_image_mode(x_train, config.image_mode), to_image_mode(x_test, config.image_mode)
    train_idx, val_idx = stratified_holdout(y_train, config.val_fraction, config.split_seed)
    # A seeded shuffle of the training order, so that `limit` takes a class-mixed subset even from a
    # folder whose file order groups the classes.
    train_idx = np.random.default_rng([config.split_seed, 1]).permutation(train_idx)
    if config.limit is not None:
        train_idx = train_idx[: config.limit]
    names = CLASS_NAMES.get(config.dataset, tuple(str(i) for i in range(int(y_train.max()) + 1)))
    return Dataset(
        train=Split(x_train[train_idx], y_train[train_idx]),
        val=Split(x_train[val_idx], y_train[val_idx]),
        test=Split(x_test, y_test),
        class_names=names,
        source=source,
    )


# ----------------------------------------------------------------------------------------------- sources


def read_source(config: DataConfig, num_classes: int | None = None) -> tuple[DatasetFile, str]:
    """The source `config` names, decoded: (uint8 images and int32 labels of both splits with their origin and
    fingerprint, the description recorded in metrics.json). `num_classes`: the model's outputs."""
    path = config.data_dir
    if dataset_file.is_dataset_file(path):
        entry = dataset_file.read(path, num_classes)
        return entry, f"dataset file {os.path.abspath(path)} (from {entry.source})"
    if path:
        return read_folder_cached(path, num_classes, config.dataset), f"image folder {os.path.abspath(path)}"
    return read_tfds_cached(config.dataset, config.tfds_data_dir), f"tfds:{config.dataset}"


def check_source(path: str) -> None:
    """Reads a --data-dir (folder or .npz) as a task would, so that `--task all` refuses a bad one before its
    first task; a folder's arrays go into the cache on the way."""
    read_source(DataConfig(data_dir=path))


def check_out_outside_data(out: str, *sources: str | None) -> None:
    """One line before any work when --out is a data folder or inside one (a result among the images breaks the
    folder for the next read, and a run there trips over its own lock file); sources that are files (.npz) or
    TFDS names have nothing inside them."""
    target = os.path.realpath(out)
    for source in sources:
        if source and os.path.isdir(source):
            folder = os.path.realpath(source)
            if os.path.commonpath([target, folder]) == folder:
                raise UserError(f"--out {out} is inside the data folder {source}: results written there would "
                                "become part of the data; choose an --out outside it")


def _class_names(dataset: str, splits: dict) -> tuple[str, ...]:
    return CLASS_NAMES.get(dataset) or tuple(str(i) for i in range(int(splits["train"][1].max()) + 1))


def read_folder_cached(root: str, num_classes: int | None, dataset: str = "cifar10") -> DatasetFile:
    """An image folder, from the cache when its files are as they were when it was cached."""
    try:
        listing = image_folder.list_image_folder(root, num_classes)
    except DataError:  # a bad folder: name the problem a plain read names first (it may be an image in Train)
        image_folder.read_image_folder(root, num_classes)
        raise
    origin = os.path.realpath(root)  # the cache's key: one entry however the folder is spelled
    fp, cacheable = data_cache.folder_fingerprint(listing)
    path = data_cache.entry_path("folder", os.path.basename(origin), origin)
    hit = data_cache.lookup(path, origin, fp)
    if hit is not None:
        return dataclasses.replace(hit, class_names=_class_names(dataset, hit.splits))
    splits = image_folder.read_image_folder(root, num_classes, listing)
    entry = DatasetFile(splits, _class_names(dataset, splits), origin, fp)
    data_cache.store(path, entry, cacheable)
    return entry


def _tfds_origin(name: str, version_dir: str) -> str:
    return f"tfds:{name}/{os.path.basename(version_dir)} in {os.path.dirname(os.path.dirname(version_dir))}"


def read_tfds_cached(name: str, data_dir: str | None) -> DatasetFile:
    """A TFDS dataset, from the cache (without importing TensorFlow) when its prepared files are unchanged."""
    version_dir = data_cache.tfds_version_dir(name, data_dir)
    fp = data_cache.tfds_fingerprint(version_dir) if version_dir else None
    if fp is not None:
        path = data_cache.entry_path("tfds", f"{name}-{os.path.basename(version_dir)}", version_dir)
        hit = data_cache.lookup(path, _tfds_origin(name, version_dir), fp[0])
        if hit is not None:
            return hit
    splits, used_dir = _read_tfds(name, data_dir, no_cache_reason(name, data_dir, version_dir))
    used_dir = os.path.realpath(used_dir) if os.path.isdir(used_dir) else used_dir  # as tfds_version_dir spells it
    fp = data_cache.tfds_fingerprint(used_dir) if os.path.isdir(used_dir) else None
    entry = DatasetFile(splits, _class_names(name, splits), _tfds_origin(name, used_dir), fp[0] if fp else "")
    if fp is not None:  # not for a mocked or remote dataset: nothing to fingerprint
        data_cache.store(data_cache.entry_path("tfds", f"{name}-{os.path.basename(used_dir)}", used_dir), entry,
                         fp[1])
    return entry


def no_cache_reason(name: str, data_dir: str | None, version_dir: str | None) -> str:
    """Why a TFDS dataset is read with TFDS rather than from the cache (for the message when TFDS is missing)."""
    if data_cache.cache_dir() is None:
        return "the data cache is off (--no-data-cache)"
    if version_dir is None:
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        return f"no prepared {name} is in {where}, so the data cache has no entry of it either"
    return f"the data cache {data_cache.cache_dir()} has no entry for {version_dir}"


def read_tfds(name: str, data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads the train and test splits of a TFDS dataset as uint8 images [n, h, w, c] and int32 labels."""
    return _read_tfds(name, data_dir)[0]


def _read_tfds(name: str, data_dir: str | None, why_tfds: str = "") -> tuple[dict, str]:
    """(the splits, the version folder TFDS read them from); the only function that imports TFDS."""
    try:
        tfds = tf_quiet.tfds()
    except ImportError:
        raise DataError(f"reading TFDS dataset {name!r} needs the `tfds` extra (pip install -e '.[tfds]'), or "
                        f"--data-dir pointing at a .npz exported from it (`python run.py --task export --dataset "
                        f"{name} --out {name}.npz` where TFDS is installed){'; ' + why_tfds if why_tfds else ''}"
                        ) from None
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name and the like: TFDS raises several types
        raise DataError(f"cannot open TFDS dataset {name!r}: {e}") from None
    if not builder.is_prepared():
        where = data_dir or "TFDS's default data dir (~/tensorflow_datasets)"
        if not download_reachable(name):
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where}, and it cannot be downloaded from this "
                f"machine (no network). Either point --data-dir at an image folder in the course layout, "
                f"{FOLDER_LAYOUT}, or at a dataset file (.npz, made with --task export), or point --tfds-data-dir "
                f"(or TFDS_DATA_DIR) at a folder where the dataset is prepared (made with `tfds build {name}` on a "
                "machine with internet access)."
            )
        builder.download_and_prepare()
    return {split: _tfds_split_to_numpy(builder, split) for split in ("train", "test")}, str(builder.data_dir)


def _tfds_split_to_numpy(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split as numpy arrays; a damaged prepared dataset (a truncated or missing shard) is one DataError."""
    tf = tf_quiet.tensorflow()
    images, labels = [], []
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False, as_supervised=True).batch(4096)
        for x, y in tf_quiet.tfds().as_numpy(ds):
            images.append(x)
            labels.append(y)
    except tf.errors.OpError as e:
        raise DataError(f"the prepared TFDS dataset {builder.name!r} in {builder.data_dir} is damaged: its {split} "
                        f"split cannot be read ({_op_error_reason(e)}); delete that folder and prepare it again "
                        f"(`tfds build {builder.name}`), or point --tfds-data-dir at a good copy") from None
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32)


def _op_error_reason(e) -> str:
    """TensorFlow's error message without its op/function decorations: 'DataLossError: truncated record ...'."""
    message = getattr(e, "message", str(e))
    message = message.split("}}", 1)[-1].split(" [Op:", 1)[0].strip(" ':")
    return f"{e.__class__.__name__}: {message[:200]}"


def download_reachable(name: str, timeout: float = 3.0) -> bool:
    """True when the dataset's download host answers; bounded even when name resolution hangs."""
    host = DOWNLOAD_HOSTS.get(name, "storage.googleapis.com")
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result)


read_image_folder = image_folder.read_image_folder  # root, num_classes -> {'train'|'test': (uint8, int32)}


# --------------------------------------------------------------------------------------------- transforms


def to_image_mode(images: np.ndarray, mode: str) -> np.ndarray:
    """uint8 [n, h, w, c] -> uint8 'gray28' [n, 28, 28, 1] (the course format) or 'rgb32' [n, 32, 32, 3].
    The pixels stay 8-bit (a quarter of float32's bytes on the device); `to_float` scales them where used."""
    if mode == "gray28":
        gray = to_grayscale_uint8(images)
        return gray if gray.shape[1:3] == (28, 28) else resize_uint8(gray, (28, 28))
    if images.shape[-1] != 3 or images.shape[1:3] != (32, 32):
        raise DataError(f"image mode 'rgb32' needs 32x32 colour images, these are {images.shape[1]}x"
                        f"{images.shape[2]} with {images.shape[3]} channel(s); use --image-mode gray28")
    return np.asarray(images, np.uint8)


def to_grayscale_uint8(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded to 8 bits as PIL's convert('L') does: [n, h, w, 3|1] uint8 -> [n, h, w, 1] uint8."""
    if images.shape[-1] == 1:
        return images
    luma = images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


def resize_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 [n, h, w, c], rounded back to uint8 (the course shrank CIFAR10 to 28x28).

    jax.image.resize on the CPU, so that no source needs TensorFlow and every machine gets the same pixels;
    tf.image.resize (what this used before) gives the same value for all but ~0.06% of the pixels of 32x32
    CIFAR10 shrunk to 28x28, which differ by one level (docs/data.md).
    """
    import jax  # pylint: disable=import-outside-toplevel

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        x = jax.device_put(images.astype(np.float32), cpu)
        out = np.asarray(jax.image.resize(x, (len(images), *size, images.shape[-1]), "linear", antialias=True))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class holdout. Returns sorted (train_idx, val_idx); each class keeps `fraction` of its
    examples in validation (at least one when the class has two or more and fraction > 0)."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(fraction * len(idx)))
        if fraction > 0 and n_val == 0 and len(idx) >= 2:
            n_val = 1
        val.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


# ----------------------------------------------------------------------------------------------- batching


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Yields every example once, in order, in batches of `batch_size`: the split padded as the training core
    pads it on the device (`common.core.batches.padded`), with a 'mask' (1 for real examples)."""
    images, labels, mask = padded(split.images, split.labels, batch_size)
    for start in range(0, len(labels), batch_size):
        end = start + batch_size
        yield {"image": to_float(images[start:end]), "label": labels[start:end], "mask": mask[start:end]}
