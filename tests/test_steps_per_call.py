"""Several training steps per compiled call (one lax.scan) give exactly the per-step loop's run."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from common import training as tr
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate
from recurrent.model import RecurrentClassifier


def _batches(n, leading=()):
    rng = np.random.default_rng(0)
    return [{"image": rng.random(leading + (8, 28, 28, 1), dtype=np.float32),
             "label": rng.integers(0, 10, leading + (8,)).astype(np.int32)} for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("n_models", [1, 2])
def test_scanned_steps_equal_the_step_loop(n_models):
    model = RecurrentClassifier(cell="lstm", hidden=8)
    specs = [parallel.ModelSpec(s, 1e-2) for s in range(n_models)]
    leading = (n_models,) if n_models > 1 else ()
    batches = _batches(5, leading)
    one = parallel.compile_steps(tr.make_train_step(None), n_models)  # one step per call, no scan
    state, keys = parallel.init_states(model, (1, 28, 28, 1), specs)
    total = None
    for batch in batches:
        call = parallel.stack_batches([batch])
        state, total = one.train(state, call, keys, one.zeros(state, call, keys) if total is None else total)

    scanned_steps = parallel.compile_steps(tr.make_train_step(None), n_models, steps_per_call=3)
    scanned, _ = parallel.init_states(model, (1, 28, 28, 1), specs)
    totals = None
    for chunk in (batches[:3], batches[3:]):  # a full call and the shorter last one
        call = parallel.stack_batches(chunk)
        totals = scanned_steps.zeros(scanned, call, keys) if totals is None else totals
        scanned, totals = scanned_steps.train(scanned, call, keys, totals)
    chex.assert_trees_all_equal(jax.device_get(scanned.params), jax.device_get(state.params))
    chex.assert_trees_all_equal(jax.device_get(scanned.batch_stats), jax.device_get(state.batch_stats))
    chex.assert_trees_all_equal(jax.device_get(totals), jax.device_get(total))
    assert np.all(np.asarray(scanned.step) == 5) and np.all(np.asarray(state.step) == 5)


def test_one_step_per_call_equals_the_plain_jitted_step():
    """k = 1 adds the step's metrics to the running totals inside the one compiled call: same numbers."""
    model = RecurrentClassifier(cell="gru", hidden=8)
    specs = [parallel.ModelSpec(0, 1e-2)]
    batches = _batches(3)
    plain = jax.jit(tr.make_train_step(None))
    state, keys = parallel.init_states(model, (1, 28, 28, 1), specs)
    total = None
    for batch in batches:
        state, metrics = plain(state, batch, keys)
        total = metrics if total is None else jax.tree_util.tree_map(jnp.add, total, metrics)
    one = parallel.compile_steps(tr.make_train_step(None), 1)
    other, _ = parallel.init_states(model, (1, 28, 28, 1), specs)
    totals = one.zeros(other, parallel.stack_batches(batches[:1]), keys)
    for batch in batches:
        other, totals = one.train(other, parallel.stack_batches([batch]), keys, totals)
    chex.assert_trees_all_equal(jax.device_get(other.params), jax.device_get(state.params))
    chex.assert_trees_all_equal(jax.device_get(totals), jax.device_get(total))


def test_scanned_step_compiles_once_per_call_length():
    model = RecurrentClassifier(cell="rnn", hidden=8)
    specs = [parallel.ModelSpec(0, 1e-2)]
    # One abstract trace for the metrics' shapes, one compile per call length (full, and the shorter last).
    traced = chex.assert_max_traces(tr.make_train_step(None), n=3)
    steps = parallel.compile_steps(traced, 1, steps_per_call=2)
    state, keys = parallel.init_states(model, (1, 28, 28, 1), specs)
    for _ in range(3):  # three epochs of 5 batches: calls of 2, 2 and 1 steps
        totals = None
        for chunk in (_batches(2), _batches(2), _batches(1)):
            call = parallel.stack_batches(chunk)
            totals = steps.zeros(state, call, keys) if totals is None else totals
            state, totals = steps.train(state, call, keys, totals)
    assert int(state.step) == 15


@pytest.mark.slow
def test_training_run_is_the_same_with_steps_per_call(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=2, batch_size=10, eval_batch_size=16, hidden=32)
    loop = train_and_evaluate(LeNetConfig.create(**base), str(tmp_path / "loop"), progress=False)
    scanned = train_and_evaluate(LeNetConfig.create(steps_per_call=2, **base), str(tmp_path / "scan"), progress=False)
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


def test_steps_per_call_must_be_positive():
    from common.errors import UserError
    with pytest.raises(UserError, match="steps per call"):
        LeNetConfig.create(steps_per_call=0).validate()
