"""Tests for `--task visualize`: streaming statistics, filter tiles, and the task end to end on tiny data."""
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from common.core import stats
from lenet import visualize
from lenet import visualize_plots as viz_plots
from lenet.train import FILTER_HISTORY
from run import main

BINS = 512


def _relu_sample(seed=0, shape=(37, 6, 6, 4)):
    """Skewed values with a point mass at 0 (like a ReLU's output) and a different scale per channel."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 1.0, size=shape) * np.array([1.0, 0.5, 2.0, 3.0]) - 1.0
    return np.maximum(x, 0.0).astype(np.float32)


def _stream(x, batch_size, bins=BINS):
    """Feeds x through padded batches exactly as the task does: jitted per-batch summaries, host merge."""
    lo, hi = float(x.min()), float(x.max())
    acc = stats.StreamingStats(lo, hi, bins)
    step = jax.jit(lambda xb, m, lo, hi: (stats.batch_moments(xb, m), stats.batch_histogram(xb, lo, hi, bins, m)))
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        real = len(xb)
        mask = np.r_[np.ones(real), np.zeros(batch_size - real)].astype(np.float32)
        # Padding holds a wild value: it must not leak into any statistic.
        xb = np.concatenate([xb, np.full((batch_size - real,) + xb.shape[1:], 1e6, np.float32)])
        acc.add(*step(xb, mask, jnp.float32(acc.lo), jnp.float32(acc.hi)))
    return acc


# ------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("batch_size", [37, 10, 4])  # one batch (all at once) and uneven, padded batches
def test_streaming_statistics_match_numpy_and_scipy(batch_size):
    x = _relu_sample()
    v = x.astype(np.float64).ravel()
    r = _stream(x, batch_size).result()
    assert r["count"] == v.size
    np.testing.assert_allclose(r["mean"], v.mean(), rtol=1e-6)
    np.testing.assert_allclose(r["std"], v.std(), rtol=1e-5)
    np.testing.assert_allclose(r["skewness"], sps.skew(v), rtol=1e-4)
    np.testing.assert_allclose(r["excess_kurtosis"], sps.kurtosis(v), rtol=1e-4)
    assert r["zero_fraction"] == pytest.approx(np.mean(v == 0))
    assert (r["min"], r["max"]) == (pytest.approx(v.min()), pytest.approx(v.max()))
    counts, _ = np.histogram(v, bins=BINS, range=(v.min(), v.max()))
    np.testing.assert_array_equal(r["histogram"]["counts"], counts)
    per_channel = x.reshape(-1, x.shape[-1]).astype(np.float64)
    np.testing.assert_allclose(r["channel_median_skewness"], np.median(sps.skew(per_channel, axis=0)), rtol=1e-4)
    np.testing.assert_allclose(r["channel_median_excess_kurtosis"],
                               np.median(sps.kurtosis(per_channel, axis=0)), rtol=1e-4)
    # The KS distance from the histogram brackets scipy's exact one, and the point mass at 0 makes the
    # lower bound exact here.
    exact = sps.kstest(v, "norm", args=(v.mean(), v.std())).statistic
    assert r["ks_normal"] - 1e-6 <= exact <= r["ks_normal_upper"] + 1e-6
    assert r["ks_normal"] == pytest.approx(exact, abs=1e-5)


def test_ks_from_histogram_on_a_heavy_tailed_sample():
    # Heavy tails stretch the range, so each bin is wide: the upper bound loosens, the reported lower bound
    # (exact at every edge) stays close to scipy's exact statistic.
    v = np.random.default_rng(1).standard_t(5, size=20000)
    counts, _ = np.histogram(v, bins=BINS, range=(v.min(), v.max()))
    lower, upper = stats.ks_normal_from_histogram(counts, v.min(), v.max(), v.mean(), v.std())
    exact = sps.kstest(v, "norm", args=(v.mean(), v.std())).statistic
    assert lower <= exact + 1e-12 <= upper + 2e-12
    assert exact - lower < 0.002


def test_merging_central_moments_survives_a_large_offset():
    # float32 raw power sums would lose every digit of the kurtosis here; merged central sums do not.
    v = 1e4 + np.random.default_rng(2).exponential(1.0, size=5000)
    parts = [stats.Moments(np.float64(len(c)), c.mean(), *(np.sum((c - c.mean()) ** k) for k in (2, 3, 4)))
             for c in np.array_split(v, 7)]
    d = stats.describe(stats.reduce_moments(parts))
    np.testing.assert_allclose([d["mean"], d["std"], d["skewness"], d["excess_kurtosis"]],
                               [v.mean(), v.std(), sps.skew(v), sps.kurtosis(v)], rtol=1e-9)


def test_constant_values_give_undefined_shape_not_nan_or_crash():
    r = _stream(np.full((6, 3, 3, 2), 0.25, np.float32), 4).result()
    assert r["std"] == 0 and r["skewness"] is None and r["excess_kurtosis"] is None
    assert sum(r["histogram"]["counts"]) == r["count"] == 108
    assert r["histogram"]["hi"] > r["histogram"]["lo"]  # degenerate range widened, no zero-width bins
    json.dumps(r, allow_nan=False)  # every value is JSON-safe


# ---------------------------------------------------------------------------------------------- filters


@pytest.fixture
def captured_figures(monkeypatch):
    """Keeps the figures that viz_plots saves, so tests can inspect their axes."""
    figures = []
    real_save = viz_plots.save

    def save(fig, path, dpi=130):
        figures.append(fig)
        return real_save(fig, path, dpi)

    monkeypatch.setattr(viz_plots, "save", save)
    return figures


@pytest.mark.parametrize("in_channels", [1, 3])
def test_filter_grid_has_32_tiles_and_survives_constant_kernels(tmp_path, captured_figures, in_channels):
    kernel = np.random.default_rng(0).normal(size=(5, 5, in_channels, 32))
    kernel[..., 0] = 0.0  # all zero: max |w| = 0
    kernel[..., 1] = 0.3  # all equal
    kernel[..., 2] = -2.0
    tiles, scales = viz_plots.filter_tiles(kernel)
    assert tiles.shape == (32, 5, 5, in_channels)
    assert np.all(np.isfinite(tiles)) and np.abs(tiles).max() <= 1.0
    np.testing.assert_array_equal(tiles[0], 0.0)
    np.testing.assert_array_equal(tiles[1], 1.0)
    np.testing.assert_array_equal(tiles[2], -1.0)
    np.testing.assert_allclose(scales[:3], [0.0, 0.3, 2.0])
    # Sign and zero survive normalisation: tile * scale gives the kernel back.
    np.testing.assert_allclose(tiles * scales[:, None, None, None], np.moveaxis(kernel, -1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a division by zero would warn
        path = viz_plots.plot_filter_grid(kernel, str(tmp_path / "grid.png"), "test")
    assert os.path.getsize(path) > 0
    image_axes = [ax for ax in captured_figures[-1].axes if ax.images]
    assert len(image_axes) == 32
    assert all(ax.images[0].get_array().shape[:2] == (5, 5) for ax in image_axes)


def test_filters_over_training_strip_per_filter(tmp_path, captured_figures):
    rng = np.random.default_rng(0)
    history = {e: rng.normal(size=(5, 5, 1, 32)) for e in (0, 1, 5)}
    history[5][..., 3] = 0.0
    viz_plots.plot_filters_over_training(history, str(tmp_path / "strips.png"), "test")
    strips = [ax for ax in captured_figures[-1].axes if ax.images]
    assert len(strips) == 32
    assert [t.get_text() for t in strips[0].get_xticklabels()] == ["0", "1", "5"]


# ----------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_lenet):
    """The session's tiny LeNet5 (tests/conftest.py): root/course, root/lenet with the conv1 kernel history."""
    return tiny_lenet


