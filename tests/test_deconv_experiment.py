"""The deconvnet experiment (issue 4): LeNet5's recorded forward pass, projections checked against autodiff
through the real `lenet.model.LeNet5`, top-k search, receptive-field crops, occlusion, and the task end to end
from a tiny checkpoint trained on generated images."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lenet.model
from common import data as data_lib
from deconv import experiment, network, occlusion, ops
from lenet import checkpoint as lenet_checkpoint
from lenet.config import LeNetConfig
from lenet.model import create_model
from run import main
from tests.test_deconv_ops import gather_at_switches


def _random_lenet(seed=0, use_batchnorm=True):
    """A LeNet5 (fc1 of 16 units) with random weights and non-trivial batch-norm statistics (some negative BN
    scales), plus continuous random images: no exact ties anywhere except the ones ReLU makes. The variables
    are drawn with numpy into the structure `model.init` would make (eval_shape: nothing is run)."""
    rng = np.random.default_rng(seed)
    model = create_model(LeNetConfig.create(hidden=16, use_batchnorm=use_batchnorm))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False))
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.float32), shapes)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        kernel = variables["params"][name]["kernel"]
        fan_in, fan_out = np.prod(kernel.shape[:-1]), kernel.shape[-1]
        variables["params"][name]["kernel"] = rng.normal(0, np.sqrt(2 / (fan_in + fan_out)), kernel.shape
                                                         ).astype(np.float32)
        variables["params"][name]["bias"] = rng.normal(0.05, 0.05, fan_out).astype(np.float32)
    for bn, c in (("bn1", 32), ("bn2", 64)) if use_batchnorm else ():
        variables["params"][bn]["scale"] = (rng.uniform(0.5, 2.0, c) * rng.choice([1, -1], c, p=[.8, .2])
                                            ).astype(np.float32)
        variables["params"][bn]["bias"] = rng.normal(0, 0.3, c).astype(np.float32)
        variables["batch_stats"][bn]["mean"] = rng.uniform(0, 0.3, c).astype(np.float32)
        variables["batch_stats"][bn]["var"] = rng.uniform(0.2, 2.0, c).astype(np.float32)
    # a negative conv1 bias on average, so that the conv1 ReLU actually cuts
    variables["params"]["conv1"]["bias"] = rng.normal(-0.05, 0.1, 32).astype(np.float32)
    images = rng.uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    return model, variables, images


def _sown(model, variables, x, layer):
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return state["intermediates"][f"{layer}_pre_bn"][0]


# ------------------------------------------------------------------------------ forward pass and geometry


def test_forward_record_matches_lenet5_and_geometry():
    model, variables, images = _random_lenet()
    acts, steps = network.forward_record(variables, jnp.asarray(images))
    for layer in ("conv1", "conv2"):
        np.testing.assert_allclose(acts[layer], _sown(model, variables, images, layer), rtol=1e-5, atol=1e-5)
    assert [type(s).__name__ for s in steps["conv2"]] == ["ConvStep", "ReluStep", "BatchNormStep", "PoolStep",
                                                         "ConvStep", "ReluStep"]
    geo = lambda layers: [(g.name, g.size, g.jump, g.first) for g in ops.receptive_field(layers, 28)]
    report = [(5, 1, "SAME", "conv1"), (2, 2, "VALID", "pool1"), (5, 1, "SAME", "conv2"), (2, 2, "VALID", "pool2")]
    assert geo(network.geometry(variables["params"])) == geo(report)
    rfs = network.conv_receptive_fields(variables["params"], (28, 28))
    assert rfs["conv1"].size == (5, 5) and rfs["conv2"].size == (14, 14)


@pytest.mark.parametrize("use_batchnorm", [True, False])
def test_forward_record_is_lenet5s_own_sown_values(use_batchnorm):
    """The activations are exactly what LeNet5 sows, the ReLU steps hold its pre-ReLU conv outputs, and the
    switches pick exactly its pooled values out of the map it pools (post-BN, or pre-BN without BN)."""
    model, variables, images = _random_lenet(seed=7, use_batchnorm=use_batchnorm)
    _, state = model.apply(variables, images, train=False, mutable=["intermediates", "pre_relu"])
    sown = {name: v[0] for collection in state.values() for name, v in collection.items()}
    acts, steps = network.forward_record(variables, jnp.asarray(images))
    for layer in ("conv1", "conv2"):
        np.testing.assert_array_equal(acts[layer], sown[f"{layer}_pre_bn"])
        np.testing.assert_array_equal(steps[layer][-1].pre_activation, sown[f"{layer}_pre_relu"])
        np.testing.assert_array_equal(jax.nn.relu(sown[f"{layer}_pre_relu"]), sown[f"{layer}_pre_bn"])
    pool = steps["conv2"][2 + use_batchnorm]
    pooled_map = sown["conv1_bn"] if use_batchnorm else sown["conv1_pre_bn"]
    np.testing.assert_array_equal(gather_at_switches(pooled_map, pool.switches), sown["conv1_pool"])
    kinds = ["ConvStep", "ReluStep"] + ["BatchNormStep"] * use_batchnorm + ["PoolStep", "ConvStep", "ReluStep"]
    assert [type(s).__name__ for s in steps["conv2"]] == kinds
    assert list(network.forward_record(variables, jnp.asarray(images), upto="conv1")[0]) == ["conv1"]


# ----------------------------------------------------------------- projections against autodiff through LeNet5


@jax.custom_vjp
def _guided_relu(x):
    return jnp.maximum(x, 0)


_guided_relu.defvjp(lambda x: (jnp.maximum(x, 0), x),
                    lambda x, g: (jnp.where((x > 0) & (g > 0), g, 0.0),))


@jax.custom_vjp
def _deconv_relu(x):
    return jnp.maximum(x, 0)


_deconv_relu.defvjp(lambda x: (jnp.maximum(x, 0), None), lambda _, g: (jnp.maximum(g, 0.0),))


def _switch_pool(x):
    """Same values as LeNet5's pool; its VJP routes to the first maximum (the switches) instead of splitting
    ties, which matters only for deconvnet mode, where nothing gates the signal at all-zero windows."""
    _, switches = ops.max_pool_with_switches(x, 2)
    return gather_at_switches(x, jax.lax.stop_gradient(switches))


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
@pytest.mark.parametrize("mode", ["backprop", "guided", "deconvnet"])
def test_projection_equals_vjp_through_lenet5(monkeypatch, mode, layer):
    """proj = a * d a / d image, where the derivative is jax.vjp through LeNet5.apply itself with the mode's
    ReLU rule: backprop = the unmodified model; guided / deconvnet = ReLU swapped for a custom_vjp with the
    guided / deconvnet backward rule (deconvnet also with switch routing at pooling ties)."""
    model, variables, images = _random_lenet(seed=1)
    if mode == "guided":
        monkeypatch.setattr(nn, "relu", _guided_relu)
    if mode == "deconvnet":
        monkeypatch.setattr(nn, "relu", _deconv_relu)
        monkeypatch.setattr(lenet.model, "max_pool_2x2", _switch_pool)
    acts = np.asarray(_sown(model, variables, images, layer))
    filters = np.array([0, 3, 7, 11, 20])
    amap = acts[np.arange(5), :, :, filters]  # [5, H_l, W_l]
    pos = amap.reshape(5, -1).argmax(axis=1)
    rows, cols = pos // amap.shape[2], pos % amap.shape[2]
    assert np.all(amap.reshape(5, -1).max(axis=1) > 0)
    proj = np.asarray(network.project(variables, images, filters, rows, cols, layer=layer, mode=mode))
    for i in range(5):
        f, r, c = filters[i], rows[i], cols[i]
        value, vjp = jax.vjp(lambda x: _sown(model, variables, x, layer)[0, r, c, f], jnp.asarray(images[i:i + 1]))
        (grad,) = vjp(jnp.float32(1.0))
        expect = float(value) * np.asarray(grad[0])
        scale = np.abs(expect).max()
        assert scale > 0
        np.testing.assert_allclose(proj[i], expect, rtol=1e-4, atol=1e-5 * scale)


def test_modes_and_bn_rules_differ_where_they_should():
    _, variables, images = _random_lenet(seed=2)
    f, r, c = np.array([5, 6]), np.array([3, 9]), np.array([4, 10])
    run = lambda layer, **kw: np.asarray(network.project(variables, images[:2], f, r, c, layer=layer, **kw))
    # conv1: one positive activation back through one ReLU and one conv: every rule gives the same
    np.testing.assert_allclose(run("conv1", mode="deconvnet"), run("conv1", mode="backprop"), rtol=1e-6)
    np.testing.assert_allclose(run("conv1", bn="inverse"), run("conv1"), rtol=1e-6)  # no BN on the way
    # conv2 crosses ReLU1 and BN1: the rules disagree
    for kw in ({"mode": "backprop"}, {"mode": "guided"}, {"bn": "inverse"}):
        assert not np.allclose(run("conv2", **kw), run("conv2"), rtol=1e-3, atol=1e-6), kw


# ------------------------------------------------------------------------------------- crops and top-k


def test_projection_lies_inside_receptive_field_and_crop_matches_box():
    model, variables, images = _random_lenet(seed=3)
    rfs = network.conv_receptive_fields(variables["params"], (28, 28))
    rows, cols = np.array([0, 13, 6, 2]), np.array([0, 13, 1, 12])  # corners, edges, inside
    acts = np.asarray(_sown(model, variables, images[:4], "conv2"))[np.arange(4), rows, cols]  # [4, F]
    filters = acts.argmax(axis=1)  # an active filter at each position, so that the projection is not zero
    assert np.all(acts.max(axis=1) > 0)
    proj = np.asarray(network.project(variables, images[:4], filters, rows, cols, layer="conv2"))
    crops = np.asarray(network.crop_receptive_fields(images[:4], rows, cols, rfs["conv2"]))
    assert crops.shape == (4, 14, 14, 1)
    for i, (r, c) in enumerate(zip(rows, cols)):
        r0, r1, c0, c1 = ops.receptive_box(rfs["conv2"], int(r), int(c), (28, 28))
        outside = np.ones((28, 28), bool)
        outside[r0:r1, c0:c1] = False
        assert np.all(proj[i][outside] == 0) and np.any(proj[i][~outside] != 0)
        # the in-image part of the crop is exactly the box, at the offset where the field starts
        dr, dc = r0 - (rfs["conv2"].first[0] + 2 * r), c0 - (rfs["conv2"].first[1] + 2 * c)
        np.testing.assert_array_equal(crops[i, dr:dr + r1 - r0, dc:dc + c1 - c0], images[i, r0:r1, c0:c1])
        assert np.isnan(crops[i]).sum() == 14 * 14 - (r1 - r0) * (c1 - c0)


def test_top_activations_match_brute_force_with_padded_batches():
    model, variables, _ = _random_lenet(seed=4)
    images = np.random.default_rng(5).uniform(0, 1, (23, 28, 28, 1)).astype(np.float32)
    split = data_lib.Split(images, np.zeros(23, np.int32))
    top = network.top_activations(variables, data_lib.eval_batches(split, 10), ["conv2", "conv1"], 4)
    for layer in ("conv1", "conv2"):
        acts = np.asarray(_sown(model, variables, images, layer))  # [23, H, W, F]
        per_image = acts.reshape(23, -1, acts.shape[-1]).max(axis=1)  # [23, F]
        for f in range(acts.shape[-1]):
            order = np.argsort(-per_image[:, f], kind="stable")[:4]
            np.testing.assert_array_equal(top[layer]["image"][f], order)
            np.testing.assert_allclose(top[layer]["value"][f], per_image[order, f], rtol=1e-5)
            for j in range(4):
                assert acts[order[j], top[layer]["row"][f, j], top[layer]["col"][f, j], f] == pytest.approx(
                    top[layer]["value"][f, j], rel=1e-5)


# ------------------------------------------------------------------------------------------ occlusion


def test_occluder_masks_geometry():
    m = occlusion.occluder_masks((28, 28), 7)
    assert m.shape == (28, 28, 28, 28)
    assert m[14, 14].sum() == 49 and m[14, 14, 11:18, 11:18].all()
    assert m[0, 0].sum() == 16 and m[0, 0, :4, :4].all()  # clipped at the corner, still centred on (0, 0)
    with pytest.raises(ValueError):
        occlusion.occluder_masks((28, 28), 0)


def test_occlusion_maps_equal_one_image_at_a_time():
    model, variables, images = _random_lenet(seed=6)
    maps = occlusion.occlusion_maps(model, variables, images[:2], np.array([3, 7]), size=5, stride=4)
    assert maps["true_prob"].shape == (2, 7, 7)
    for i, label in enumerate((3, 7)):
        clean = np.asarray(_sown(model, variables, images[i:i + 1], "conv2"))[0]
        feature = int(clean.max(axis=(0, 1)).argmax())
        assert maps["feature"][i] == feature
        assert tuple(maps["peak"][i]) == np.unravel_index(clean[:, :, feature].argmax(), clean.shape[:2])
        for pi, pj in ((0, 0), (3, 5), (6, 6)):
            x = images[i].copy()
            r, c = 4 * pi, 4 * pj
            x[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3] = occlusion.OCCLUDER_VALUE
            probs = jax.nn.softmax(model.apply(variables, x[None], train=False))[0]
            assert maps["true_prob"][i, pi, pj] == pytest.approx(float(probs[label]), rel=1e-4, abs=1e-6)
            assert maps["top_class"][i, pi, pj] == int(np.argmax(probs))
            total = np.asarray(_sown(model, variables, x[None], "conv2"))[0, :, :, feature].sum()
            assert maps["feature_total"][i, pi, pj] == pytest.approx(float(total), rel=1e-4)


# --------------------------------------------------------------------------------------------- the task


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_lenet):
    """The session's tiny LeNet5 checkpoint (tests/conftest.py)."""
    return str(tiny_lenet / "lenet")


