"""The training and evaluation steps of N models on a (model, data) mesh, each jitted once, with its
shardings and donation beside it.

Shapes: N models, k steps per call, batch b, images [h, w, c] uint8 on the device (`put_split`).
  train(state [N], idx [k, N, b] int32, rng [N, 2], totals [N]) -> (state, totals)
      gathers each step's batch from the device-resident training split, converts it to float there, and runs
      the k steps (one `lax.scan` when k > 1; XLA:CPU runs LeNet5's convolutions ~10x slower inside a loop);
  evaluate(state, split) -> metric sums [N] over every example of a padded, masked split, in one call.
The mesh has two axes (`make_mesh`): 'model' shards the stacked models, 'data' splits each batch; XLA
inserts the gradient all-reduce over 'data', so the numbers are one device's.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common.core.batches import padded, to_float
from common.core.errors import UserError
from common.core.state import TrainState, model_slice, model_variables

Metrics = dict[str, jax.Array]


def make_train_step(penalty_fn: Callable[..., jax.Array] | None = None):
    """One model's `train_step(state, batch, rng) -> (state, metrics)`: `batch` {'image': float [b, h, w, c],
    'label': [b]}. The objective is mean cross-entropy + `penalty_fn(params, **state.penalty_weights)`; the
    metrics report the cross-entropy alone, as sums, so train, validation and test losses are one quantity."""

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        dropout_rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, updates = state.apply_fn(variables, batch["image"], train=True,
                                             rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            penalty = penalty_fn(params, **(state.penalty_weights or {})) if penalty_fn else jnp.zeros(())
            return ce.mean() + penalty, (ce, logits, updates, penalty)

        grads, (ce, logits, updates, penalty) = jax.grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
        return state, {"loss_sum": ce.sum(), "correct": jnp.sum(jnp.argmax(logits, -1) == batch["label"]),
                       "count": jnp.asarray(ce.shape[0], jnp.float32), "penalty_sum": penalty,
                       "steps": jnp.ones(())}

    return train_step


def eval_step(state: TrainState, batch: dict) -> Metrics:
    """One model's summed loss and correct predictions over the real (mask == 1) examples of a padded batch."""
    logits = state.apply_fn(model_variables(state), batch["image"], train=False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return {"loss_sum": jnp.sum(ce * batch["mask"]),
            "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * batch["mask"]),
            "count": jnp.sum(batch["mask"])}


def over_models(train_step, n_models: int, how: str):
    """Both steps over the leading model axis: 'vmap' batches the models' arithmetic (fills a GPU: LeNet5 x8
    3.7x one model's images/s on an H100); 'unroll' writes the one-model program out N times, because XLA:CPU
    runs vmapped convolutions (grouped ones) several times slower than plain ones."""
    if how == "vmap":
        return jax.vmap(train_step), jax.vmap(eval_step, in_axes=(0, None))

    def restack(trees):
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)

    def train_all(state, batch, rng):
        outs = [train_step(model_slice(state, i), model_slice(batch, i), rng[i]) for i in range(n_models)]
        return restack([o[0] for o in outs]), restack([o[1] for o in outs])

    def eval_all(state, batch):
        return restack([eval_step(model_slice(state, i), batch) for i in range(n_models)])

    return train_all, eval_all


# ------------------------------------------------------------------------------------- mesh and placement


