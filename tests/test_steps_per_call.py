"""Several training steps per compiled call (one lax.scan) give exactly the per-step loop's run; `auto` picks
and records the number."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import data as data_lib
from common.core import loop
from common.core import step as step_lib
from common.core.config import TrainConfig
from common.core.state import ModelSpec, init_states, model_slice
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate
from recurrent.config import RNNConfig
from recurrent.model import RecurrentClassifier

N_EXAMPLES, BATCH = 48, 8


def _split():
    rng = np.random.default_rng(0)
    return data_lib.Split(rng.integers(0, 256, (N_EXAMPLES, 28, 28, 1)).astype(np.uint8),
                          rng.integers(0, 10, N_EXAMPLES).astype(np.int32))


def _run(model, train_step, n_models, k, n_steps=5):
    """n_steps training steps, k per call (the last call shorter), on the device-resident split."""
    mesh = step_lib.make_mesh(n_models, BATCH)
    program = step_lib.compile_program(train_step, n_models, mesh, batch_shape=(BATCH, 28, 28, 1), eval_batch=16,
                                       steps_per_call=k)
    state, keys = init_states(model, (1, 28, 28, 1), [ModelSpec(s, 1e-2) for s in range(n_models)])
    state, keys = step_lib.put((state, keys), mesh, step_lib.P("model"))
    split = step_lib.put_split(_split(), mesh, 16)
    order = np.stack([data_lib.epoch_order(N_EXAMPLES, BATCH, s, 1) for s in range(n_models)], 1)[:n_steps]
    totals = program.zeros(state)
    for start in range(0, n_steps, k):
        idx = step_lib.put(order[start:start + k], mesh, step_lib.P(None, "model", "data"))
        state, totals = program.train(state, idx, keys, totals, split.images, split.labels)
    return jax.device_get(state), jax.device_get(totals), order


@pytest.mark.slow
@pytest.mark.parametrize("n_models", [1, 2])
def test_scanned_steps_equal_the_step_loop(n_models):
    model = RecurrentClassifier(cell="lstm", hidden=8)
    state, total, _ = _run(model, step_lib.make_train_step(None), n_models, k=1)
    scanned, totals, _ = _run(model, step_lib.make_train_step(None), n_models, k=3)  # a call of 3, then of 2
    chex.assert_trees_all_equal(scanned.params, state.params)
    chex.assert_trees_all_equal(scanned.batch_stats, state.batch_stats)
    chex.assert_trees_all_equal(totals, total)
    assert np.all(scanned.step == 5) and np.all(state.step == 5)


def test_gathered_steps_equal_the_plain_jitted_step_on_host_batches():
    """The device-side gather and uint8 -> float conversion feed the step the host's batches."""
    model = RecurrentClassifier(cell="gru", hidden=8)
    ours, totals, order = _run(model, step_lib.make_train_step(None), 1, k=1, n_steps=3)
    plain = jax.jit(step_lib.make_train_step(None))
    state, keys = model_slice(init_states(model, (1, 28, 28, 1), [ModelSpec(0, 1e-2)]), 0)
    split, total = _split(), None
    for idx in order[:, 0]:
        state, metrics = plain(state, {"image": data_lib.to_float(split.images[idx]), "label": split.labels[idx]},
                               keys)
        total = metrics if total is None else jax.tree_util.tree_map(jnp.add, total, metrics)
    chex.assert_trees_all_close(model_slice(ours.params, 0), jax.device_get(state.params), rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(model_slice(totals, 0), jax.device_get(total), rtol=1e-6)


def test_scanned_step_compiles_once_per_call_length():
    model = RecurrentClassifier(cell="rnn", hidden=8)
    # One abstract trace for the totals' shapes, one compile per call length (the full call, the shorter last).
    traced = chex.assert_max_traces(step_lib.make_train_step(None), n=3)
    state, _, _ = _run(model, traced, 1, k=2)
    assert int(state.step[0]) == 5


def test_auto_steps_per_call_on_this_backend():
    assert loop.steps_per_call(TrainConfig(steps_per_call=7), 100) == 7
    if jax.default_backend() == "cpu":
        assert loop.steps_per_call(LeNetConfig().train, 180) == 1  # LeNet5's convolutions: no scan on a CPU
        assert loop.steps_per_call(RNNConfig().train, 1687) == 50
        assert loop.steps_per_call(RNNConfig().train, 4) == 4
    else:  # a whole epoch, in equal chunks of at most ACCELERATOR_STEPS_PER_CALL
        assert loop.steps_per_call(LeNetConfig().train, 180) == 180
        assert loop.steps_per_call(LeNetConfig().train, 900) == 225


@pytest.mark.slow
def test_training_run_is_the_same_with_steps_per_call(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=2, batch_size=10, eval_batch_size=16, hidden=32)
    loop = train_and_evaluate(LeNetConfig.create(**base), str(tmp_path / "loop"), progress=False)
    scanned = train_and_evaluate(LeNetConfig.create(steps_per_call=2, **base), str(tmp_path / "scan"), progress=False)
    assert loop.metrics["steps_per_call"] == "auto" and loop.metrics["steps_per_call_used"] >= 1
    assert scanned.metrics["steps_per_call"] == scanned.metrics["steps_per_call_used"] == 2
    assert len(loop.history) == len(scanned.history) == 2
    for a, b in zip(loop.history, scanned.history):
        for key in ("train_running_loss", "train_running_accuracy", "l2_penalty", "val_loss", "test_loss",
                    "test_accuracy"):
            # XLA may fuse a convolution differently inside the loop: equal up to float32 rounding.
            np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=1e-6, err_msg=key)
    # Kernels only: a conv bias just before batch norm has a zero gradient up to rounding, which Nadam's
    # normalisation then scales up to full steps, so those biases differ at the level of that rounding noise.
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        np.testing.assert_allclose(loop.state.params[layer]["kernel"], scanned.state.params[layer]["kernel"],
                                   rtol=1e-3, atol=1e-5, err_msg=layer)


def test_steps_per_call_must_be_auto_or_positive():
    from common.core.errors import UserError
    with pytest.raises(UserError, match="steps per call"):
        LeNetConfig.create(steps_per_call=0).validate()