@pytest.mark.slow
def test_task_runs_end_to_end_and_writes_every_file(tiny_checkpoint, tmp_path):
    out = str(tmp_path / "deconv")
    assert main(["--task", "deconv", "--checkpoint", tiny_checkpoint, "--out", out]) == 0
    files = set(os.listdir(out))
    assert {"fig_deconv_conv1.png", "fig_deconv_conv2.png", "fig_occlusion.png", "topk.json"} <= files
    assert not os.path.exists(out + ".partial")
    with open(os.path.join(out, "topk.json")) as f:
        summary = json.load(f)
    assert summary["split"] == "val" and summary["mode"] == "deconvnet" and summary["top_k"] == 9
    assert summary["split_size"] == 10  # one held-out image per class of the generated folder
    assert len(summary["layers"]["conv1"]["filters"]) == 32 and len(summary["layers"]["conv2"]["filters"]) == 64
    assert summary["layers"]["conv2"]["receptive_field"]["size"] == [14, 14]
    # the recorded top-k are real activations of the checkpoint's model on the recorded images
    config, variables, _ = lenet_checkpoint.load_lenet(tiny_checkpoint, "")
    val = data_lib.load_dataset(config.data).val
    acts, _ = network.forward_record(variables, jnp.asarray(data_lib.to_float(val.images)))
    for layer in ("conv1", "conv2"):
        for entry in summary["layers"][layer]["filters"][:8]:
            values = [v for v in entry["value"]]
            assert values == sorted(values, reverse=True) and len(set(entry["image"])) == 9
            for v, i, r, c in zip(values, entry["image"], entry["row"], entry["col"]):
                assert float(acts[layer][i, r, c, entry["filter"]]) == pytest.approx(v, rel=1e-5, abs=1e-6)
                assert float(acts[layer][i, :, :, entry["filter"]].max()) == pytest.approx(v, rel=1e-5, abs=1e-6)
    assert len(summary["occlusion"]["test_images"]) == experiment.OCCLUSION_IMAGES


