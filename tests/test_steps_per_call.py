"""Several training steps per compiled call (one lax.scan) give exactly the per-step loop's run."""
import chex
import jax
import numpy as np
import pytest

from common import experiment
from common import training as tr
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate
from recurrent.cells import RecurrentClassifier


def _batches(n, leading=()):
    rng = np.random.default_rng(0)
    return [{"image": rng.random(leading + (8, 28, 28, 1), dtype=np.float32),
             "label": rng.integers(0, 10, leading + (8,)).astype(np.int32)} for _ in range(n)]


@pytest.mark.parametrize("n_models", [1, 2])
def test_scanned_steps_equal_the_step_loop(n_models):
    model = RecurrentClassifier(cell="lstm", hidden=8)
    specs = [experiment.ModelSpec(s, 1e-2) for s in range(n_models)]
    leading = (n_models,) if n_models > 1 else ()
    batches = _batches(5, leading)
    step, _ = experiment.compile_steps(tr.make_train_step(None), n_models)
    state, keys = experiment.init_states(model, (1, 28, 28, 1), specs)
    total = None
    for batch in batches:
        state, metrics = step(state, batch, keys)
        total = tr.add_metrics(total, metrics)

    scanned_fn, _ = experiment.compile_steps(tr.make_train_step(None), n_models, steps_per_call=3)
    scanned, _ = experiment.init_states(model, (1, 28, 28, 1), specs)
    totals = None
    for chunk in (batches[:3], batches[3:]):  # a full call and the shorter last one
        scanned, totals = scanned_fn(scanned, tr.stack_batches(chunk), keys, totals)
    chex.assert_trees_all_equal(jax.device_get(scanned.params), jax.device_get(state.params))
    chex.assert_trees_all_equal(jax.device_get(scanned.batch_stats), jax.device_get(state.batch_stats))
    chex.assert_trees_all_equal(jax.device_get(totals), jax.device_get(total))
    assert np.all(np.asarray(scanned.step) == 5) and np.all(np.asarray(state.step) == 5)


def test_scanned_step_compiles_once_per_call_length():
    model = RecurrentClassifier(cell="rnn", hidden=8)
    specs = [experiment.ModelSpec(0, 1e-2)]
    # One abstract trace for the metrics' shapes, one compile per call length (full, and the shorter last).
    traced = chex.assert_max_traces(tr.make_train_step(None), n=3)
    fn, _ = experiment.compile_steps(traced, 1, steps_per_call=2)
    state, keys = experiment.init_states(model, (1, 28, 28, 1), specs)
    for _ in range(3):  # three epochs of 5 batches: calls of 2, 2 and 1 steps
        totals = None
        for chunk in (_batches(2), _batches(2), _batches(1)):
            state, totals = fn(state, tr.stack_batches(chunk), keys, totals)
    assert int(state.step) == 15


def test_training_run_is_the_same_with_steps_per_call(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=2, batch_size=10, eval_batch_size=16, hidden=32)
    loop = train_and_evaluate(LeNetConfig(**base), str(tmp_path / "loop"), progress=False)
    scanned = train_and_evaluate(LeNetConfig(steps_per_call=2, **base), str(tmp_path / "scan"), progress=False)
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
        LeNetConfig(steps_per_call=0).validate()
