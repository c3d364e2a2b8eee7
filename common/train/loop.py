"""The epochs: training on the device-resident split, the three evaluations, the best epoch. Writes no files.

Each epoch's order is `common.data.epoch_order` (seeded by (seed, epoch) per model), sent to the device as
int32 indices, k steps per call; the images never leave the device. Only explicit read-backs remain: the
running loss for the progress bar (at most twice a second) and each epoch's metric sums.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from common import data as data_lib
from common import interrupt
from common.errors import TrainingDiverged
from common.train import step as step_lib
from common.train.state import model_variables

SPLITS = ("train", "val", "test")


class Splits(NamedTuple):
    """The run's data on the device, each split put there once: train (gathered from by index, and evaluated),
    val and test."""

    train: step_lib.DeviceSplit
    val: step_lib.DeviceSplit
    test: step_lib.DeviceSplit


def put_splits(dataset: data_lib.Dataset, program: step_lib.Program, eval_batch: int) -> Splits:
    return Splits(*(step_lib.put_split(getattr(dataset, s), program.mesh, eval_batch) for s in SPLITS))


def epochs(program: step_lib.Program, splits: Splits, state, rng, seeds: list[int], *, batch_size: int,
           first: int, last: int, describe: Callable[[int], str], progress: bool) -> Iterator[tuple[int, Any, dict]]:
    """Yields (epoch, state, history row) for epochs first..last; Ctrl-C is honoured between calls."""
    for epoch in range(first, last + 1):
        interrupt.check()
        state, row = run_epoch(program, splits, state, rng, seeds, batch_size, epoch, describe(epoch), progress)
        yield epoch, state, row


def run_epoch(program: step_lib.Program, splits: Splits, state, rng, seeds, batch_size: int, epoch: int,
              desc: str, progress: bool):
    """Trains every model on its own order of the epoch, then evaluates the train (eval mode), validation and
    test splits. Returns the state and the epoch's row: per-model lists (model i sees the batches, dropout masks
    and initial weights of the run it would have alone with seed `seeds[i]`; its arithmetic, batched with the
    others', rounds differently, so the numbers agree to float rounding, which grows over a run)."""
    t0 = time.perf_counter()
    state, totals, host_seconds = _train(program, splits.train, state, rng, seeds, batch_size, epoch, desc, progress)
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - t0
    running = summarize(step_lib.to_host(totals))
    if not np.all(np.isfinite(running["loss"])):
        raise TrainingDiverged(f"the training loss became {running['loss']} in epoch {epoch}; stopping "
                               "(lower --lr?). Earlier results and the last good epoch's checkpoint are kept.")
    row = {"epoch": epoch, "train_running_loss": running["loss"], "train_running_accuracy": running["accuracy"],
           "l2_penalty": running["penalty"]}
    for name in SPLITS:
        split = getattr(splits, name)
        result = summarize(step_lib.to_host(program.evaluate(state, split))) if split.size else None
        row[f"{name}_loss"] = None if result is None else result["loss"]
        row[f"{name}_accuracy"] = None if result is None else result["accuracy"]
    n_images = (splits.train.size // batch_size) * batch_size
    row.update(train_seconds=train_seconds, epoch_seconds=time.perf_counter() - t0, host_seconds=host_seconds,
               train_images_per_sec=n_images * len(seeds) / train_seconds)
    return state, row


def _train(program, split, state, rng, seeds, batch_size, epoch, desc, progress):
    """One epoch's training calls; returns (state, metric sums, seconds spent preparing indices)."""
    t0 = time.perf_counter()
    order = np.stack([data_lib.epoch_order(split.size, batch_size, s, epoch) for s in seeds], 1)  # [steps, N, b]
    host = time.perf_counter() - t0
    k, n_steps = program.steps_per_call, len(order)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False, unit="batch", dynamic_ncols=True)
    totals, shown = program.zeros(state), t0
    for start in range(0, n_steps, k):
        interrupt.check()
        t = time.perf_counter()
        idx = step_lib.put(order[start:start + k], program.mesh, P(None, "model", "data"))
        host += time.perf_counter() - t
        state, totals = program.train(state, idx, rng, totals, split.images, split.labels)
        bar.update(min(k, n_steps - start))
        if progress and (time.perf_counter() - shown > 0.5 or start + k >= n_steps):
            shown = time.perf_counter()  # reading the loss syncs with the device: twice a second at most
            sums = step_lib.to_host({k_: totals[k_] for k_ in ("loss_sum", "count")})
            bar.set_postfix(loss=f"{np.mean(sums['loss_sum'] / sums['count']):.3f}",
                            img_s=f"{(start + k) * batch_size * len(seeds) / (shown - t0):.0f}")
    bar.close()
    return state, totals, host


def summarize(total: dict) -> dict[str, list[float]]:
    """Host metric sums [N] -> per-model means, once per epoch."""
    out = {"loss": total["loss_sum"] / total["count"], "accuracy": total["correct"] / total["count"]}
    if "penalty_sum" in total:
        out["penalty"] = total["penalty_sum"] / total["steps"]
    return {k: np.asarray(v, float).reshape(-1).tolist() for k, v in out.items()}


class BestEpoch:
    """The variables of the epoch with the best validation accuracy, per model, kept on the device: the reported
    model is chosen on validation data, never on test. Without a validation split the last epoch is kept."""

    def __init__(self, n_models: int):
        self.val = np.full(n_models, -np.inf)
        self.epoch = np.zeros(n_models, np.int64)
        self.variables = None

    def update(self, epoch: int, val_accuracy, state, mesh=None) -> None:
        n = len(self.val)
        val = np.full(n, float(epoch)) if val_accuracy is None else np.broadcast_to(np.asarray(val_accuracy, float),
                                                                                      (n,))
        improved = val > self.val
        if not improved.any():
            return
        current = model_variables(state)
        if self.variables is None or improved.all():
            # A copy: the next training call may donate (and so invalidate) the state's buffers (common/xla_cpu.py).
            self.variables = jax.tree_util.tree_map(jnp.copy, current)
        else:
            mask = improved if mesh is None else step_lib.put(improved, mesh, P("model"))
            self.variables = jax.tree_util.tree_map(
                lambda best, new: jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, best),
                self.variables, current)
        self.val = np.where(improved, val, self.val)
        self.epoch = np.where(improved, epoch, self.epoch)

    def state_dict(self) -> dict:
        return {"val": self.val, "epoch": self.epoch, "variables": step_lib.to_host(self.variables)}

    def load_state_dict(self, d: dict, mesh) -> None:
        self.val, self.epoch = np.asarray(d["val"], float), np.asarray(d["epoch"], np.int64)
        self.variables = step_lib.put(d["variables"], mesh, P("model"))
