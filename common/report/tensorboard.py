"""TensorBoard event files of a run's history, written without TensorFlow.

`write_history(logdir, history, labels)` writes one run directory per model (`<logdir>/<label>/events.out.
tfevents...`) with one scalar per metric and epoch, so that `tensorboard --logdir <out>/tensorboard` overlays
the models of a run (seeds, learning rates, L2 weights) and runs of different commands. Training calls it after
every epoch, so the curves grow while a run trains (`<out>.partial/tensorboard/` until the run finishes).

The format, hand-encoded because it is small (TensorFlow's `tensorflow/core/util/event.proto` and
`summary.proto`, TFRecord framing):

    file    = record*                    the first record holds Event{wall_time, file_version: "brain.Event:2"}
    record  = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)  (little-endian)
    Event   = 1: wall_time (double) | 2: step (int64) | 3: file_version (string) | 5: summary (Summary)
    Summary = 1: value (repeated Value);  Value = 1: tag (string) | 2: simple_value (float)

`tests/test_tensorboard.py` reads the files back with TensorBoard's own `EventAccumulator`.
"""
from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from common.core.history import model_histories
from common.runtime import outputs

EVENTS_PREFIX = "events.out.tfevents."
FILE_VERSION = b"brain.Event:2"
# Per-split metrics as "<metric>/<split>" tags, so TensorBoard groups the train, validation and test curves of
# one metric together; every other number of a history row keeps its own name.
SPLITS = ("train_running", "train", "val", "test")
METRICS = ("loss", "accuracy")
NOT_SCALARS = ("epoch",)  # the step, not a curve


# ------------------------------------------------------------------------------------------- encoding


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # the Castagnoli polynomial, bit-reversed
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as TFRecord uses it; crc32c(b"123456789") == 0xE3069283."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant (so a CRC of CRCs is not trivial)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2) + _varint(len(data)) + data


def scalar_summary(tag: str, value: float) -> bytes:
    """A Summary with one Value{tag, simple_value} (float32, as TensorBoard stores simple values)."""
    value_msg = _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value)
    return _bytes_field(1, value_msg)


def event(wall_time: float, step: int | None = None, summary: bytes | None = None,
          file_version: bytes | None = None) -> bytes:
    """An Event message: wall_time (seconds since the epoch), then step, file_version or summary."""
    msg = _field(1, 1) + struct.pack("<d", wall_time)
    if step is not None:
        msg += _field(2, 0) + _varint(step)
    if file_version is not None:
        msg += _bytes_field(3, file_version)
    if summary is not None:
        msg += _bytes_field(5, summary)
    return msg


# ------------------------------------------------------------------------------------------- histories


def scalar_tag(key: str) -> str:
    """History key -> TensorBoard tag: 'val_accuracy' -> 'accuracy/val'; other keys unchanged."""
    for split in SPLITS:
        for metric in METRICS:
            if key == f"{split}_{metric}":
                return f"{metric}/{split}"
    return key


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """{tag: value} of every finite number of one model's history row (None, an empty split, is left out)."""
    out = {}
    for key, value in row.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[scalar_tag(key)] = float(value)
    return out


def _number(x: float) -> str:
    return f"{x:g}"


def model_labels(specs: Sequence[Any]) -> list[str]:
    """A run-directory name per model from what differs between them (objects with `seed`, `lr` and a
    `penalty` dict, as `common.core.state.ModelSpec`): 'seed0'; 'seed1', 'seed2', ...; 'lr0.0003'; 'lr0.0003_seed1';
    'conv_l2_0.01_fc_l2_0'. One model: 'seed<seed>'."""
    specs = list(specs)
    parts: list[list[str]] = [[] for _ in specs]
    if len({s.lr for s in specs}) > 1:
        for p, s in zip(parts, specs):
            p.append(f"lr{_number(s.lr)}")
    for key in (specs[0].penalty if specs else {}):
        if len({s.penalty[key] for s in specs}) > 1:
            for p, s in zip(parts, specs):
                p.append(f"{key}_{_number(s.penalty[key])}")
    if len({s.seed for s in specs}) > 1 or not any(parts):
        for p, s in zip(parts, specs):
            p.append(f"seed{s.seed}")
    return ["_".join(p) for p in parts]


