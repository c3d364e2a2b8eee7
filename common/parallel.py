"""Many models and many devices: the model axis (vmap or unroll), the data mesh, and the one jit of the step.

Two axes, independent of each other:
  * the model axis: N models (seeds, learning rates, penalty weights) trained together as one compiled
    program, their states stacked along a leading axis (`init_states`, `over_models`);
  * the data axis: every batch split over a 1-D 'data' mesh of all devices, the state replicated
    (`data_mesh`, `compile_steps`); XLA inserts the gradient all-reduce, so the numbers are one device's.
`compile_steps` is the only place where the training step is jitted: one signature,
`train(state, batches, rng, totals) -> (state, totals)`, for any number k of steps per call.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common import training as tr
from common.config import TrainConfig, as_tuple
from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One of the models trained together: its seed (init, dropout, batch order), learning rate and penalty
    weights (empty: the penalty function's own)."""

    seed: int
    lr: float
    penalty: dict = dataclasses.field(default_factory=dict)


def model_grid(train: TrainConfig, penalties: dict[str, tuple[float, ...]] | None = None) -> list[ModelSpec]:
    """Every (learning rate, penalty weights, seed) combination: `train.lr` and each of `penalties` may hold
    several values, `train.seeds` counts up from `train.seed`."""
    penalties = penalties or {}
    combos = [dict(zip(penalties, values)) for values in itertools.product(*penalties.values())]
    specs = [ModelSpec(train.seed + i, float(lr), {k: float(v) for k, v in p.items()})
             for lr in as_tuple(train.lr) for p in combos for i in range(train.seeds)]
    if len(specs) == 1:
        specs = [dataclasses.replace(specs[0], penalty={})]  # one model: the config's weights, untouched
    return specs


def make_optimizer(lr: float) -> optax.GradientTransformation:
    # The learning rate lives in the optimizer state, so that models with different rates can share one
    # vmapped program; with a single rate the update is exactly optax.nadam(lr)'s.
    return optax.inject_hyperparams(optax.nadam)(learning_rate=lr)


def init_states(model, input_shape, specs: list[ModelSpec]):
    """One TrainState (or a stack of them, one per model) and the per-model step keys."""
    keys = [jax.random.split(jax.random.PRNGKey(s.seed)) for s in specs]
    init_keys, step_keys = np.stack([k[0] for k in keys]), np.stack([k[1] for k in keys])
    tx = make_optimizer(specs[0].lr)
    if len(specs) == 1:
        return tr.create_train_state(model, tx, input_shape, init_keys[0]), step_keys[0]
    state = jax.vmap(lambda k: tr.create_train_state(model, tx, input_shape, k))(init_keys)
    lrs = np.asarray([s.lr for s in specs], np.float32)
    opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": lrs})
    weights = {k: np.asarray([s.penalty[k] for s in specs], np.float32) for k in specs[0].penalty} or None
    return state.replace(opt_state=opt_state, penalty_weights=weights), step_keys


