"""The pure pieces of training a classifier: train state, train and eval steps, metrics as sums.

The steps are pure functions of (state, batch, rng); `common.parallel` jits them and `common.fit` runs the
epochs. Metrics are kept as sums and counts on the device and normalised once per epoch.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

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


def accumulate_steps(train_step, scan: bool):
    """k training steps in one call: `(state, batches, rng, totals) -> (state, totals)`.

    `batches` carry a leading [k] axis. Each step's metrics are added to the running `totals` in the
    per-step loop's order, so the sums, like the parameters, are those of calling `train_step` k times.
    With `scan`, one `lax.scan` runs the k steps (no per-step dispatch or host sync); without it, k must
    be 1 and the step runs alone.
    """

    def steps(state, batches: dict, rng: jax.Array, totals: Metrics):
        def body(carry, batch):
            state, totals = carry
            state, metrics = train_step(state, batch, rng)
            return (state, jax.tree_util.tree_map(jnp.add, totals, metrics)), None

        if scan:
            (state, totals), _ = jax.lax.scan(body, (state, totals), batches)
        else:
            (state, totals), _ = body((state, totals), jax.tree_util.tree_map(lambda x: x[0], batches))
        return state, totals

    return steps


def eval_step(state: TrainState, batch: dict) -> Metrics:
    """Summed loss and correct predictions over the real (mask == 1) examples of one padded batch."""
    logits = state.apply_fn(model_variables(state), batch["image"], train=False)
    mask = batch["mask"]
    return {
        "loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }


def summarize(total: Metrics) -> dict[str, Any]:
    """Sums -> means, once per epoch. Works elementwise when the metrics carry a leading seed axis."""
    total = jax.device_get(total)
    out = {"loss": total["loss_sum"] / total["count"], "accuracy": total["correct"] / total["count"]}
    if "penalty_sum" in total:
        out["penalty"] = total["penalty_sum"] / total["steps"]
    return {k: (v.tolist() if isinstance(v, np.ndarray) and v.ndim else float(v)) for k, v in out.items()}
