"""The pure training core: `train_models` trains N >= 1 models on arrays and returns their states, best epochs
and per-epoch history. It touches no file, lock, signal or process state: what a run needs beyond that
(resuming, a checkpoint each epoch, Ctrl-C between calls) comes in as hooks (`common.run.fit` passes them).

Each epoch's order is `common.core.batches.epoch_order` (seeded by (seed, epoch) per model), sent to the device as
int32 indices, k steps per call; the images never leave the device. Only explicit read-backs remain: the
running loss for the progress bar (at most twice a second) and each epoch's metric sums.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from common.core import step as step_lib
from common.core.batches import epoch_order
from common.core.config import TrainConfig
from common.core.errors import TrainingDiverged
from common.core.state import init_states, model_grid, model_variables

SPLITS = ("train", "val", "test")
# On a GPU or TPU `auto` runs the epoch as scans of at most this many steps: a call of LeNet5 or LSTM-128
# steps lasts well under a second there, so Ctrl-C and the progress bar still answer within about one.
ACCELERATOR_STEPS_PER_CALL = 250


def _nothing(*_args) -> None:
    return None


class Trained(NamedTuple):
    """What `train_models` returns: the last epoch's state (every leaf [N, ...]), the best-validation epoch of
    each model (`BestEpoch`: its variables on the device), the history rows (per-model lists), the models'
    `ModelSpec`s and the compiled program (its mesh places further arrays)."""

    state: Any
    best: BestEpoch
    history: list[dict[str, Any]]
    specs: list
    program: step_lib.Program


def train_models(model, data, train: TrainConfig, *, penalty_fn: Callable | None = None,
                 penalties: dict[str, tuple[float, ...]] | None = None, specs: list | None = None,
                 optimizer: str = "nadam", program_options: Callable[[int], dict] = None,
                 restore: Callable | None = None, on_epoch: Callable | None = None,
                 between_calls: Callable[[], None] = _nothing, progress: bool = False,
                 describe: Callable[[int], str] = lambda e: f"epoch {e}") -> Trained:
    """Trains `model` (a Flax module: `apply(variables, x, train=..., rngs=..., mutable=...)`) on `data`.

    `data` has .train, .val and .test, each with .images uint8 [n, h, w, c] and .labels int [n] (val and test
    may be empty). `train` gives the batch, epochs, seeds and learning rate(s); `penalties` {name: values}
    lists penalty weights swept as a model axis, `penalty_fn(params, **weights)` adds to the loss; `specs`
    (default `model_grid(train, penalties)`, every combination) chooses the models; `optimizer` names one of
    `state.OPTIMIZERS` (Nadam, the report's, by default).
    Hooks, all optional: `program_options(steps_per_call)` -> `compile_program`'s machine options;
    `restore(state, best, mesh)` -> (state, history) to continue an earlier run (called once, before
    training); `on_epoch(epoch, state, best, history)` after each epoch (and with epoch 0 before training a
    fresh run); `between_calls()` before each compiled call (Ctrl-C).
    """
    specs = specs or model_grid(train, penalties)
    image_shape = tuple(data.train.images.shape[1:])
    mesh = step_lib.make_mesh(len(specs), train.batch_size)
    eval_batch = step_lib.eval_batch_for(train.eval_batch_size, mesh)
    k = steps_per_call(train, len(data.train.labels) // train.batch_size)
    program = step_lib.compile_program(step_lib.make_train_step(penalty_fn), len(specs), mesh,
                                       eval_batch=eval_batch, batch_shape=(train.batch_size,) + image_shape,
                                       steps_per_call=k, **(program_options(k) if program_options else {}))
    state, rng = init_states(model, (1,) + image_shape, specs, optimizer)
    best = BestEpoch(len(specs))
    state, history = restore(state, best, mesh) if restore else (state, [])
    state, rng = step_lib.put((state, rng), mesh, P("model"))
    splits = put_splits(data, program, eval_batch)
    on_epoch = on_epoch or _nothing
    if not history:
        on_epoch(0, state, best, history)
    for epoch, state, row in epochs(program, splits, state, rng, [s.seed for s in specs],  # noqa: B020
                                    batch_size=train.batch_size, first=len(history) + 1, last=train.epochs,
                                    describe=describe, progress=progress, between_calls=between_calls):
        history.append(row)  # each epoch's state replaces the last, which may have been donated
        best.update(epoch, row["val_accuracy"], state, mesh)
        on_epoch(epoch, state, best, history)
    return Trained(state, best, history, specs, program)


def steps_per_call(train: TrainConfig, n_steps: int) -> int:
    """The steps per compiled call: the config's number, or for 'auto' a whole epoch in chunks of at most
    ACCELERATOR_STEPS_PER_CALL on a GPU/TPU, and `train.cpu_steps_per_call` on a CPU (1 for LeNet5, whose
    convolutions XLA:CPU runs ~10x slower inside a scan; measured in docs/accelerator.md)."""
    if train.steps_per_call != "auto":
        return int(train.steps_per_call)
    if jax.default_backend() == "cpu":
        return max(1, min(train.cpu_steps_per_call, n_steps))
    return max(1, math.ceil(n_steps / math.ceil(n_steps / ACCELERATOR_STEPS_PER_CALL)))


class Splits(NamedTuple):
    """The run's data on the device, each split put there once: train (gathered from by index, and evaluated),
    val and test."""

    train: step_lib.DeviceSplit
    val: step_lib.DeviceSplit
    test: step_lib.DeviceSplit


def put_splits(dataset, program: step_lib.Program, eval_batch: int) -> Splits:
    return Splits(*(step_lib.put_split(getattr(dataset, s), program.mesh, eval_batch) for s in SPLITS))


def epochs(program: step_lib.Program, splits: Splits, state, rng, seeds: list[int], *, batch_size: int,
           first: int, last: int, describe: Callable[[int], str], progress: bool,
           between_calls: Callable[[], None] = _nothing) -> Iterator[tuple[int, Any, dict]]:
    """Yields (epoch, state, history row) for epochs first..last; `between_calls()` runs before each call."""
    for epoch in range(first, last + 1):
        between_calls()
        state, row = run_epoch(program, splits, state, rng, seeds, batch_size, epoch, describe(epoch), progress,
                               between_calls)
        yield epoch, state, row


def run_epoch(program: step_lib.Program, splits: Splits, state, rng, seeds, batch_size: int, epoch: int,
              desc: str, progress: bool, between_calls: Callable[[], None] = _nothing):
    """Trains every model on its own order of the epoch, then evaluates the train (eval mode), validation and
    test splits. Returns the state and the epoch's row: per-model lists (model i sees the batches, dropout masks
    and initial weights of the run it would have alone with seed `seeds[i]`; its arithmetic, batched with the
    others', rounds differently, so the numbers agree to float rounding, which grows over a run)."""
    t0 = time.perf_counter()
    state, totals, host_seconds = _train(program, splits.train, state, rng, seeds, batch_size, epoch, desc, progress,
                                             between_calls)
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


def _train(program, split, state, rng, seeds, batch_size, epoch, desc, progress, between_calls):
    """One epoch's training calls; returns (state, metric sums, seconds spent preparing indices)."""
    t0 = time.perf_counter()
    order = np.stack([epoch_order(split.size, batch_size, s, epoch) for s in seeds], 1)  # [steps, N, b]
    host = time.perf_counter() - t0
    k, n_steps = program.steps_per_call, len(order)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False, unit="batch", dynamic_ncols=True)
    totals, shown = program.zeros(state), t0
    for start in range(0, n_steps, k):
        between_calls()
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
            # A copy: the next training call may donate (and so invalidate) the state's buffers (runtime/xla_cpu.py).
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
