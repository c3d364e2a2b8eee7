"""What a finished run reports and writes: the metrics of the selected epoch, the divergence rule, and the
files (history.csv, metrics.json, the figure, checkpoint/). The model axis is squeezed here, once: a
one-model run's history and metrics hold plain numbers, a several-model run's per-model lists.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from common.core.history import mean_rows, model_histories, per_model_rows, row_value, split_metrics
from common.core.state import model_slice
from common.report import plotting, provenance, tensorboard
from common.runtime import checkpoint as ckpt
from common.runtime import outputs

HISTORY_CSV = outputs.HISTORY_CSV
METRICS_JSON = outputs.METRICS_JSON
TENSORBOARD_DIR = "tensorboard"  # <out>/tensorboard/<model>/events.out.tfevents.*
DIVERGENCE_GROWTH = 10.0  # last epoch's running loss over the first epoch's
DIVERGENCE_PER_LN_CLASS = 1e3  # or above this many times a uniform guess's loss, ln(classes)
DESCRIPTIVE = ("command", "data_source", "environment")  # the path-bearing fields written for people to read


def portable_path(path: str | None, start: str) -> str | None:
    """`path` relative to the folder `start` (the folder of the file that records it), both as committed, so it
    stays true when the results folder moves and never names a `.partial` folder that is gone."""
    if not path:
        return path
    return os.path.relpath(outputs.committed_path(path), outputs.committed_path(start))


def portable(value: Any, root: str) -> Any:
    """`value` (a JSON tree) with the machine's absolute paths in its strings written as the report writes them
    (`provenance.relative_paths`: the results `root` as `$R`, or relative to the repository; folders above the
    repository as '..'), `.partial` working names dropped."""
    if isinstance(value, str):
        return provenance.relative_paths(value.replace(outputs.PARTIAL + os.sep, os.sep), outputs.committed_path(root))
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    return value


def results_root(folder: str) -> str:
    """The results folder a run's folder belongs to, as committed: the nearest of its parent and grandparent
    (a sweep's member) that `--task all` made (it holds run_all.json), else its parent."""
    parent = os.path.dirname(outputs.committed_path(folder))
    for candidate in (parent, os.path.dirname(parent)):
        if any(os.path.isfile(os.path.join(c, "run_all.json")) for c in (candidate, candidate + outputs.PARTIAL)):
            return candidate
    return parent


def readable(record: dict, root: str) -> dict:
    """metrics.json or run.json with its DESCRIPTIVE fields `portable`; the config keeps the paths as given
    (they reload the data and are compared on resume)."""
    return {k: portable(v, root) if k in DESCRIPTIVE else v for k, v in record.items()}


def finished_metrics(folder: str, config: dict, fingerprint: str) -> dict | None:
    """metrics.json of the finished result of ours in `folder` when it was trained with the recorded `config` on
    the data of `fingerprint` (one written before fingerprints passes that test), else None: what a sweep keeps."""
    metrics = outputs.read_json(os.path.join(folder, METRICS_JSON))
    if outputs.read_marker(folder) is None or metrics is None:
        return None
    same_config = metrics.get("config") == json.loads(json.dumps(config, default=outputs.jsonable))
    return metrics if same_config and metrics.get("data_fingerprint", fingerprint) == fingerprint else None


def squeeze_rows(history: list[dict], n_models: int) -> list[dict]:
    """Rows of per-model lists; with one model, its plain values."""
    if n_models > 1:
        return history
    return [{k: (v[0] if isinstance(v, list) else v) for k, v in row.items()} for row in history]


def final_metrics(history: list[dict], specs, best_epoch: np.ndarray, *, wall: float, sizes: dict,
                  has_val: bool, param_count: int) -> dict[str, Any]:
    """metrics.json's numbers: the selected (best validation) epoch's per split, the last epoch's, timings."""
    n = len(specs)
    keys = [f"{split}_{m}" for split in ("train", "val", "test") for m in ("accuracy", "loss")]
    keys += ["train_running_accuracy", "train_running_loss"]  # Keras's: running means with dropout on
    selected = [{k: row_value(history[int(best_epoch[i]) - 1], k, i) for k in keys} for i in range(n)]
    last = [{k: row_value(history[-1], k, i) for k in keys} for i in range(n)]
    after = history[1:]  # the epochs after the first, whose first steps compile; none in a one-epoch run

    def median(key: str, rows: list[dict]) -> float | None:
        return float(np.median([r[key] for r in rows])) if rows else None

    per_model_after = median("train_images_per_sec", after)
    return {
        **split_metrics(selected),
        "selected_epoch": int(best_epoch[0]) if n == 1 else best_epoch.tolist(),
        "selection": "best validation accuracy" if has_val else "last epoch (no validation split)",
        "last_epoch": split_metrics(last),
        "epochs": len(history), "seeds": sorted({m.seed for m in specs}),
        "models": [dataclasses.asdict(m) for m in specs],
        # Every time names its basis: the medians over the epochs after the first (None with one epoch), and the
        # first epoch alone, compilation included. Images/s count every model; wall: the whole run.
        "wall_seconds": wall,
        "train_seconds_per_epoch_after_first": median("train_seconds", after),  # evaluation left out
        "epoch_seconds_after_first": median("epoch_seconds", after),  # training and evaluation
        "train_images_per_sec_after_first": per_model_after,
        "train_images_per_sec_per_model_after_first": None if per_model_after is None else per_model_after / n,
        "train_seconds_first_epoch": float(history[0]["train_seconds"]),
        "epoch_seconds_first_epoch": float(history[0]["epoch_seconds"]),
        "train_images_per_sec_first_epoch": float(history[0]["train_images_per_sec"]),
        "param_count": param_count, **{f"{k}_size": v for k, v in sizes.items()},
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def divergence(history: list[dict], n_classes: int) -> dict[str, Any]:
    """{'diverged': bool, ...}: the training exploded without becoming NaN (a too-large --lr). The rule: the
    last epoch's running training loss is over 10x the first epoch's, or over 1000 ln(classes), for any model.
    """
    first = np.asarray(history[0]["train_running_loss"], float)
    last = np.asarray(history[-1]["train_running_loss"], float)
    bad = (last > DIVERGENCE_GROWTH * first) | (last > DIVERGENCE_PER_LN_CLASS * np.log(max(n_classes, 2)))
    out: dict[str, Any] = {"diverged": bool(bad.any())}
    if bad.ndim and bad.size > 1:
        out["diverged_per_model"] = bad.tolist()
    return out


def warn_if_diverged(metrics: dict, history: list[dict]) -> None:
    if metrics["diverged"]:
        first, last = np.max(history[0]["train_running_loss"]), np.max(history[-1]["train_running_loss"])
        tqdm.write(f"warning: training diverged: the training loss ended at {last:.3g} (epoch 1: {first:.3g}; "
                   f"the limit is 10x epoch 1's or 1000 ln(classes)). The results are kept, marked \"diverged\": "
                   f"true in {METRICS_JSON}, but mean nothing: lower --lr", file=sys.stderr)


def epoch_line(row: dict, epochs: int) -> str:
    def fmt(v):
        return "-" if v is None else f"{np.mean(v):.4f}"

    return (f"epoch {row['epoch']:>3}/{epochs}  train acc {fmt(row['train_accuracy'])} loss {fmt(row['train_loss'])}"
            f" | val acc {fmt(row['val_accuracy'])} loss {fmt(row['val_loss'])}"
            f" | test acc {fmt(row['test_accuracy'])} loss {fmt(row['test_loss'])}"
            f" | {row['epoch_seconds']:.1f}s, {row['train_images_per_sec']:.0f} img/s")


def write(run: outputs.RunDir, history: list[dict], metrics: dict, variables, specs, run_info: dict, *,
          title: str, figure_name: str) -> None:
    """history.csv, metrics.json, the curves and checkpoint/ (model 0's variables; all models' beside them)
    into the run's working folder. `history` and `variables` are squeezed (`squeeze_rows`, `state.squeeze`)."""
    n_models = len(specs)
    outputs.write_csv(run.path(HISTORY_CSV), per_model_rows(history, specs))
    root = results_root(run.final)
    outputs.atomic_write_json(run.path(METRICS_JSON), readable(metrics, root))
    suffix = "" if n_models == 1 else f" (mean of {n_models} models)"
    selected = metrics["selected_epoch"] if n_models == 1 else None
    plotting.plot_history(mean_rows(history), run.path(figure_name), title + suffix, selected,
                          per_model=model_histories(history) if n_models > 1 else None)
    first = variables if n_models == 1 else model_slice(variables, 0)
    ckpt.save_checkpoint(run.path(ckpt.CHECKPOINT_DIR), first,
                         {**readable(run_info, root), "seed": specs[0].seed, "lr": specs[0].lr,
                          "epoch": metrics["selected_epoch"]})
    if n_models > 1:
        ckpt.save_tree(run.path(ckpt.CHECKPOINT_DIR, "all_models.msgpack"), variables)
    write_tensorboard(run, history, specs)


def write_tensorboard(run: outputs.RunDir, history: list[dict], specs) -> None:
    """TensorBoard's curves of every model (`tensorboard --logdir results` overlays runs and seeds), written after
    every epoch into the working folder (live curves; they move with it at commit) and at the end."""
    tensorboard.write_history(run.path(TENSORBOARD_DIR), squeeze_rows(history, len(specs)),
                              tensorboard.model_labels(specs))

