import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import data as data_lib
from common.core import step as step_lib
from common.core.state import ModelSpec, create_train_state, init_states, model_slice, model_variables
from common.runtime import checkpoint as ckpt
from lenet.config import LeNetConfig
from lenet.model import create_model, l2_penalty, max_pool_2x2
from lenet.train import penalty_fn, train_and_evaluate
from run import main


def _state(config=LeNetConfig(), shape=(2, 28, 28, 1), seed=0):
    return create_train_state(create_model(config), optax.nadam(config.train.lr), shape, jax.random.PRNGKey(seed))


def _batch(n=8, shape=(28, 28, 1), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n,) + shape, dtype=np.float32), "label": rng.integers(0, 10, n).astype(np.int32)}


def test_parameter_count_and_shapes():
    state = _state()
    counts = {k: sum(x.size for x in jax.tree_util.tree_leaves(v)) for k, v in state.params.items()}
    assert counts == {"conv1": 5 * 5 * 1 * 32 + 32, "bn1": 2 * 32, "conv2": 5 * 5 * 32 * 64 + 64, "bn2": 2 * 64,
                      "fc1": 7 * 7 * 64 * 1024 + 1024, "fc2": 1024 * 10 + 10}
    logits, inter = state.apply_fn(model_variables(state), jnp.zeros((3, 28, 28, 1)), train=False,
                                   mutable=["intermediates"])
    assert logits.shape == (3, 10)
    shapes = {k: v[0].shape for k, v in inter["intermediates"].items()}
    assert shapes["conv1_pre_bn"] == (3, 28, 28, 32) and shapes["conv2_pool"] == (3, 7, 7, 64)
    rgb = _state(shape=(1, 32, 32, 3))
    assert rgb.params["fc1"]["kernel"].shape == (8 * 8 * 64, 1024)


def test_initialisation_follows_the_report():
    params = _state().params
    for name in ("conv1", "conv2", "fc1", "fc2"):
        np.testing.assert_array_equal(params[name]["bias"], np.float32(0.1))
    k = np.asarray(params["fc1"]["kernel"])
    fan_in, fan_out = k.shape
    assert abs(k.std() - np.sqrt(2.0 / (fan_in + fan_out))) < 0.05 * np.sqrt(2.0 / (fan_in + fan_out))


def test_no_batchnorm_variant_has_no_bn_parameters():
    state = _state(LeNetConfig.create(use_batchnorm=False))
    assert set(state.params) == {"conv1", "conv2", "fc1", "fc2"} and not state.batch_stats


def test_max_pool_2x2_matches_flax():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 3))  # continuous values: no ties
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))
    g_ours = jax.grad(lambda x: jnp.sum(jnp.sin(max_pool_2x2(x))))(x)
    g_flax = jax.grad(lambda x: jnp.sum(jnp.sin(nn.max_pool(x, (2, 2), (2, 2)))))(x)
    np.testing.assert_allclose(g_ours, g_flax, atol=1e-6)


def test_l2_penalty_equals_hand_computation():
    params = _state().params
    conv = sum(float(np.sum(np.asarray(params[n]["kernel"], np.float64) ** 2)) for n in ("conv1", "conv2"))
    fc1 = float(np.sum(np.asarray(params["fc1"]["kernel"], np.float64) ** 2))
    expected = 0.01 * conv + 0.005 * fc1
    np.testing.assert_allclose(float(l2_penalty(params, 0.01, 0.005)), expected, rtol=1e-5)


def test_loss_is_optax_cross_entropy_plus_penalty():
    config = LeNetConfig.create(dropout_rate=0.0)  # deterministic forward pass for the comparison
    state, batch = _state(config), _batch()
    logits, _ = jax.jit(lambda v, x: state.apply_fn(v, x, train=True, mutable=["batch_stats"]))(
        model_variables(state), batch["image"])
    expected = (optax.softmax_cross_entropy(logits, jax.nn.one_hot(batch["label"], 10)).mean()
                + l2_penalty(state.params, 0.01, 0.005))
    step = jax.jit(step_lib.make_train_step(penalty_fn(config)))
    _, metrics = step(state, batch, jax.random.PRNGKey(0))
    got = metrics["loss_sum"] / metrics["count"] + metrics["penalty_sum"]
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)


