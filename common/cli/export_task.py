"""`--task export`: one source (image folder, TFDS dataset or dataset file) written as a portable dataset file.

    python run.py --task export --data-dir ../shared/data/elec576/CIFAR10 --out data/cifar10-course.npz
    python run.py --task export --dataset mnist --out data/mnist.npz          (TFDS; --tfds-data-dir / TFDS_DATA_DIR)

The file (common/data/dataset_file.py, docs/data.md) holds the decoded uint8 splits before any preprocessing, so
`--data-dir FILE.npz` gives a task the same validation, holdout, preprocessing and results as the source, on a
machine without TensorFlow.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from common import cli, data
from common.core.errors import UserError
from common.data import dataset_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=tuple(data.CLASS_NAMES),
                        help="the TFDS dataset read when --data-dir is not given, and the class names written "
                             "(default: cifar10)")
    cli.add_data_arguments(parser, "e.g. ../shared/data/elec576/CIFAR10", image_mode=False)


def check_out(out: str) -> str:
    """The absolute path of the file to write; one line when it cannot be one, or when something is there that
    this project did not write (only an earlier export is replaced)."""
    path = os.path.abspath(out)
    if not dataset_file.is_dataset_file(path):
        raise UserError(f"--out {out}: --task export writes one dataset file, name it FILE{dataset_file.EXTENSION} "
                        "(e.g. --out data/cifar10-course.npz)")
    if os.path.isdir(path):
        raise UserError(f"--out {out} is a folder; name the dataset file to write")
    if os.path.lexists(path) and not dataset_file.has_marker(path):  # checked before the data are read
        what = "a link" if os.path.islink(path) else f"not a dataset file this project wrote (no format entry " \
            f"{dataset_file.FORMAT!r})"
        raise UserError(f"--out {out} is not replaced: it is {what}; nothing there is touched: choose another "
                        "--out, or move that file away")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write below {parent}; choose another --out")
    return path


def run(args) -> int:
    path = check_out(args.out)
    config = data.DataConfig(dataset=args.dataset or "cifar10", data_dir=args.data_dir,
                             tfds_data_dir=args.tfds_data_dir)
    entry, _ = data.read_source(config, len(data.CLASS_NAMES[config.dataset]))
    entry = dataclasses.replace(entry, class_names=data.CLASS_NAMES[config.dataset])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset_file.write(path, entry)
    shapes = ", ".join(f"{s} {list(x.shape)}" for s, (x, _) in entry.splits.items())
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB): {shapes} from {entry.source}", file=sys.stderr)
    return 0


EXPORT = cli.Task("export", "write a folder or TFDS dataset as one portable .npz (--data-dir FILE.npz then reads it)",
                  add_arguments, run, out_kind="file")