def model_slice(tree, i: int):
    """Model i of a tree stacked over a leading model axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def stack_batches(batches: Sequence[dict]) -> dict:
    """Host batches stacked along a new leading axis: [n, ...] per key (per model, or per step of a call)."""
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def over_models(train_step, eval_fn, n_models: int, model_axis: str = "auto"):
    """Maps the steps over a leading model axis, inside one compiled program.

    'vmap' batches the models' arithmetic together, which fills a GPU or TPU (LeNet5 x8: 3.7x the images/s of
    one model on an H100). On a CPU, vmapped convolutions become grouped convolutions that XLA's CPU backend
    runs several times slower than plain ones, so 'auto' picks 'unroll' there: the per-model program written
    out N times in the one jitted step (plain convolutions, no per-model dispatch; compiles N times longer).
    """
    if model_axis == "auto":
        model_axis = "unroll" if jax.default_backend() == "cpu" else "vmap"
    if model_axis == "vmap":
        return jax.vmap(train_step, in_axes=(0, 0, 0)), jax.vmap(eval_fn, in_axes=(0, None))
    if model_axis != "unroll":
        raise ValueError(f"model_axis must be 'auto', 'vmap' or 'unroll', got {model_axis!r}")

    def stack(trees):
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)

    def train_all(state, batch, rng):
        outs = [train_step(model_slice(state, i), model_slice(batch, i), rng[i]) for i in range(n_models)]
        return stack([o[0] for o in outs]), stack([o[1] for o in outs])

    def eval_all(state, batch):
        return stack([eval_fn(model_slice(state, i), batch) for i in range(n_models)])

    return train_all, eval_all


class Steps(NamedTuple):
    """The compiled steps of a run.

    train(state, batches, rng, totals) -> (state, totals): k training steps in one call; `batches` carry a
      leading [k] axis (then [models] when several train together), `totals` the running metric sums.
    evaluate(state, batch) -> metric sums of one padded, masked evaluation batch.
    zeros(state, batches, rng) -> the totals to start an epoch with (computed abstractly, nothing runs).
    """

    train: Callable
    evaluate: Callable
    zeros: Callable


def compile_steps(train_step, n_models: int, mesh: Mesh | None = None, model_axis: str = "auto",
                  steps_per_call: int = 1) -> Steps:
    """Jits the steps once, with their shardings and donation; vmaps them over the model axis when several
    models train together. With `steps_per_call` k > 1 each call runs its k steps as one `lax.scan`; with
    k = 1 the step runs alone (XLA:CPU runs convolutions inside a loop much slower)."""
    eval_fn = tr.eval_step
    if n_models > 1:
        train_step, eval_fn = over_models(train_step, eval_fn, n_models, model_axis)
    train_fn = tr.accumulate_steps(train_step, scan=steps_per_call > 1)
    if mesh is None:
        train, evaluate = jax.jit(train_fn, donate_argnums=0), jax.jit(eval_fn)
    else:
        replicated = NamedSharding(mesh, P())
        train_batch = NamedSharding(mesh, P(None, *(None,) * (n_models > 1), "data"))
        eval_batch = NamedSharding(mesh, P("data"))
        jitted = jax.jit(train_fn, in_shardings=(replicated, train_batch, replicated, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=0)
        jitted_eval = jax.jit(eval_fn, in_shardings=(replicated, eval_batch), out_shardings=replicated)
        # Every host holds the whole (small) dataset, so each builds the global batch from the shards it owns;
        # this is the same code on one host with 8 GPUs and on a multi-host TPU slice.
        train = lambda state, batches, *rest: jitted(state, shard_batch(batches, train_batch), *rest)  # noqa: E731
        evaluate = lambda state, batch: jitted_eval(state, shard_batch(batch, eval_batch))  # noqa: E731

    def zeros(state, batches, rng):
        metrics = jax.eval_shape(train_step, state, model_slice(batches, 0), rng)[1]
        return replicate(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metrics), mesh)

    return Steps(train, evaluate, zeros)


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for k, v in batch.items()}


def replicate(tree, mesh: Mesh | None):
    """The same value on every device of the mesh. Built from each process's own copy (every process holds
    the same value), so it works when the mesh spans several processes, where a device_put could not."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(put, tree)


def data_mesh(batch_size: int) -> Mesh | None:
    """A 1-D 'data' mesh over every device (of every process), or None on a single device."""
    n = jax.device_count()
    if n == 1:
        return None
    if batch_size % n:
        raise UserError(f"the batch size {batch_size} is not divisible by the {n} devices; choose a multiple "
                        f"of {n} (e.g. --batch-size {n * max(1, round(batch_size / n))})")
    return Mesh(np.asarray(jax.devices()), ("data",))


def eval_batch_for(size: int) -> int:
    """Rounds the evaluation batch up to a multiple of the device count (padding is masked, so free)."""
    n = jax.device_count()
    return -(-size // n) * n