def test_one_step_changes_every_parameter_and_lowers_the_loss():
    config = LeNetConfig.create(lr=1e-3)
    state, batch = _state(config), _batch(n=16)
    step = jax.jit(step_lib.make_train_step(penalty_fn(config)))
    rng = jax.random.PRNGKey(1)
    new_state, m0 = step(state, batch, rng)
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
    assert all(jax.tree_util.tree_leaves(changed)), changed
    stats_changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), state.batch_stats,
                                           new_state.batch_stats)
    assert all(jax.tree_util.tree_leaves(stats_changed))
    for _ in range(5):
        new_state, m = step(new_state, batch, rng)
    assert float(m["loss_sum"]) < float(m0["loss_sum"])


def test_dropout_key_depends_on_step():
    config = LeNetConfig()
    state, batch = _state(config), _batch()
    step = jax.jit(step_lib.make_train_step(penalty_fn(config)))
    _, a = step(state, batch, jax.random.PRNGKey(0))
    _, b = step(state.replace(step=state.step + 1), batch, jax.random.PRNGKey(0))
    assert float(a["loss_sum"]) != float(b["loss_sum"])


@pytest.mark.slow
def test_no_recompilation_over_steps():
    config = LeNetConfig()
    state = _state(config)
    step = jax.jit(chex.assert_max_traces(step_lib.make_train_step(penalty_fn(config)), n=1))
    evaluate = jax.jit(chex.assert_max_traces(step_lib.eval_step, n=1))
    rng = jax.random.PRNGKey(0)
    for i in range(4):
        state, _ = step(state, _batch(seed=i), rng)
        evaluate(state, {**_batch(seed=i), "mask": np.ones(8, np.float32)})


def _evaluate(split, eval_batch):
    """Metric sums of one model over `split` in one call of the compiled evaluation."""
    mesh = step_lib.make_mesh(1, 1)
    program = step_lib.compile_program(step_lib.make_train_step(None), 1, mesh, batch_shape=(1, 28, 28, 1),
                                       eval_batch=eval_batch, steps_per_call=1)
    state, _ = init_states(create_model(LeNetConfig()), (1, 28, 28, 1), [ModelSpec(0, 1e-3)])
    return jax.device_get(program.evaluate(step_lib.put(state, mesh, step_lib.P("model")),
                                           step_lib.put_split(split, mesh, eval_batch)))


def test_eval_counts_padded_examples_once():
    rng = np.random.default_rng(0)
    split = data_lib.Split(rng.integers(0, 256, (13, 28, 28, 1)).astype(np.uint8), rng.integers(0, 10, 13))
    full, padded = _evaluate(split, 13), _evaluate(split, 5)  # one batch; three, the last one padded by 2
    assert full["count"][0] == padded["count"][0] == 13
    np.testing.assert_allclose(full["loss_sum"], padded["loss_sum"], rtol=1e-5)
    assert full["correct"][0] == padded["correct"][0]
    # against the model applied to the whole split at once
    state = model_slice(init_states(create_model(LeNetConfig()), (1, 28, 28, 1), [ModelSpec(0, 1e-3)])[0], 0)
    logits = state.apply_fn(model_variables(state), data_lib.to_float(split.images), train=False)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, split.labels).sum()
    np.testing.assert_allclose(full["loss_sum"][0], expected, rtol=1e-5)


def _tiny_config(root, **kw):
    return LeNetConfig.create(**{"data_dir": root, "epochs": 2, "batch_size": 10, "eval_batch_size": 16, "hidden": 32,
                          **kw})


@pytest.mark.slow
def test_train_and_evaluate_writes_results_and_is_reproducible(image_folder, tmp_path):
    out1, out2 = str(tmp_path / "a"), str(tmp_path / "b")
    r1 = train_and_evaluate(_tiny_config(image_folder), out1, progress=False)
    r2 = train_and_evaluate(_tiny_config(image_folder), out2, progress=False)
    for f in ("fig1_curves.png", "history.csv", "metrics.json", "conv1_kernels_by_epoch.npz",
              "checkpoint/variables.msgpack", "checkpoint/run.json"):
        assert os.path.isfile(os.path.join(out1, f)), f
    assert not os.path.exists(out1 + ".partial")
    m = json.load(open(os.path.join(out1, "metrics.json")))
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss", "wall_seconds", "config"):
        assert key in m
    assert m["test_accuracy"] == r2.metrics["test_accuracy"] and m["val_loss"] == r2.metrics["val_loss"]
    run_info, variables = ckpt.load_checkpoint(out1)
    assert LeNetConfig.from_dict(run_info["config"]) == _tiny_config(image_folder)
    np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"], r1.variables["params"]["conv1"]["kernel"])
    best = max(r1.history, key=lambda r: r["val_accuracy"])  # first epoch with the best validation accuracy
    assert m["selected_epoch"] == best["epoch"] and m["test_accuracy"] == best["test_accuracy"]
    assert m["last_epoch"]["test_loss"] == r1.history[-1]["test_loss"]
    assert sorted(np.load(os.path.join(out1, "conv1_kernels_by_epoch.npz"))) == ["epoch_0", "epoch_1", "epoch_2"]


