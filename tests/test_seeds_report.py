"""Issue 14: every number as mean ± std over seeds with a verdict, like compared with like, provenance, no
absolute path in the report. Pure pieces against numpy, then tiny runs."""
import json
import os
import re

import numpy as np
import pytest

from common import cli, report
from common.cli import run_all
from common.core import stats
from common.runtime import outputs
from lenet.report import LENET_TARGET, claim_1c_parts
from recurrent import compare
from recurrent.report import LSTM128_TARGET, RNN64_TARGET
from run import TASKS, main

# ------------------------------------------------------------------------------------------ pure pieces


@pytest.mark.parametrize("n", range(2, 11))
def test_t_interval_matches_scipy(n):
    from scipy import stats as sps
    values = list(np.random.default_rng(n).normal(0.6, 0.02, n))
    e = report.aggregate(values)
    assert e.n == n and e.values == tuple(values)
    np.testing.assert_allclose([e.mean, e.std], [np.mean(values), np.std(values, ddof=1)], rtol=1e-12)
    low, high = sps.t.interval(0.95, n - 1, loc=np.mean(values), scale=sps.sem(values))
    np.testing.assert_allclose([e.low, e.high], [low, high], rtol=1e-12)
    assert abs(stats.t_quantile(n) - sps.t.ppf(0.975, n - 1)) < 1e-12


def test_one_value_is_the_point_value_said_so():
    e = report.aggregate([0.9712])
    assert (e.mean, e.std, e.low, e.high) == (0.9712, 0.0, 0.9712, 0.9712)
    assert report.fmt_interval(e) == "one seed: the point value, no interval"
    assert "one seed: the point value checked against the assignment's band" in report.verdict_line(e, RNN64_TARGET)
    # two values 0.0004 apart: the t-interval with 1 degree of freedom is wide (12.7 std/sqrt(2)), not +-2 std/sqrt(2)
    two = report.aggregate([0.7133, 0.7137])
    assert two.high - two.low > 12 * two.std / np.sqrt(2)


def test_verdicts_on_hand_made_seeds():
    # about 0.60 is met within 0.02: [0.58, 0.62]
    assert report.verdict(report.aggregate([0.57, 0.575, 0.57]), LENET_TARGET) == "below"  # interval < 0.58
    assert report.verdict(report.aggregate([0.56, 0.60]), LENET_TARGET) == "consistent"  # wide interval
    assert report.verdict(report.aggregate([0.65, 0.66, 0.655]), LENET_TARGET) == "above"
    # ranges: 96-97% and 98-99%, no tolerance
    assert report.verdict(report.aggregate([0.975]), RNN64_TARGET) == "above"  # one seed: the point value
    assert report.verdict(report.aggregate([0.965]), RNN64_TARGET) == "consistent"
    assert report.verdict(report.aggregate([0.975, 0.976, 0.9755]), LSTM128_TARGET) == "below"
    assert report.verdict(None, LENET_TARGET) == report.verdict(report.aggregate([0.5]), report.NO_TARGET) == "n/a"
    line = report.verdict_line(report.aggregate([0.59, 0.61]), LENET_TARGET)
    assert line.startswith("consistent: ") and "2 seeds" in line and "95% t-interval" in line


def test_estimate_text_with_and_without_seeds():
    one = {"test_accuracy": 0.6012}
    two = {"test_accuracy": 0.6, "test_accuracy_per_model": [0.59, 0.61], "test_accuracy_std": 0.014}
    assert report.fmt_estimate(report.estimate_of(one, "test_accuracy")) == "0.6012 (1 seed)"
    assert report.fmt_estimate(report.estimate_of(two, "test_accuracy")) == \
        "0.6000 \u00b1 0.0141 (2 seeds: 0.5900, 0.6100)"
    assert report.estimate_of({}, "test_accuracy") is None


