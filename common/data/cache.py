"""The decoded-array cache: an image folder or a TFDS dataset, once decoded, kept as a dataset file (.npz).

The first load of a source writes its arrays (common/data/dataset_file.py's format) atomically into the cache folder;
a later load whose source fingerprint matches reads them back (0.2 s, no TensorFlow). The fingerprint is what
can be known without decoding: for a folder every listed file's path (relative to the folder), label, size,
mtime and ctime; for TFDS the prepared version folder's dataset_info.json and its files' names, sizes, mtimes
and ctimes. The ctime catches a rewrite that kept the size and set the mtime back (it cannot be set back).
Entries are keyed on the source's resolved path, so one folder however spelled (relative, absolute, through a
link, `x/../x`) is one entry. An entry that is stale (the source changed), truncated or not ours is reported in
one line and rebuilt, never used.

Where: `--data-cache DIR`, else $ELEC576_DATA_CACHE, else $XDG_CACHE_HOME/elec576-jax/datasets (default
~/.cache/elec576-jax/datasets); `--no-data-cache` (or ELEC576_DATA_CACHE set to '') turns it off. The flags
set the variable, so every task of one command (and `--task all`'s chain) uses the same cache.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from typing import TYPE_CHECKING

from common.core.errors import DataError, UserError

if TYPE_CHECKING:  # numpy, which `run.py --help` (this module's flags) need not import
    from common.data import dataset_file

CACHE_ENV = "ELEC576_DATA_CACHE"
RACY_SECONDS = 2.0  # files changed this recently could change again unseen within one mtime tick: not cached


def cache_dir() -> str | None:
    """The cache folder, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return value or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "elec576-jax", "datasets")


class _CacheDir(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[CACHE_ENV] = os.path.abspath(values)
        setattr(namespace, self.dest, values)


class _NoCache(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[CACHE_ENV] = ""
        setattr(namespace, self.dest, True)


def add_arguments(group) -> None:
    """--data-cache DIR and --no-data-cache (into an argparse group)."""
    group.add_argument("--data-cache", metavar="DIR", action=_CacheDir,
                       help="folder of decoded datasets, so a folder or TFDS dataset is decoded once "
                            "(default: $XDG_CACHE_HOME/elec576-jax/datasets)")
    group.add_argument("--no-data-cache", nargs=0, action=_NoCache, help="neither read nor write the data cache")


def note(message: str) -> None:
    print(f"data cache: {message}", file=sys.stderr, flush=True)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def entry_path(kind: str, name: str, identity: str) -> str | None:
    """Where the entry of one source lives ('folder-CIFAR10-<hash of its path>.npz'), None when the cache is off."""
    directory = cache_dir()
    if directory is None:
        return None
    return os.path.join(directory, f"{kind}-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}-{_digest(identity)}.npz")


# --------------------------------------------------------------------------------------- fingerprints


def fingerprint(records: list[tuple], newest_ns: int) -> tuple[str, bool]:
    """(fingerprint of the (path, ..., size, mtime, ctime) records, whether the newest mtime is old enough for
    the entry to be cached: a file written within one mtime tick of the caching could change unseen)."""
    h = hashlib.blake2b(digest_size=16)
    for r in records:
        h.update(repr(r).encode() + b"\n")
    return f"blake2b:{h.hexdigest()}", newest_ns < time.time_ns() - RACY_SECONDS * 1e9


def folder_fingerprint(listing: dict) -> tuple[str, bool]:
    """Of common.data.image_folder.list_image_folder's listing: every file's split, path inside the folder (split
    folder, label, name: not the path as typed, so that every spelling of the folder has one fingerprint),
    size, mtime and ctime."""
    records = [(split, name, f.label, os.path.basename(f.path), f.size, f.mtime_ns, f.ctime_ns)
               for split, (name, files) in listing.items() for f in files]
    return fingerprint(records, max(f.mtime_ns for _, files in listing.values() for f in files))


def tfds_version_dir(name: str, data_dir: str | None) -> str | None:
    """The prepared `DATA_DIR/name/<version>` folder with the highest version (what tfds.builder reads when
    the installed TFDS's version of `name` is the newest prepared one), found without importing TFDS."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    folder = os.path.join(os.path.realpath(root), name)  # one cache entry however the folder is spelled
    try:
        versions = [v for v in os.listdir(folder) if re.fullmatch(r"\d+\.\d+\.\d+", v)
                    and os.path.isfile(os.path.join(folder, v, "dataset_info.json"))]
    except OSError:  # not there, or not a local path (gs://...)
        return None
    return os.path.join(folder, max(versions, key=lambda v: tuple(map(int, v.split("."))))) if versions else None


def tfds_fingerprint(version_dir: str) -> tuple[str, bool] | None:
    """Of a prepared TFDS version folder: dataset_info.json's bytes and every file's name, size, mtime, ctime."""
    try:
        with open(os.path.join(version_dir, "dataset_info.json"), "rb") as f:
            info = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
        stats = sorted((e.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                       for e in os.scandir(version_dir) for st in (e.stat(),))
    except OSError:
        return None
    return fingerprint([("dataset_info.json", info)] + stats, max(s[2] for s in stats))


# ------------------------------------------------------------------------------------ reading, writing


def lookup(path: str | None, source: str, source_fingerprint: str) -> dataset_file.DatasetFile | None:
    """The entry at `path` when it is whole and was made from `source` as it is now; else None (with a note
    when an entry was there but cannot be used: it is then rebuilt)."""
    from common.data import dataset_file  # pylint: disable=import-outside-toplevel,redefined-outer-name

    if path is None or not os.path.exists(path):
        return None
    try:
        entry = dataset_file.read(path)
    except DataError as e:
        note(f"{e}; rebuilding it")
        return None
    if entry.source != source or entry.source_fingerprint != source_fingerprint:
        why = "another source" if entry.source != source else "an earlier state of the source (files changed)"
        note(f"{path} was made from {why}; rebuilding it from {source}")
        return None
    return entry


def store(path: str | None, entry: dataset_file.DatasetFile, cacheable: bool) -> None:
    """Writes the entry (atomically); a cache that cannot be written is a note, never a failure."""
    from common.data import dataset_file  # pylint: disable=import-outside-toplevel,redefined-outer-name

    if path is None or not cacheable:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        dataset_file.write(path, entry)
    except (OSError, UserError) as e:  # atomic_write_bytes words EROFS, ENOSPC, EACCES as a UserError about --out
        note(f"cannot write {path} ({_reason(e)}); going on without the cache")


def _reason(e: Exception) -> str:
    """The OS's words for why a write failed (the OSError behind a UserError of common.runtime.outputs, which names
    --out and is not about the cache)."""
    cause = e if isinstance(e, OSError) else e.__context__
    if isinstance(cause, OSError):
        return f"{cause.__class__.__name__}: {cause.strerror or cause}"
    return str(e)
