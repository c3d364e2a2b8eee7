"""Training-loop pieces shared by the LeNet5 and recurrent experiments.

The steps are pure functions of (state, batch, rng); the loop around them only moves numpy batches in and
summed metrics out. Metrics are kept as sums and counts on the device and normalised once per epoch.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from tqdm.auto import tqdm

from common import data as data_lib
from common.errors import TrainingDiverged

Metrics = dict[str, jax.Array]


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the batch-norm running statistics ({} for models without batch norm)."""

    batch_stats: Any = None
    # Per-model penalty weights (e.g. {'conv_l2': ..., 'fc_l2': ...}) when they are swept as a vmapped axis;
    # None: the penalty function's own defaults.
    penalty_weights: Any = None


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, input_shape, rng) -> TrainState:
    """Initialises `model` on a dummy batch of `input_shape` ([batch, ...]) and wraps it with `tx`."""
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros(input_shape, jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))


def model_variables(state: TrainState) -> dict:
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy from logits: [b, classes], [b] -> [b]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_step(penalty_fn: Callable[[Any], jax.Array] | None = None):
    """Returns the pure `train_step(state, batch, rng) -> (state, metrics)` for a classifier.

    The objective is mean cross-entropy + `penalty_fn(params, **state.penalty_weights)` (L2 terms; the
    weights travel in the state so that they can differ between vmapped models); metrics report the cross-entropy
    alone as sums, so that train, validation and test losses are the same quantity.
    """

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        dropout_rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, updates = state.apply_fn(variables, batch["image"], train=True,
                                             rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
            ce = cross_entropy(logits, batch["label"])
            weights = state.penalty_weights or {}
            penalty = penalty_fn(params, **weights) if penalty_fn is not None else jnp.zeros(())
            return ce.mean() + penalty, (ce, logits, updates, penalty)

        grads, (ce, logits, updates, penalty) = jax.grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
        metrics = {
            "loss_sum": ce.sum(),
            "correct": jnp.sum(jnp.argmax(logits, -1) == batch["label"]),
            "count": jnp.asarray(ce.shape[0], jnp.float32),
            "penalty_sum": penalty,
            "steps": jnp.ones(()),
        }
        return state, metrics

    return train_step


def scan_train_steps(train_step):
    """Several training steps in one call: `(state, batches, rng, totals) -> (state, totals)`.

    `batches` carry a leading [steps] axis; one `lax.scan` runs `train_step` over it, so the device sees no
    per-step dispatch or host sync, and each step's metrics are added to the running `totals` inside the
    scan, in the per-step loop's order (the sums, like the parameters, are those of that loop).
    """

    def steps(state, batches: dict, rng: jax.Array, totals: Metrics):
        def body(carry, batch):
            state, totals = carry
            state, metrics = train_step(state, batch, rng)
            return (state, jax.tree_util.tree_map(jnp.add, totals, metrics)), None

        (state, totals), _ = jax.lax.scan(body, (state, totals), batches)
        return state, totals

    return steps


def zero_metrics(train_step, state, batch: dict, rng: jax.Array) -> Metrics:
    """Zeros shaped like the metrics `train_step` returns (traced abstractly; nothing runs)."""
    shapes = jax.eval_shape(train_step, state, batch, rng)[1]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def eval_step(state: TrainState, batch: dict) -> Metrics:
    """Summed loss and correct predictions over the real (mask == 1) examples of one padded batch."""
    logits = state.apply_fn(model_variables(state), batch["image"], train=False)
    mask = batch["mask"]
    return {
        "loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }


def add_metrics(total: Metrics | None, new: Metrics) -> Metrics:
    return new if total is None else jax.tree_util.tree_map(jnp.add, total, new)


def summarize(total: Metrics) -> dict[str, Any]:
    """Sums -> means, once per epoch. Works elementwise when the metrics carry a leading seed axis."""
    total = jax.device_get(total)
    out = {"loss": total["loss_sum"] / total["count"], "accuracy": total["correct"] / total["count"]}
    if "penalty_sum" in total:
        out["penalty"] = total["penalty_sum"] / total["steps"]
    return {k: (v.tolist() if isinstance(v, np.ndarray) and v.ndim else float(v)) for k, v in out.items()}


def evaluate(eval_fn, state, split: data_lib.Split, batch_size: int) -> dict[str, Any] | None:
    """Mean loss and accuracy over every example of `split` (None for an empty split)."""
    if len(split) == 0:
        return None
    total = None
    for batch in data_lib.eval_batches(split, batch_size):
        total = add_metrics(total, eval_fn(state, batch))
    return summarize(total)


@dataclasses.dataclass
class EpochResult:
    epoch: int
    state: Any
    row: dict[str, Any]  # one row of history.csv


def train_epochs(
    state,
    train_fn,
    eval_fn,
    dataset: data_lib.Dataset,
    *,
    epochs: int,
    batch_size: int,
    eval_batch_size: int,
    seeds: Sequence[int],
    rngs: jax.Array,
    start_epoch: int = 0,
    desc: str = "train",
    progress: bool = True,
    steps_per_call: int = 1,
):
    """Yields an `EpochResult` after each epoch: trains on a permutation seeded by (seed, epoch), then
    evaluates the train (in eval mode), validation and test splits.

    With one seed, `train_fn(state, batch, rng)` and `eval_fn(state, batch)` are the jitted steps and `rngs`
    one key. With several, they are vmapped over a leading model axis: each model gets its own batches (its
    own seed's permutation, stacked) and key, so model i follows exactly the run it would have alone with
    seed `seeds[i]`; the metrics in each row are then lists, one entry per model.

    With `steps_per_call` k > 1, `train_fn(state, batches, rng, totals) -> (state, totals)` is a
    `scan_train_steps` function that takes k batches stacked along a new leading axis (the epoch's last call
    takes what is left).

    Raises TrainingDiverged when the epoch's training loss is not finite.
    """
    n_batches = data_lib.num_train_batches(len(dataset.train), batch_size)
    for epoch in range(start_epoch + 1, epochs + 1):
        total, t0 = None, time.perf_counter()
        batches = _batches_for_models(dataset.train, batch_size, seeds, epoch)
        if steps_per_call > 1:
            batches = _stacked(batches, steps_per_call)
        bar = tqdm(total=n_batches, desc=f"{desc} epoch {epoch}/{epochs}", disable=not progress, leave=False,
                   unit="batch", dynamic_ncols=True)
        done, last_shown = 0, t0
        for batch in batches:
            if steps_per_call > 1:
                state, total = train_fn(state, batch, rngs, total)
                steps = len(batch["label"])
            else:
                state, metrics = train_fn(state, batch, rngs)
                total, steps = add_metrics(total, metrics), 1
            bar.update(steps)
            done += steps
            if progress and (time.perf_counter() - last_shown > 0.5 or done == n_batches):
                # Reading the loss syncs with the device, so do it only twice a second.
                last_shown = time.perf_counter()
                loss = np.mean(np.asarray(total["loss_sum"]) / np.asarray(total["count"]))
                bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{done * batch_size / (time.perf_counter() - t0):.0f}")
        bar.close()
        jax.block_until_ready(state)
        train_seconds = time.perf_counter() - t0
        running = summarize(total)
        if not np.all(np.isfinite(running["loss"])):
            raise TrainingDiverged(f"the training loss became {running['loss']} in epoch {epoch}; stopping "
                                   "(lower --lr?). Earlier results and the last good epoch's checkpoint are kept.")
        row = {"epoch": epoch, "train_running_loss": running["loss"], "train_running_accuracy": running["accuracy"],
               "l2_penalty": running["penalty"]}
        for name, split in (("train", dataset.train), ("val", dataset.val), ("test", dataset.test)):
            result = evaluate(eval_fn, state, split, eval_batch_size)
            row[f"{name}_loss"] = None if result is None else result["loss"]
            row[f"{name}_accuracy"] = None if result is None else result["accuracy"]
        row["train_seconds"] = train_seconds
        row["epoch_seconds"] = time.perf_counter() - t0
        row["train_images_per_sec"] = n_batches * batch_size * len(seeds) / train_seconds
        yield EpochResult(epoch, state, row)


def stack_batches(batches: Sequence[dict]) -> dict:
    """Host batches stacked along a new leading axis: [n, ...] per key (per model, or per scanned step)."""
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def _stacked(batches: Iterator[dict], k: int) -> Iterator[dict]:
    """Groups a stream of batches into stacks of k along a new leading axis (the last may hold fewer)."""
    while group := list(itertools.islice(batches, k)):
        yield stack_batches(group)


def _batches_for_models(split, batch_size: int, seeds: Sequence[int], epoch: int) -> Iterator[dict]:
    if len(seeds) == 1:
        yield from data_lib.train_batches(split, batch_size, seeds[0], epoch)
        return
    streams = [data_lib.train_batches(split, batch_size, s, epoch) for s in seeds]
    for batches in zip(*streams):
        yield stack_batches(batches)
