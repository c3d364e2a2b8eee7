"""The host is out of the training loop: an epoch (training and the three evaluations) runs under
jax.transfer_guard("disallow"), with only explicit transfers (each call's indices, the metric read-backs)."""
import jax
import numpy as np
import pytest

from common import data as data_lib
from common.core import loop
from common.core import step as step_lib
from common.core.state import ModelSpec, init_states
from lenet.config import LeNetConfig
from lenet.model import create_model
from lenet.train import penalty_fn


def _dataset(n_train=60, n_val=13, n_test=11):
    rng = np.random.default_rng(0)

    def split(n):
        return data_lib.Split(rng.integers(0, 256, (n, 28, 28, 1)).astype(np.uint8),
                              rng.integers(0, 10, n).astype(np.int32))

    return data_lib.Dataset(split(n_train), split(n_val), split(n_test), tuple("0123456789"), "generated")


@pytest.mark.parametrize("n_models, k", [(1, 1), pytest.param(2, 3, marks=pytest.mark.slow)],
                         ids=["one-model", "two-models-scanned"])  # the second: 12 s, so in the slow tier
def test_an_epoch_runs_under_transfer_guard_disallow(n_models, k):
    config = LeNetConfig.create(hidden=16, features=(4, 8))
    dataset, batch = _dataset(), 10
    mesh = step_lib.make_mesh(n_models, batch)
    program = step_lib.compile_program(step_lib.make_train_step(penalty_fn(config)), n_models, mesh,
                                       batch_shape=(batch, 28, 28, 1), eval_batch=8, steps_per_call=k)
    state, rng = init_states(create_model(config), (1, 28, 28, 1), [ModelSpec(s, 1e-3) for s in range(n_models)])
    state, rng = step_lib.put((state, rng), mesh, step_lib.P("model"))
    splits = loop.put_splits(dataset, program, 8)
    best = loop.BestEpoch(n_models)
    for epoch in (1, 2):  # the second epoch runs the compiled programs only
        with jax.transfer_guard("disallow"):
            state, row = loop.run_epoch(program, splits, state, rng, list(range(n_models)), batch, epoch,
                                        "epoch", progress=True)
            best.update(epoch, row["val_accuracy"], state, mesh)
    assert len(row["train_loss"]) == n_models and all(np.isfinite(row["test_loss"]))
    assert best.variables is not None


def test_implicit_transfers_really_are_refused():
    """The guard is live in this JAX: an implicit host-to-device transfer fails under it."""
    f = jax.jit(lambda x: x + 1)
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        f(np.ones(3))