def make_mesh(n_models: int, batch_size: int) -> Mesh:
    """A ('model', 'data') mesh of every device (of every process): the models are spread over as many
    devices as divide both N and the device count, each batch over the rest."""
    n = jax.device_count()
    m = math.gcd(n_models, n)
    if batch_size % (n // m):
        d = n // m
        raise UserError(f"the batch size {batch_size} is not divisible by the {d} devices that split each batch "
                        f"({n} devices, {m} for the {n_models} model(s)); choose a multiple of {d} (e.g. "
                        f"--batch-size {d * max(1, round(batch_size / d))})")
    return jax.make_mesh((m, n // m), ("model", "data"), (AxisType.Auto, AxisType.Auto))


def put(tree, mesh: Mesh, spec: P):
    """Host arrays placed on the mesh: an explicit transfer (allowed under jax.transfer_guard("disallow")).
    Across several processes each builds its own shards from its full copy (every process holds the same
    value), which a plain device_put could not."""
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    with jax.transfer_guard_host_to_device("allow"):  # explicit, though built from callbacks
        return jax.tree_util.tree_map(one, tree)


def to_host(tree) -> Any:
    """Device arrays as numpy, also those spread over several processes (an explicit read-back)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


class DeviceSplit(NamedTuple):
    """A split on the device once per run: images uint8 [n_padded, h, w, c], labels [n_padded], mask
    [n_padded] (1 for the n real examples), n_padded a multiple of the evaluation batch."""

    images: jax.Array
    labels: jax.Array
    mask: jax.Array
    size: int


def put_split(split, mesh: Mesh, eval_batch: int) -> DeviceSplit:
    """`split` (.images uint8 [n, h, w, c], .labels [n]) padded to whole evaluation batches, replicated."""
    return DeviceSplit(*put(padded(split.images, split.labels, eval_batch), mesh, P()), len(split.labels))


def eval_batch_for(size: int, mesh: Mesh) -> int:
    """The evaluation batch rounded up to a multiple of the 'data' axis (padding is masked, so free)."""
    d = mesh.shape["data"]
    return -(-size // d) * d


# ------------------------------------------------------------------------------------------ the program


class Program(NamedTuple):
    """The compiled steps of a run (see the module docstring); `zeros()` gives an epoch's starting totals."""

    train: Callable
    evaluate: Callable
    zeros: Callable
    mesh: Mesh
    steps_per_call: int


def compile_program(train_step, n_models: int, mesh: Mesh, *, batch_shape: tuple, eval_batch: int,
                    steps_per_call: int, model_axis: str = "auto", compiler_options: dict | None = None,
                    donate_state: bool = True) -> Program:
    """Jits the steps once for N models on `mesh`; `batch_shape` is one training batch's [b, h, w, c] and
    `eval_batch` a multiple of the 'data' axis (`eval_batch_for`). `compiler_options` (XLA's, or None for its
    defaults) and `donate_state` are the machine's choices: `common.runtime.xla_cpu.program_options` gives them (on a
    CPU, Eigen's convolutions and no donation into a one-step call, both measured there)."""
    if model_axis == "auto":  # models spread over devices are vmapped: a slice of a sharded axis would gather
        model_axis = "unroll" if jax.default_backend() == "cpu" and mesh.shape["model"] == 1 else "vmap"
    models_train, models_eval = over_models(train_step, n_models, model_axis)
    models, batches = NamedSharding(mesh, P("model")), NamedSharding(mesh, P("model", "data"))

    def step(carry, idx, rng, images, labels):  # idx [N, b]
        state, totals = carry
        batch = {"image": to_float(images[idx]), "label": labels[idx]}
        state, metrics = models_train(state, jax.lax.with_sharding_constraint(batch, batches), rng)
        return (state, jax.tree_util.tree_map(jnp.add, totals, metrics)), None

    def train(state, idx, rng, totals, images, labels):
        body = lambda carry, i: step(carry, i, rng, images, labels)  # noqa: E731
        if steps_per_call > 1:
            return jax.lax.scan(body, (state, totals), idx)[0]
        return body((state, totals), idx[0])[0]

    def evaluate(state, images, labels, mask):
        xs = jax.tree_util.tree_map(lambda a: a.reshape((-1, eval_batch) + a.shape[1:]), (images, labels, mask))

        def body(totals, x):
            batch = {"image": to_float(x[0]), "label": x[1], "mask": x[2]}
            metrics = models_eval(state, jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, P("data"))))
            return jax.tree_util.tree_map(jnp.add, totals, metrics), None

        zeros = {k: jnp.zeros((n_models,), jnp.float32) for k in ("loss_sum", "correct", "count")}
        return jax.lax.scan(body, zeros, xs)[0]

    replicated = NamedSharding(mesh, P())
    # The totals are always donated; the state unless the machine's choice says not (common/runtime/xla_cpu.py). No
    # `compiler_options` keyword without options, so a jax without it never sees the keyword.
    options = {"compiler_options": compiler_options} if compiler_options else {}
    jit_train = jax.jit(train, in_shardings=(models, NamedSharding(mesh, P(None, "model", "data")), models, models,
                                             replicated, replicated),
                        out_shardings=(models, models), donate_argnums=(0, 3) if donate_state else (3,), **options)
    jit_eval = jax.jit(evaluate, in_shardings=(models, replicated, replicated, replicated), out_shardings=models,
                       **options)
    return Program(train=jit_train, evaluate=lambda state, s: jit_eval(state, s.images, s.labels, s.mask),
                   zeros=_zeros_fn(models_train, n_models, batch_shape, models), mesh=mesh,
                   steps_per_call=steps_per_call)


def _zeros_fn(models_train, n_models: int, batch_shape: tuple, sharding: NamedSharding) -> Callable:
    """zeros(state) -> the running totals [N] an epoch starts from, made on the device (shapes and dtypes
    from an abstract trace of the step: nothing runs)."""
    batch = {"image": jax.ShapeDtypeStruct((n_models,) + tuple(batch_shape), jnp.float32),
             "label": jax.ShapeDtypeStruct((n_models, batch_shape[0]), jnp.int32)}
    rng = jax.ShapeDtypeStruct((n_models, 2), jnp.uint32)

    def zeros(state):
        shapes = jax.eval_shape(models_train, state, batch, rng)[1]
        make = jax.jit(lambda: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
                       out_shardings=sharding)
        return make()

    return zeros
