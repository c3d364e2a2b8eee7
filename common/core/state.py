"""What is trained: the models of a run (`ModelSpec`, `model_grid`) and their state, always stacked.

Every run trains N >= 1 models together (seeds, learning rates, penalty weights); every leaf of the state
carries a leading model axis [N, ...], also when N = 1, so there is one code path. `squeeze` removes that
axis once, where a one-model run's results are written.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from common.core.config import TrainConfig, as_tuple


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the batch-norm running statistics ({} for models without batch norm)."""

    batch_stats: Any = None
    # Per-model penalty weights (e.g. {'conv_l2': [N], 'fc_l2': [N]}) when they are swept as a model axis;
    # None: the penalty function's own defaults.
    penalty_weights: Any = None


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


OPTIMIZERS = {"nadam": optax.nadam, "adam": optax.adam}  # a config's `optimizer` names one; Nadam: the report's


def make_optimizer(lr: float, name: str = "nadam") -> optax.GradientTransformation:
    # The learning rate lives in the optimizer state, so that models with different rates share one
    # program; the update is exactly optax.nadam(lr)'s (or the named optimizer's).
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=lr)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, input_shape, rng) -> TrainState:
    """One model, initialised on a dummy batch of `input_shape` ([batch, ...]) and wrapped with `tx`."""
    variables = model.init({"params": rng, "dropout": rng}, jnp.zeros(input_shape, jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))


def init_states(model: nn.Module, input_shape, specs: list[ModelSpec],
                optimizer: str = "nadam") -> tuple[TrainState, np.ndarray]:
    """The models' states stacked over a leading [N] axis, and their step keys [N, 2] (host arrays); every
    model is updated by `optimizer` (a name of OPTIMIZERS).

    The initialisation is vmapped over the seeds' keys: model i's parameters are bit for bit those of a run
    with seed `specs[i].seed` alone.
    """
    keys = np.stack([np.asarray(jax.random.split(jax.random.PRNGKey(s.seed))) for s in specs])
    tx = make_optimizer(specs[0].lr, optimizer)
    state = jax.vmap(lambda k: create_train_state(model, tx, input_shape, k))(keys[:, 0])
    lrs = np.asarray([s.lr for s in specs], np.float32)
    opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": lrs})
    weights = {k: np.asarray([s.penalty[k] for s in specs], np.float32) for k in specs[0].penalty} or None
    return jax.device_get(state.replace(opt_state=opt_state, penalty_weights=weights)), keys[:, 1]


def model_slice(tree, i: int):
    """Model i of a tree stacked over the leading model axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def squeeze(tree, n_models: int):
    """The one model of a one-model run without its model axis; a several-model tree as it is."""
    return model_slice(tree, 0) if n_models == 1 else tree


def model_variables(state: TrainState) -> dict:
    """{'params', 'batch_stats' (when the model has any)}: what a checkpoint holds."""
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables
