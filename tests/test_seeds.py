"""Seeds as a batch dimension: N models in one vmapped program equal N separate runs."""
import jax
import numpy as np
import optax
import pytest

from common.core import loop
from common.core import state as state_lib
from common.core import step as step_lib
from lenet.config import LeNetConfig
from lenet.model import create_model
from lenet.train import penalty_fn, train_and_evaluate


@pytest.mark.slow
@pytest.mark.parametrize("model_axis", ["vmap", "unroll"])
def test_vmapped_step_equals_separate_steps(model_axis):
    config = LeNetConfig.create(hidden=16)
    model = create_model(config)
    specs = [state_lib.ModelSpec(s, config.train.lr) for s in (3, 4, 5)]
    stacked, keys = state_lib.init_states(model, (1, 28, 28, 1), specs)
    vstep = jax.jit(step_lib.over_models(step_lib.make_train_step(penalty_fn(config)), 3, model_axis)[0])
    rng = np.random.default_rng(0)
    batch = {"image": rng.random((3, 8, 28, 28, 1), dtype=np.float32),
             "label": rng.integers(0, 10, (3, 8)).astype(np.int32)}
    new_stacked, metrics = vstep(stacked, batch, keys)
    step = jax.jit(step_lib.make_train_step(penalty_fn(config)))
    for i, seed in enumerate([3, 4, 5]):
        single, key = state_lib.init_states(model, (1, 28, 28, 1), [state_lib.ModelSpec(seed, config.train.lr)])
        single, key = state_lib.model_slice((single, key), 0)
        np.testing.assert_array_equal(key, keys[i])
        single, m = step(single, {k: v[i] for k, v in batch.items()}, key)
        np.testing.assert_allclose(m["loss_sum"], metrics["loss_sum"][i], rtol=1e-5)
        np.testing.assert_allclose(single.params["fc1"]["kernel"], new_stacked.params["fc1"]["kernel"][i],
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_each_seed_of_a_vmapped_run_equals_its_own_run(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=2, batch_size=10, eval_batch_size=16, hidden=32)
    together = train_and_evaluate(LeNetConfig.create(seed=7, seeds=2, **base), str(tmp_path / "both"), progress=False)
    assert together.metrics["seeds"] == [7, 8]
    for i, seed in enumerate((7, 8)):
        alone = train_and_evaluate(LeNetConfig.create(seed=seed, **base), str(tmp_path / f"s{seed}"), progress=False)
        for a, b in zip(together.history, alone.history):
            np.testing.assert_allclose(a["test_loss"][i], b["test_loss"], rtol=1e-4)
            np.testing.assert_allclose(a["train_running_loss"][i], b["train_running_loss"], rtol=1e-4)
    assert together.metrics["test_accuracy_std"] >= 0.0
    assert len(together.metrics["test_accuracy_per_model"]) == 2


@pytest.mark.slow
def test_learning_rates_as_a_batch_dimension(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=1, batch_size=10, eval_batch_size=16, hidden=32)
    together = train_and_evaluate(LeNetConfig.create(lr=(1e-4, 1e-3), **base), str(tmp_path / "lrs"), progress=False)
    assert [m["lr"] for m in together.metrics["models"]] == [1e-4, 1e-3]
    for i, lr in enumerate((1e-4, 1e-3)):
        alone = train_and_evaluate(LeNetConfig.create(lr=lr, **base), str(tmp_path / f"lr{i}"), progress=False)
        np.testing.assert_allclose(together.history[-1]["test_loss"][i], alone.history[-1]["test_loss"], rtol=1e-4)


@pytest.mark.slow
def test_l2_weights_as_a_batch_dimension(image_folder, tmp_path):
    base = dict(data_dir=image_folder, epochs=1, batch_size=10, eval_batch_size=16, hidden=32, lr=1e-3)
    together = train_and_evaluate(LeNetConfig.create(conv_l2=(0.0, 0.5), **base), str(tmp_path / "l2"), progress=False)
    assert [m["penalty"] for m in together.metrics["models"]] == [{"conv_l2": 0.0, "fc_l2": 0.005},
                                                                  {"conv_l2": 0.5, "fc_l2": 0.005}]
    penalties = together.history[-1]["l2_penalty"]
    assert penalties[1] > penalties[0]  # the stronger weight really reached its model's loss
    for i, w in enumerate((0.0, 0.5)):
        alone = train_and_evaluate(LeNetConfig.create(conv_l2=w, **base), str(tmp_path / f"w{i}"), progress=False)
        np.testing.assert_allclose(together.history[-1]["test_loss"][i], alone.history[-1]["test_loss"], rtol=1e-4)
        np.testing.assert_allclose(penalties[i], alone.history[-1]["l2_penalty"], rtol=1e-4)


def test_plain_nadam_and_injected_learning_rate_agree():
    params = {"w": np.linspace(-1, 1, 5).astype(np.float32)}
    grads = {"w": np.cos(np.arange(5)).astype(np.float32)}
    a, b = optax.nadam(1.7e-4), state_lib.make_optimizer(1.7e-4)
    sa, sb = a.init(params), b.init(params)
    for _ in range(3):
        ua, sa = a.update(grads, sa, params)
        ub, sb = b.update(grads, sb, params)
        np.testing.assert_allclose(ua["w"], ub["w"], rtol=2e-5)  # b1, b2 held as float32 arrays


def test_best_epoch_is_chosen_per_model_on_validation():
    from types import SimpleNamespace

    best = loop.BestEpoch(2)
    for epoch, val, w in ((1, [0.5, 0.7], 1.0), (2, [0.6, 0.6], 2.0), (3, [0.55, 0.9], 3.0)):
        state = SimpleNamespace(params={"w": np.full((2, 3), w, np.float32)}, batch_stats={})
        best.update(epoch, val, state)
    assert best.epoch.tolist() == [2, 3]
    np.testing.assert_array_equal(best.variables["params"]["w"], [[2.0] * 3, [3.0] * 3])
    no_val = loop.BestEpoch(1)
    for epoch in (1, 2):
        no_val.update(epoch, None, SimpleNamespace(params={"w": np.float32(epoch)}, batch_stats={}))
    assert no_val.epoch.tolist() == [2]  # without a validation split the last epoch is kept