def encode_events(rows: Sequence[dict[str, Any]], start_time: float) -> bytes:
    """One event file's bytes: the file-version record, then every scalar of every row at step = its epoch and
    wall time = `start_time` plus the epochs' seconds so far (so TensorBoard's relative axis is the run's). The
    same rows and start give the same bytes, so the file of epoch N is a prefix of the file of epoch N+1."""
    records = [tfrecord(event(start_time, file_version=FILE_VERSION))]
    wall = start_time
    for i, row in enumerate(rows):
        wall += float(row.get("epoch_seconds") or 0.0)
        step = int(row.get("epoch", i + 1))
        records += [tfrecord(event(wall, step, scalar_summary(tag, v))) for tag, v in scalars(row).items()]
    return b"".join(records)


def write_events(path: str, rows: Sequence[dict[str, Any]], start_time: float) -> None:
    """The event file at `path` made to hold exactly `rows` (see `encode_events`): when the file on disk is a
    prefix of that (the epochs before), only the new records are appended in place, so a TensorBoard reading it
    meanwhile (which may keep the file open) sees them; otherwise (a resumed run whose last epoch differs, a
    record cut by a kill) the file is replaced atomically. Either way a reader never finds a broken record
    other than a half-written last one, which TensorBoard's reader waits out."""
    payload = encode_events(rows, start_time)
    if os.path.isfile(path) and not os.path.islink(path):
        with open(path, "r+b") as f:
            old = f.read()
            if payload.startswith(old):
                f.write(payload[len(old):])
                f.flush()
                os.fsync(f.fileno())
                return
    outputs.atomic_write_bytes(path, payload)


def _start_of(name: str) -> float | None:
    """The start time an event file name of ours carries (`events.out.tfevents.<int seconds>.<host>`)."""
    stamp = name[len(EVENTS_PREFIX):].split(".", 1)[0]
    return float(stamp) if stamp.isdigit() else None


def write_history(logdir: str, history: Sequence[dict[str, Any]], labels: Sequence[str],
                  start_time: float | None = None) -> list[str]:
    """Writes `<logdir>/<label>/events.out.tfevents.<time>.<host>` for each model of a run.

    Called after every epoch (live curves while a run trains: `common.run.results.write_tensorboard`) and at
    the end, each time with the whole history: the file of the epochs before is extended, never duplicated.

    Args:
      logdir: e.g. `<out>/tensorboard`; created if absent.
      history: `fit`'s history, one row per epoch (as history.csv has it before the per-model split): each
        value a number, None, or a list with one value per model when several models trained together.
      labels: one run-directory name per model, in the order of those lists (see `model_labels`).
      start_time: the wall time of the run's start (default: the one in the name of the event file already in a
        model's directory, so that a rerun after each epoch or a resumed run rewrites the same bytes; else now
        minus the history's epoch seconds, in whole seconds as the file name has it).
    Returns the event files written. Other event files in those directories are removed after the new one is
    written, so a run written twice shows its curves once.
    """
    per_model = model_histories(list(history))
    if len(per_model) != len(labels):
        raise ValueError(f"{len(labels)} labels for a history of {len(per_model)} models")
    fresh = float(int(time.time() - sum(float(r.get("epoch_seconds") or 0.0) for r in history)))
    host = socket.gethostname() or "localhost"
    paths = []
    for label, rows in zip(labels, per_model):
        run_dir = os.path.join(logdir, label)
        os.makedirs(run_dir, exist_ok=True)
        ours = sorted(n for n in os.listdir(run_dir) if n.startswith(EVENTS_PREFIX) and _start_of(n) is not None
                      and outputs.TMP_TAG not in n)
        start = start_time if start_time is not None else (_start_of(ours[-1]) if ours else fresh)
        name = ours[-1] if ours and start_time is None else f"{EVENTS_PREFIX}{int(start)}.{host}"
        paths.append(os.path.join(run_dir, name))
        write_events(paths[-1], rows, start)
        for old in os.listdir(run_dir):
            if old.startswith(EVENTS_PREFIX) and old != name:
                os.remove(os.path.join(run_dir, old))
    return paths