def test_claim_1c_from_the_ks_distances_of_several_models():
    def tables(ks, n=3):  # {(network, layer, stage): ks}, the same for each of n models
        return [[{"network": k[0], "layer": k[1], "stage": k[2], "ks_normal": v} for k, v in ks.items()]] * n

    both = {("batchnorm", "conv1", "pre_bn"): 0.30, ("batchnorm", "conv1", "post_bn"): 0.10,
            ("batchnorm", "conv2", "pre_bn"): 0.30, ("batchnorm", "conv2", "post_bn"): 0.28,
            ("no_batchnorm", "conv1", "pre_bn"): 0.25, ("no_batchnorm", "conv2", "pre_bn"): 0.29}
    v1, v2, how = claim_1c_parts(tables(both), shrunk=False)
    assert v1.startswith("supported") and "N = 3 models" in v1 and v2.startswith("supported")
    assert "without batch norm" in how  # the two networks compared when both are there
    alone = {k: v for k, v in both.items() if k[0] == "batchnorm"}
    assert "within the batch-norm network" in claim_1c_parts(tables(alone), shrunk=False)[2]
    flat = {**both, ("batchnorm", "conv1", "post_bn"): 0.24, ("batchnorm", "conv2", "post_bn"): 0.20}
    assert claim_1c_parts(tables(flat), shrunk=False)[0].startswith("not supported")
    assert claim_1c_parts([], shrunk=False)[0] == "n/a"
    assert claim_1c_parts(tables(both, n=1), shrunk=False)[0] == report.ONE_SEED  # one model judges nothing


def test_comparison_row_per_seed_time_to_threshold():
    h = [{"epoch": e, "test_accuracy": acc, "train_seconds": s, "train_loss": 0.1}
         for e, acc, s in ((1, [0.97, 0.986], 10.0), (2, [0.99, 0.99], 2.0), (3, [0.99, 0.995], 3.0))]
    metrics = {"param_count": 5, "test_accuracy": 0.9925, "test_accuracy_std": 0.0035,
               "test_accuracy_per_model": [0.99, 0.995], "val_accuracy": 0.98, "train_accuracy": 1.0, "epochs": 3,
               "seconds_per_epoch": 6.0, "wall_seconds": 30.0, "seeds": [0, 1],
               "config": {"lr": 1e-3, "batch_size": 32}}
    row = compare.comparison_row("LSTM-8", "rnn", "lstm_h8", metrics, h, 0.985)
    assert row["epochs_to_98_5_per_model"] == [2, 1] and row["epochs_to_98_5"] == 1.5
    assert row["train_seconds_to_98_5_per_model"] == [12.0, 10.0] and row["train_seconds_to_98_5_reached"] == 2
    np.testing.assert_allclose(row["epochs_to_98_5_std"], np.std([2, 1], ddof=1))
    assert compare.fmt_spread(row, "epochs_to_98_5", "{:.1f}") == "1.5 \u00b1 0.7 (2/2 seeds)"
    assert row["test_accuracy_per_model"] == [0.99, 0.995]
    # each time with its basis in its name: the epochs after the first, and the first (compiling) one
    assert (row["train_seconds_per_epoch_after_first"], row["train_seconds_first_epoch"]) == (2.5, 10.0)
    assert "seconds_per_epoch" not in row and "train_seconds_per_epoch" not in row
    cnn = {**row, "model": "LeNet5", "test_accuracy_per_model": [0.97, 0.971]}
    # [0.99, 0.995]: 2 seeds, t(0.975, 1) = 12.7: the interval 0.961 to 1 (clipped) overlaps LeNet5's 0.964 to 0.977
    assert compare.claim_verdict([cnn, row]).startswith("not separated on equal data")
    tight = {**row, "test_accuracy_per_model": [0.99, 0.9905]}
    assert compare.claim_verdict([cnn, tight]).startswith("supported on equal data")
    assert compare.claim_verdict([tight, cnn]).startswith("not supported on equal data")
    assert compare.TARGET_ACCURACY == 0.985 and compare.pct_text(0.985) == "98.5%"