@pytest.mark.slow
def test_visualize_end_to_end_writes_every_file(tiny_checkpoint, capsys):
    ckpt, out = tiny_checkpoint / "lenet", tiny_checkpoint / "visualize"
    assert os.path.isfile(ckpt / FILTER_HISTORY)
    code = main(["--task", "visualize", "--checkpoint", str(ckpt), "--out", str(out), "--compare-batchnorm",
                 "--no-progress"])
    assert code == 0
    for name in ("fig2_conv1_filters.png", "fig3_activations.png", "activation_stats.json", "fig_feature_maps.png",
                 "fig_filters_over_training.png", "fig_batchnorm_comparison.png"):
        assert os.path.getsize(out / name) > 1000, name
    assert not os.path.exists(str(out) + ".partial")
    assert os.path.isdir(tiny_checkpoint / "lenet_nobn" / "checkpoint")  # trained for the comparison

    with open(out / "activation_stats.json") as f:
        report = json.load(f)
    nets = report["networks"]
    assert set(nets) == {"batchnorm", "no_batchnorm"}
    assert set(nets["batchnorm"]["layers"]["conv1"]) == {"pre_bn", "post_bn", "post_pool"}
    assert set(nets["no_batchnorm"]["layers"]["conv2"]) == {"pre_bn", "post_pool"}
    assert report["test_images"] == 20
    conv1 = nets["batchnorm"]["layers"]["conv1"]["pre_bn"]
    assert conv1["count"] == 20 * 28 * 28 * 32 == sum(conv1["histogram"]["counts"])
    printed = capsys.readouterr().out
    assert "no_batchnorm" in printed and "ex.kurt" in printed

    # The streamed statistics equal scipy's on every activation of the test split computed at once.
    net = visualize.load_network(str(ckpt), "")
    from common import data as data_lib
    test = data_lib.load_dataset(net.config.data).test
    _, acts = visualize._intermediates(net.model, net.variables, jnp.asarray(data_lib.to_float(test.images)))
    for name, stage in (("conv1_bn", "post_bn"), ("conv2_pool", "post_pool")):
        layer = name.split("_")[0]
        v = np.asarray(acts[name], np.float64).ravel()
        s = nets["batchnorm"]["layers"][layer][stage]
        np.testing.assert_allclose([s["mean"], s["std"], s["skewness"], s["excess_kurtosis"]],
                                   [v.mean(), v.std(), sps.skew(v), sps.kurtosis(v)], rtol=2e-3, atol=1e-6)


