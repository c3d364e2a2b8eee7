"""`python run.py --task visualize`: inside the trained LeNet5 (report Part 1c, Figures 2-3).

Loads the checkpoint that `--task lenet` wrote and writes into `--out` (default results/visualize):
  fig2_conv1_filters.png          the conv1 kernels
  fig3_activations.png            conv activations before and after batch norm over the test split
  activation_stats.json           per network, layer and stage: mean, std, zeros, skewness, excess kurtosis,
                                  KS distance to the fitted normal (+ the histograms); printed as a table
  fig_feature_maps.png            conv1 and conv2 maps of one seeded test image per class
  fig_filters_over_training.png   conv1 kernels after the epochs `--task lenet` saved (when it saved them)
  fig_batchnorm_comparison.png    with --compare-batchnorm: pre-pooling distributions with and without BN

The statistics come from one jitted pass over the test split that reduces each batch to per-channel
central-moment sums and a fixed-bin histogram (common.core.stats); only those small summaries leave the device,
so the activations of the whole split are never held at once. The histogram range comes from a cheaper
jitted min/max pass before it.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from common import data as data_lib
from common.core import stats
from common.core.errors import DataError
from common.run import results as results_lib
from common.runtime import checkpoint as ckpt
from common.runtime.outputs import RunDir, atomic_write_json
from lenet import checkpoint as lenet_checkpoint
from lenet import visualize_plots as viz_plots
from lenet.config import LeNetConfig
from lenet.model import create_model
from lenet.train import FILTER_HISTORY, data_name, train_and_evaluate

NOBN_SUFFIX = "_nobn"
# Histogram bins per layer and stage. The KS bounds are within about one bin's mass of the exact value, so
# they use many fine bins (a bincount costs the same); the JSON and the figures keep them summed to fewer.
BINS = 4096
STORED_BINS = 512
FEATURE_MAP_SEED = 0  # which test image of each class is shown
# Suffix of the sown intermediates (lenet.model) -> stage key in the statistics, label in figures. Checked
# in this order ('_pre_bn' before '_bn'); a bare 'conv{i}' is the pre-BN stage too.
STAGES = (("_pre_bn", "pre_bn", "after ReLU, before batch norm"),
          ("_bn", "post_bn", "after batch norm"),
          ("_pool", "post_pool", "after max-pool"))
STAGE_LABEL = {key: label for _, key, label in STAGES}
STAGE_ORDER = {key: i for i, (_, key, _) in enumerate(STAGES)}

FIG_FILTERS = "fig2_conv1_filters.png"
FIG_ACTIVATIONS = "fig3_activations.png"
FIG_FEATURE_MAPS = "fig_feature_maps.png"
FIG_FILTER_HISTORY = "fig_filters_over_training.png"
FIG_BN_COMPARISON = "fig_batchnorm_comparison.png"
STATS_JSON = "activation_stats.json"


@dataclasses.dataclass
class Network:
    """A trained LeNet5 ready to run: its config, variables, and where it came from."""

    key: str  # 'batchnorm' or 'no_batchnorm' in activation_stats.json
    label: str  # for titles and the table
    config: LeNetConfig
    variables: dict
    source: str  # the checkpoint folder given (the --task lenet output folder)
    run_info: dict

    @property
    def model(self):
        return create_model(self.config, len(self.run_info.get("class_names") or range(10)))


# ------------------------------------------------------------------------------------------------ entry


@dataclasses.dataclass(frozen=True)
class _Options:
    """What `visualize` was asked for beyond the two folders (see its arguments)."""

    train_config: LeNetConfig | None
    data_dir: str | None
    tfds_data_dir: str | None
    image_mode: str | None
    progress: bool
    command: str | None


def visualize(checkpoint: str, out: str, *, compare_batchnorm: bool = False, train_if_missing: bool = False,
              train_config: LeNetConfig | None = None, data_dir: str | None = None,
              tfds_data_dir: str | None = None, image_mode: str | None = None, progress: bool = True,
              command: str | None = None) -> str:
    """Loads (or trains) the networks, writes the statistics and figures into `out`; returns the folder.

    Args:
      checkpoint: the folder `--task lenet` (or `lenet.train.train_and_evaluate`) wrote.
      compare_batchnorm: also load, or train with the checkpoint's settings, LeNet5 without batch norm (into
        `checkpoint + "_nobn"`).
      train_if_missing: train `train_config` (default: the report's `LeNetConfig()`) into `checkpoint` first
        when there is no checkpoint there.
      data_dir, tfds_data_dir, image_mode: read the data from here instead of where the checkpoint's run.json
        says (None: the checkpoint's own).
      progress, command: progress bars while training; the command recorded in the metrics of what it trains.
    """
    config = (train_config or LeNetConfig()).validate() if train_if_missing else None
    opts = _Options(config, data_dir, tfds_data_dir, image_mode, progress, command)
    main_net = _load_or_train(checkpoint, opts)
    dataset = data_lib.load_dataset(main_net.config.data)
    lenet_checkpoint.check_fits(main_net.model, main_net.variables, dataset, main_net.source)
    if len(dataset.test) == 0:
        raise DataError("the test split is empty; the statistics need test images")
    networks = [main_net]
    if compare_batchnorm and not main_net.config.use_batchnorm:
        print(f"--compare-batchnorm: {main_net.source} has no batch norm already; nothing to compare it with",
              file=sys.stderr)
    elif compare_batchnorm:
        networks.append(_load_or_train_nobn(main_net, checkpoint + NOBN_SUFFIX, dataset, opts))
        lenet_checkpoint.check_fits(networks[-1].model, networks[-1].variables, dataset, networks[-1].source)

    rundir = RunDir(out)
    rundir.open(keep_partial=False)
    batch_size = main_net.config.train.eval_batch_size
    results = {net.key: activation_statistics(net, dataset.test, batch_size) for net in networks}
    report = stats_report(networks, results, dataset)
    for net in report["networks"].values():  # relative to this file's folder: true when the results move
        net["checkpoint"] = results_lib.portable_path(net["checkpoint"], rundir.path())
    report = results_lib.readable(report, results_lib.results_root(rundir.path()))  # its data source
    atomic_write_json(rundir.path(STATS_JSON), report)
    print(format_table(report["table"]))
    print("test accuracy: " + ", ".join(f"{n['label']} {n['test_accuracy']:.4f}" for n in report["networks"].values()))

    write_figures(rundir, networks, results, dataset, checkpoint)
    return rundir.commit()


# ------------------------------------------------------------------------------------------- checkpoints


def how_to_make(checkpoint: str, data_dir: str | None, use_batchnorm: bool = True) -> str:
    data = f" --data-dir {data_dir}" if data_dir else ""
    nobn = "" if use_batchnorm else " --no-batchnorm"
    # The checkpoint loaders quote this in backticks: "Make one with `<this>`." -- so it opens and closes one
    # pair fewer than it shows.
    return (f"python run.py --task lenet{nobn}{data} --out {checkpoint}` or add --train-if-missing to "
            f"`python run.py --task visualize")


def _load_or_train(checkpoint: str, opts: _Options) -> Network:
    """The checkpoint's network; trained there first with `opts.train_config` when it is set and there is none."""
    if opts.train_config is not None and not os.path.isdir(ckpt.resolve_checkpoint_dir(checkpoint)):
        print(f"no checkpoint at {checkpoint}; training LeNet5 there first (--train-if-missing)", file=sys.stderr)
        train_and_evaluate(opts.train_config, checkpoint, progress=opts.progress, command=opts.command)
    net = load_network(checkpoint, how_to_make(checkpoint, opts.data_dir))
    return dataclasses.replace(net, config=_with_data_overrides(net.config, opts))


def _load_or_train_nobn(main_net: Network, path: str, dataset: data_lib.Dataset, opts: _Options) -> Network:
    """Loads `path` when it holds LeNet5 without batch norm trained with the main network's settings;
    otherwise (absent, or stale: another config) trains it there, replacing what was there."""
    expected = dataclasses.replace(main_net.config, use_batchnorm=False)
    net = None
    if os.path.isdir(ckpt.resolve_checkpoint_dir(path)):
        net = load_network(path, how_to_make(path, opts.data_dir, use_batchnorm=False))
        if net.config != expected:
            print(f"{path} was trained with other settings than {main_net.source}; retraining it",
                  file=sys.stderr)
            net = None
    if net is None:
        print(f"training LeNet5 without batch norm into {path} (same settings as {main_net.source}; "
              f"{expected.train.epochs} epochs)", file=sys.stderr)
        train_and_evaluate(expected, path, dataset=dataset, progress=opts.progress, command=opts.command)
        net = load_network(path, how_to_make(path, opts.data_dir, use_batchnorm=False))
    return dataclasses.replace(net, config=_with_data_overrides(net.config, opts))


def load_network(path: str, make_hint: str) -> Network:
    """Reads a `--task lenet` checkpoint; every way it can be unusable is a CheckpointError."""
    config, variables, run_info = lenet_checkpoint.load_lenet(path, make_hint)
    bn = config.use_batchnorm
    key, label = ("batchnorm", "LeNet5 with batch norm") if bn else ("no_batchnorm", "LeNet5 without batch norm")
    return Network(key=key, label=label, config=config, variables=variables, source=path, run_info=run_info)


def _with_data_overrides(config: LeNetConfig, opts: _Options) -> LeNetConfig:
    return lenet_checkpoint.with_data_overrides(config, opts.data_dir, opts.tfds_data_dir, opts.image_mode)


# ---------------------------------------------------------------------------------------------- stats


def _intermediates(model, variables, images: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """images [b, h, w, c] -> (logits [b, classes], {sown name: activation [b, h', w', channels]})."""
    logits, state = model.apply(variables, images, train=False, mutable=["intermediates"])
    return logits, {name: values[0] for name, values in state["intermediates"].items()}


def activation_statistics(net: Network, split: data_lib.Split, batch_size: int, bins: int = BINS) -> dict:
    """Statistics of every sown activation over `split`:
    {'accuracy': float, 'layers': {layer: {stage: StreamingStats.result()}}}.

    Two jitted passes over padded batches of `batch_size` (one compiled shape each): min/max, then
    moments + histograms over that range. Per-batch results stay on the device until the end, so the
    host never stalls the device mid-pass.
    """
    model = net.model

    @jax.jit
    def range_step(variables, batch):
        _, acts = _intermediates(model, variables, batch["image"])
        return {name: stats.batch_min_max(x, batch["mask"]) for name, x in acts.items()}

    @jax.jit
    def stats_step(variables, batch, ranges):
        logits, acts = _intermediates(model, variables, batch["image"])
        out = {name: (stats.batch_moments(x, batch["mask"]),
                      stats.batch_histogram(x, ranges[name][0], ranges[name][1], bins, batch["mask"]))
               for name, x in acts.items()}
        correct = jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * batch["mask"])
        return out, correct

    parts = [range_step(net.variables, b) for b in data_lib.eval_batches(split, batch_size)]
    parts = jax.device_get(parts)
    ranges = {name: stats.histogram_edges(min(p[name][0] for p in parts), max(p[name][1] for p in parts), bins)[:2]
              for name in parts[0]}
    accumulators = {name: stats.StreamingStats(lo, hi, bins) for name, (lo, hi) in ranges.items()}
    dev_ranges = {name: (jnp.float32(lo), jnp.float32(hi)) for name, (lo, hi) in ranges.items()}
    correct = []
    for batch in data_lib.eval_batches(split, batch_size):
        out, c = stats_step(net.variables, batch, dev_ranges)
        for name, (summary, hist) in out.items():
            accumulators[name].add(summary, hist)
        correct.append(c)
    layers: dict[str, dict[str, dict]] = {}
    for name in sorted(accumulators, key=lambda n: (layer_order(split_name(n)[0]), STAGE_ORDER[split_name(n)[1]])):
        layer, stage = split_name(name)
        keep = STORED_BINS if bins % STORED_BINS == 0 else None
        layers.setdefault(layer, {})[stage] = accumulators[name].result(keep_bins=keep)
    return {"accuracy": float(np.sum(jax.device_get(correct))) / len(split), "layers": layers}


def split_name(name: str) -> tuple[str, str]:
    """Sown name -> (layer, stage): 'conv2_bn' -> ('conv2', 'post_bn'), 'conv1_pre_bn' -> ('conv1', 'pre_bn')."""
    for suffix, key, _ in STAGES:
        if name.endswith(suffix):
            return name[: -len(suffix)], key
    return name, "pre_bn"


def layer_order(layer: str) -> tuple[int, str]:
    """Sort key: conv2 before conv10."""
    digits = "".join(ch for ch in layer if ch.isdigit())
    return (int(digits) if digits else 0, layer)


ALL_MODELS = "all_models.msgpack"  # every model of a run of several (common.run.results), beside the first model's


def model_variables(net: Network) -> list[dict]:
    """The variables of every model the checkpoint's run trained (its ALL_MODELS, stacked over a leading
    model axis, split here); [net.variables] when it trained one."""
    path = os.path.join(ckpt.resolve_checkpoint_dir(net.source), ALL_MODELS)
    if not os.path.isfile(path):
        return [net.variables]
    stacked = ckpt.load_tree(path)
    n = len(jax.tree_util.tree_leaves(stacked)[0])
    return [jax.tree_util.tree_map(lambda x, i=i: np.asarray(x[i]), stacked) for i in range(n)]


def flat_table(key: str, layers: dict) -> list[dict]:
    """One row per (layer, stage) of one network's `activation_statistics(...)['layers']`, histograms left out."""
    return [{"network": key, "layer": layer, "stage": stage, **{k: v for k, v in st.items() if k != "histogram"}}
            for layer, stages in layers.items() for stage, st in stages.items()]


def per_model_tables(networks: list[Network], results: dict[str, dict], split: data_lib.Split) -> list[list[dict]]:
    """flat_table rows of every network for each model index i (model 0 is `results`, the figures' model):
    the statistics over the N models of a several-seed run. Model i of each network is paired with model i of
    the other (the same seed)."""
    per_net = {}
    for net in networks:
        variables = model_variables(net)
        per_net[net.key] = [results[net.key]] + [
            activation_statistics(dataclasses.replace(net, variables=v), split, net.config.train.eval_batch_size)
            for v in variables[1:]]
    tables = []
    for i in range(min(len(v) for v in per_net.values())):
        rows = []
        for net in networks:
            res = per_net[net.key][i]
            rows += [{**row, "test_accuracy": res["accuracy"]} for row in flat_table(net.key, res["layers"])]
        tables.append(rows)
    return tables


def stats_report(networks: list[Network], results: dict[str, dict], dataset: data_lib.Dataset) -> dict:
    """The content of activation_stats.json: nested per network/layer/stage (model 0, the figures' model), a
    flat table of it, and `per_model`: the flat table of each of the N models when the run trained several."""
    nets, table = {}, []
    for net in networks:
        res = results[net.key]
        table += flat_table(net.key, res["layers"])
        nets[net.key] = {"label": net.label, "checkpoint": os.path.abspath(net.source),
                         "test_accuracy": res["accuracy"], "layers": res["layers"]}
    per_model = per_model_tables(networks, results, dataset.test)
    return {
        "description": "Activations of every test image, per conv layer and stage. pre_bn: after ReLU, before "
                       "batch norm (for the network without batch norm: after ReLU); post_bn: after batch norm; "
                       "post_pool: after 2x2 max-pooling. Skewness and excess kurtosis are population "
                       "estimators over all values of the layer (channels pooled); channel_median_* is the "
                       "median over channels of each channel's own value. ks_normal is the Kolmogorov-Smirnov "
                       f"distance to N(mean, std) from a {BINS}-bin histogram (a lower bound; ks_normal_upper "
                       f"bounds it from above); 'histogram' holds the counts summed to {STORED_BINS} bins. "
                       "'networks' and 'table' are model 0's (the first seed's, shown in the figures); "
                       "'per_model' holds the table of each model the checkpoint's run trained.",
        "split": "test", "test_images": len(dataset.test), "data_source": dataset.source,
        "models": len(per_model),
        "networks": nets,
        "table": table,
        "per_model": per_model if len(per_model) > 1 else [],
    }


TABLE_COLUMNS = (("network", "network", "{}"), ("layer", "layer", "{}"), ("stage", "stage", "{}"),
                 ("mean", "mean", "{:.3f}"), ("std", "std", "{:.3f}"), ("zeros", "zero_fraction", "{:.1%}"),
                 ("skew", "skewness", "{:.2f}"), ("ex.kurt", "excess_kurtosis", "{:.2f}"),
                 ("KS", "ks_normal", "{:.3f}"), ("ch.skew", "channel_median_skewness", "{:.2f}"),
                 ("ch.kurt", "channel_median_excess_kurtosis", "{:.2f}"))


def format_table(rows: list[dict]) -> str:
    """The statistics as an aligned text table (ch.* = median over channels of per-channel values)."""
    cells = [[h for h, _, _ in TABLE_COLUMNS]]
    for r in rows:
        cells.append([("n/a" if r.get(k) is None else fmt.format(r[k])) for _, k, fmt in TABLE_COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figures


def write_figures(rundir: RunDir, networks: list[Network], results: dict, dataset: data_lib.Dataset,
                  checkpoint: str) -> None:
    main_net = networks[0]
    res = results[main_net.key]
    where = _describe_source(main_net)
    kernel = np.asarray(main_net.variables["params"]["conv1"]["kernel"])
    viz_plots.plot_filter_grid(kernel, rundir.path(FIG_FILTERS),
                               f"The {kernel.shape[-1]} conv1 filters of {main_net.label} ({where})")

    layers = res["layers"]
    bn = main_net.config.use_batchnorm
    panels = [(f"{layer}: {STAGE_LABEL[stage] if bn else 'after ReLU (no batch norm)'}", layers[layer][stage])
              for layer in layers for stage in ("pre_bn", "post_bn") if stage in layers[layer]]
    viz_plots.plot_activation_histograms(
        panels, rundir.path(FIG_ACTIVATIONS),
        f"Activations of {main_net.label} over all {len(dataset.test)} test images\n({where}); "
        "top: linear density, bottom: log density; dashed: normal with the same mean and std",
        colors_=["tab:blue", "tab:orange"] * len(layers) if bn else None)

    plot_feature_maps(main_net, dataset, rundir.path(FIG_FEATURE_MAPS), where)

    history = load_filter_history(checkpoint)
    if history:
        viz_plots.plot_filters_over_training(
            history, rundir.path(FIG_FILTER_HISTORY),
            f"conv1 filters during training: {main_net.label} ({where})")
    else:
        print(f"no {FILTER_HISTORY} beside the checkpoint {checkpoint}: skipping {FIG_FILTER_HISTORY}",
              file=sys.stderr)

    if len(networks) > 1:
        other = networks[1]
        other_layers = results[other.key]["layers"]
        grid = [[(f"{layer}, with BN: {STAGE_LABEL['pre_bn']}", layers[layer].get("pre_bn")),
                 (f"{layer}, with BN: after batch norm (pooled next)", layers[layer].get("post_bn")),
                 (f"{layer}, without BN: after ReLU (pooled next)", other_layers.get(layer, {}).get("pre_bn"))]
                for layer in layers]
        viz_plots.plot_distribution_grid(
            grid, rundir.path(FIG_BN_COMPARISON),
            f"Batch norm on and off: conv activations over the test split ({where}); test accuracy "
            f"{res['accuracy']:.3f} with BN, {results[other.key]['accuracy']:.3f} without\n"
            "x: (value - mean) / std of each panel; y: log density, shared along a row; dashed: N(0, 1), which "
            "is a parabola on this axis",
            column_colors=["tab:blue", "tab:orange", "tab:green"])


def _describe_source(net: Network) -> str:
    epochs = net.config.train.epochs
    return f"{data_name(net.config)}, {net.config.data.image_mode}, {epochs} epoch{'s' if epochs != 1 else ''}"


def pick_one_per_class(labels: np.ndarray, seed: int = FEATURE_MAP_SEED) -> list[int]:
    """One index per class present in `labels`, chosen with a seeded generator (same picks every run)."""
    rng = np.random.default_rng(seed)
    return [int(rng.choice(np.flatnonzero(labels == c))) for c in np.unique(labels)]


def plot_feature_maps(net: Network, dataset: data_lib.Dataset, path: str, where: str) -> str:
    idx = pick_one_per_class(dataset.test.labels)
    images = data_lib.to_float(dataset.test.images[idx])
    logits, acts = jax.jit(lambda v, x: _intermediates(net.model, v, x))(net.variables, jnp.asarray(images))
    probs = np.asarray(jax.nn.softmax(logits, -1))
    names = dataset.class_names
    row_labels = []
    for k, i in enumerate(idx):
        true, pred = int(dataset.test.labels[i]), int(np.argmax(probs[k]))
        verdict = "right" if pred == true else "wrong"
        row_labels.append(f"{names[true]}\ntest #{i}\n\npredicted:\n{names[pred]} ({verdict})\n"
                          f"p = {probs[k, pred]:.2f}")
    layer_maps = []
    pre_bn = [n for n in acts if split_name(n)[1] == "pre_bn"]
    for name in sorted(pre_bn, key=lambda n: layer_order(split_name(n)[0])):
        layer, maps = split_name(name)[0], np.asarray(acts[name])
        channels = maps.shape[-1]
        layer_maps.append((f"{layer}: {channels} maps, {maps.shape[1]}x{maps.shape[2]}, after ReLU", maps,
                           4 if channels > 16 else 2))
    return viz_plots.plot_feature_maps(
        images, row_labels, layer_maps, path,
        f"Feature maps of {net.label} ({where}): one test image per class (seed {FEATURE_MAP_SEED})")


def load_filter_history(checkpoint: str) -> dict[int, np.ndarray]:
    """{epoch: conv1 kernel} from the npz `--task lenet` writes beside its checkpoint ({} when absent)."""
    folder = ckpt.resolve_checkpoint_dir(checkpoint)
    candidates = [os.path.join(checkpoint, FILTER_HISTORY), os.path.join(os.path.dirname(folder), FILTER_HISTORY)]
    for path in candidates:
        if os.path.isfile(path):
            try:
                with np.load(path) as f:
                    return {int(k.split("_", 1)[1]): np.asarray(f[k]) for k in f.files if k.startswith("epoch_")}
            except (OSError, ValueError) as e:
                print(f"cannot read {path} ({e.__class__.__name__}); skipping {FIG_FILTER_HISTORY}", file=sys.stderr)
                return {}
    return {}