def test_all_forwards_seeds_to_every_task_that_trains():
    user = ["--task", "all", "--quick", "--seeds", "3"]
    for task in ("lenet", "rnn", "compare"):
        assert cli.parse_args(TASKS, run_all.task_argv(TASKS, task, "/r", True, user)).seeds == 3, task


def test_environment_records_provenance(monkeypatch):
    for name in ("TFDS_DATA_DIR", "XLA_FLAGS"):  # CI sets TFDS_DATA_DIR; the command line lists what is set
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    env = outputs.environment_info()
    assert env["cpu_count"] == os.cpu_count() and env["command_env"]["JAX_PLATFORMS"] == "cpu"
    assert env["git"]["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git"]["commit"])
    assert outputs.git_state("/") == {"commit": None, "dirty": None}  # not a checkout
    assert env["load_average"] is None or len(env["load_average"]) == 3
    assert report.command_line({"command": "run.py --task x", "environment": env}).startswith("JAX_PLATFORMS=cpu ")


# ------------------------------------------------------------------------------------------- tiny runs


def _text_outside_images(page: str) -> str:
    return re.sub(r'src="data:[^"]*"', "", page)


@pytest.mark.slow
def test_two_seeds_report_shows_intervals_and_no_absolute_path(image_folder, tmp_path):
    root = tmp_path / "results"
    assert main(["--task", "lenet", "--seeds", "2", "--limit", "40", "--epochs", "1", "--batch-size", "10",
                 "--data-dir", image_folder, "--out", str(root / "lenet"), "--no-progress"]) == 0
    m = json.load(open(root / "lenet" / "metrics.json"))
    assert len(m["test_accuracy_per_model"]) == 2 and m["test_accuracy_std"] is not None
    assert abs(np.mean(m["test_accuracy_per_model"]) - m["test_accuracy"]) < 1e-12
    assert len(m["train_running_accuracy_per_model"]) == 2 and m["train_seconds_first_epoch"] > 0
    assert m["train_seconds_per_epoch_after_first"] is None  # one epoch: no epoch after the first
    assert m["environment"]["cpu_count"] and "git" in m["environment"]
    # Part 1c: the network without batch norm trains with the checkpoint's settings, seeds included
    assert main(["--task", "visualize", "--checkpoint", str(root / "lenet"), "--compare-batchnorm",
                 "--out", str(root / "visualize"), "--no-progress"]) == 0
    nobn = json.load(open(root / "lenet_nobn" / "metrics.json"))
    assert nobn["seeds"] == [0, 1] and nobn["config"]["use_batchnorm"] is False
    assert main(["--task", "report", "--out", str(root)]) == 0
    page = open(root / "report.html", encoding="utf-8").read()
    md = open(root / "REPORT.md", encoding="utf-8").read()
    for text in (page, md):
        assert "\u00b1 " in text and "(2 seeds" in text
        assert "running mean while training, dropout on" in text and "eval mode" in text
    assert "show the first seed's model (seed 0) alone" in md and "Verdict on the claim, over 2 model(s)" in md
    stats_json = json.load(open(root / "visualize" / "activation_stats.json"))
    assert stats_json["models"] == 2 and len(stats_json["per_model"]) == 2  # Part 1c: over both seeds' models
    first, second = ([r["ks_normal"] for r in t] for t in stats_json["per_model"])
    assert first == [r["ks_normal"] for r in stats_json["table"]] and first != second  # model 0 is the figures'
    assert "\u00b1" in page and "Over the 2 models of the checkpoint" in page
    assert "not judged: shrunk run" in page  # 1 epoch on 40 images
    assert str(tmp_path) not in _text_outside_images(page) and str(tmp_path) not in md
    assert os.getcwd() not in _text_outside_images(page)