@pytest.mark.slow
def test_task_options(tiny_checkpoint, tmp_path):
    out = str(tmp_path / "opts")
    argv = ["--task", "deconv", "--checkpoint", tiny_checkpoint, "--out", out, "--layer", "conv2",
            "--filters", "1,5", "--top-k", "4", "--mode", "guided", "--split", "test"]
    assert main(argv) == 0
    assert "fig_deconv_conv1.png" not in os.listdir(out)
    with open(os.path.join(out, "topk.json")) as f:
        summary = json.load(f)
    assert list(summary["layers"]) == ["conv2"] and summary["split"] == "test" and summary["mode"] == "guided"
    assert [e["filter"] for e in summary["layers"]["conv2"]["filters"]] == [1, 5]
    assert all(len(e["image"]) == 4 for e in summary["layers"]["conv2"]["filters"])


def test_bad_inputs_exit_2(tiny_checkpoint, tmp_path, capsys):
    base = ["--task", "deconv", "--out", str(tmp_path / "o")]
    assert main(base + ["--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "variables.msgpack").write_bytes(b"\x00not msgpack")
    (corrupt / "run.json").write_text("{}")
    assert main(base + ["--checkpoint", str(corrupt)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(base + ["--checkpoint", tiny_checkpoint, "--filters", "40"]) == 2
    assert "filter 40 does not exist in conv1" in capsys.readouterr().err
    assert main(base + ["--checkpoint", tiny_checkpoint, "--data-dir", str(tmp_path / "no_data")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / "o")) and not os.path.exists(str(tmp_path / "o.partial"))


def test_the_deconvnet_refuses_a_lenet_with_batch_norm_after_pooling():
    """Its steps undo batch norm and then the pooling switches: a model built the other way is one clear error."""
    from common.core.errors import UserError
    from deconv.experiment import DeconvSettings, deconv_experiment

    config = LeNetConfig.create(hidden=16, bn_position="after_pool")
    with pytest.raises(UserError, match="batch norm after pool"):
        deconv_experiment(config, {"params": {}}, None, "unused", DeconvSettings(), checkpoint="ablation/bn_after_pool")


def test_lenet_for_builds_the_model_the_weights_came_from():
    """The deconvnet's model, read off the weights, is the one builder's (`lenet.model.create_model`)."""
    for use_batchnorm in (True, False):
        model = create_model(LeNetConfig.create(hidden=16, features=(4, 8), use_batchnorm=use_batchnorm))
        params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False)["params"]
        assert network.lenet_for(params) == model