@pytest.mark.slow
def test_resume_from_a_killed_run_gives_identical_metrics(image_folder, tmp_path):
    """A run interrupted after epoch 1 and restarted finishes with the numbers of an uninterrupted run."""
    from common.run import resume

    full = train_and_evaluate(_tiny_config(image_folder, epochs=3), str(tmp_path / "full"), progress=False)
    out = str(tmp_path / "resumed")
    real_save = resume.save
    calls = []

    def save_then_die(run, state, best, history, *a):
        real_save(run, state, best, history, *a)
        calls.append(len(history))
        if len(history) == 1:
            raise KeyboardInterrupt  # stands in for a kill after epoch 1's checkpoint

    resume.save = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train_and_evaluate(_tiny_config(image_folder, epochs=3), out, progress=False)
    finally:
        resume.save = real_save
    assert not os.path.exists(out) and os.path.isdir(out + ".partial")
    resumed = train_and_evaluate(_tiny_config(image_folder, epochs=3), out, progress=False)
    assert [r["test_loss"] for r in resumed.history] == [r["test_loss"] for r in full.history]
    assert resumed.metrics["selected_epoch"] == full.metrics["selected_epoch"]
    assert resumed.metrics["test_loss"] == full.metrics["test_loss"]


@pytest.mark.slow
def test_failed_run_keeps_earlier_results(image_folder, tmp_path):
    out = str(tmp_path / "keep")
    train_and_evaluate(_tiny_config(image_folder, epochs=1), out, progress=False)
    before = open(os.path.join(out, "metrics.json")).read()
    assert main(["--task", "lenet", "--data-dir", str(tmp_path / "missing"), "--out", out]) == 2
    assert open(os.path.join(out, "metrics.json")).read() == before


@pytest.mark.slow
def test_cli_end_to_end_on_mock_tfds(mock_tfds, tmp_path, capsys):
    out = str(tmp_path / "lenet")
    rc = main(["--task", "lenet", "--epochs", "1", "--batch-size", "20", "--limit", "60", "--out", out,
               "--no-progress"])
    assert rc == 0
    for f in ("fig1_curves.png", "history.csv", "metrics.json", "checkpoint/variables.msgpack"):
        assert os.path.isfile(os.path.join(out, f)), f
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["train_size"] == 60 and m["epochs"] == 1 and m["config"]["lr"] == 1.7e-4
    assert "test" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], "invalid choice"),
    (["--task", "lenet", "--epochs", "-1"], "positive"),
    (["--task", "lenet", "--batch-size", "0"], "positive"),
    (["--task", "lenet", "--lr", "abc"], "positive number"),
    (["--task", "rnn", "--cell", "lstm,foo"], "unknown value"),
])
def test_bad_flags_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("setup, message", [
    ("missing", "does not exist"),
    ("empty", "split"),
    ("junk", "not a readable image"),
])
def test_bad_data_dirs_exit_2(tmp_path, capsys, setup, message):
    root = tmp_path / "d"
    if setup == "empty":
        (root / "Train").mkdir(parents=True)
    elif setup == "junk":
        (root / "Train" / "0").mkdir(parents=True)
        (root / "Test" / "0").mkdir(parents=True)
        (root / "Train" / "0" / "a.png").write_text("hi")
    rc = main(["--task", "lenet", "--data-dir", str(root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o")


def test_offline_named_dataset_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data_lib, "download_reachable", lambda name, timeout=3.0: False)
    rc = main(["--task", "lenet", "--tfds-data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "not prepared" in capsys.readouterr().err