@pytest.mark.slow
def test_compare_trains_n_seeds_per_net(mock_tfds, tmp_path):
    out = tmp_path / "compare"
    assert main(["--task", "compare", "--seeds", "2", "--limit", "60", "--epochs", "1", "--cell", "rnn",
                 "--hidden", "4", "--out", str(out), "--no-progress"]) == 0
    comp = json.load(open(out / "comparison.json"))
    assert comp["seeds"] == [0, 1] and comp["target_accuracy"] == 0.985
    for row in comp["rows"]:
        assert len(row["test_accuracy_per_model"]) == 2 and row["test_accuracy_std"] is not None
        assert len(row["epochs_to_98_5_per_model"]) == 2
    assert comp["claim_verdict"].split(" ")[0] in ("supported", "not")
    assert os.path.isfile(out / compare.FIGURE)


def test_relative_paths_replace_whole_path_components(tmp_path, monkeypatch):
    repo = tmp_path / "work" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.chdir(repo)
    outside = tmp_path / "res"
    text = f"`{outside}/lenet` and {tmp_path}/work/shared/data, not {outside}x/y; {repo}/run.py"
    shown = report.relative_paths(text, str(outside))
    assert shown == "`$R/lenet` and ../shared/data, not ../../resx/y; ./run.py", shown  # tmp_path: repo's ../..
    beside = tmp_path / "elsewhere" / "res"
    assert report.relative_paths(f"{tmp_path}/elsewhere/course", str(beside)) == "$R/../course"
    assert str(tmp_path) not in shown
    inside = repo / "results"
    assert report.relative_paths(f"--out {inside}/rnn", str(inside)) == "--out results/rnn"
    assert "`$R` stands for this results folder" in report.results_note(str(outside))


def test_validation_overlay_shares_one_axis_and_bands_seeds(tmp_path, monkeypatch):
    """One panel per cell, a line per hidden size, the mean of two seeds with a min-max band, one shared y axis."""
    from common.report import plotting
    from recurrent import plots
    saved = {}
    monkeypatch.setattr(plotting, "save", lambda fig, path: saved.setdefault("fig", fig) and path)
    history = lambda a: [{"epoch": e, "val_accuracy": [a + 0.01 * e, a + 0.02 * e]} for e in (1, 2, 3)]  # noqa: E731
    runs = [("rnn", 64, history(0.5)), ("rnn", 16, history(0.3)), ("lstm", 16, history(0.9))]
    plots.plot_validation_overlay(runs, str(tmp_path / "f.png"))
    axes = saved["fig"].axes
    assert [ax.get_title() for ax in axes] == ["RNN", "LSTM"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert [ln.get_label() for ln in axes[0].get_lines()] == ["16 hidden", "64 hidden"]  # by size
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), [0.515, 0.53, 0.545])  # mean of the seeds
    assert len(axes[0].collections) == 2 and "2 seeds" in axes[0].get_ylabel()  # one band per line


def test_curves_of_several_models_say_models_not_seeds(tmp_path, monkeypatch):
    """A run's models may differ in more than the seed (--lr a,b; the ablation's shared program): the legend of
    its curves names what they are, the mean of N models with their min-max band."""
    from common.report import plotting

    saved = {}
    monkeypatch.setattr(plotting, "save", lambda fig, path, dpi=130: saved.setdefault("fig", fig) and path)
    keys = ("train_accuracy", "train_running_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss",
            "test_loss", "train_running_loss")
    per_model = [[{"epoch": e, **{k: 0.1 * e + 0.01 * m for k in keys}} for e in (1, 2)] for m in range(2)]
    rows = [{"epoch": e, **{k: 0.1 * e + 0.005 for k in keys}} for e in (1, 2)]
    plotting.plot_history(rows, str(tmp_path / "f.png"), "LeNet5 (mean of 2 models)", per_model=per_model)
    labels = [t.get_text() for legend in saved["fig"].legends for t in legend.get_texts()]
    assert "validation, mean of 2 models" in labels and "shaded: min-max over the models" in labels
    assert not any("seed" in label for label in labels)