@pytest.mark.slow
def test_train_if_missing_trains_then_visualizes(tiny_checkpoint, tmp_path):
    ckpt = tmp_path / "fresh"
    code = main(["--task", "visualize", "--checkpoint", str(ckpt), "--train-if-missing", "--out", str(tmp_path / "o"),
                 "--data-dir", str(tiny_checkpoint / "course"), "--epochs", "1", "--limit", "16",
                 "--batch-size", "8", "--no-progress"])
    assert code == 0
    assert os.path.isfile(ckpt / "checkpoint" / "variables.msgpack")
    assert os.path.isfile(tmp_path / "o" / "fig3_activations.png")


def test_missing_checkpoint_says_how_to_make_one(tmp_path, capsys):
    code = main(["--task", "visualize", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "python run.py --task lenet" in err and "--train-if-missing" in err
    assert not os.path.exists(tmp_path / "o")


def test_corrupt_checkpoint_exits_2(tiny_checkpoint, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint / "lenet" / "checkpoint", broken / "checkpoint")
    (broken / "checkpoint" / "variables.msgpack").write_bytes(b"\x93not msgpack at all")
    code = main(["--task", "visualize", "--checkpoint", str(broken), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "corrupt" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_checkpoint_of_another_task_exits_2(tiny_checkpoint, tmp_path, capsys):
    import shutil

    other = tmp_path / "other" / "checkpoint"
    shutil.copytree(tiny_checkpoint / "lenet" / "checkpoint", other)
    info = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**info, "task": "rnn"}))
    assert main(["--task", "visualize", "--checkpoint", str(other.parent), "--out", str(tmp_path / "o")]) == 2
    assert "not a LeNet5 checkpoint" in capsys.readouterr().err
