"""`python run.py --task report`: every result under the results root in one report.html and REPORT.md.

`--out` is the results root (default `results`), the folder that holds each task's output folder:
  lenet/ visualize/ deconv/ rnn/ compare/ (and run_all.json from `--task all`)
It writes `<root>/report.html` (figures embedded as base64 data URIs: one file, no network needed) and
`<root>/REPORT.md` (figures linked relatively). Figures are found by globbing each task's folder, so a new
figure shows up without a change here; known names get their part's caption, others a generic one.
Each measured number sits beside the assignment's, with the command, seeds, machine and time that produced it.
A part that has not been run is listed as missing with the command that makes it.

The content is built once as a list of blocks (heading, paragraph, table, figure, missing) and rendered twice.
"""
from __future__ import annotations

import base64
import dataclasses
import fnmatch
import glob
import html
import os
import re
import shlex
import time
from typing import Callable, Union

from common import run_all
from common.errors import UserError
from common.outputs import read_json
from lenet.config import LeNetConfig
from recurrent.config import RNNConfig

HTML_NAME = "report.html"
MD_NAME = "REPORT.md"
RUN_ALL_JSON = "run_all.json"  # written by `--task all`
SKIP_DIRS = ("checkpoint",)  # model weights, never figures of the report
CIFAR_FOLDER = "../shared/data/elec576/CIFAR10"
CELL_NAMES = {"rnn": "Simple RNN", "lstm": "LSTM", "gru": "GRU"}
CELL_ORDER = {"rnn": 0, "lstm": 1, "gru": 2}
# The assignment's Figures 4-11: simple RNN then LSTM, hidden 16, 32, 64, 128.
ASSIGNMENT_FIGURE = {(cell, h): 4 + 4 * i + j for i, cell in enumerate(("rnn", "lstm"))
                     for j, h in enumerate((16, 32, 64, 128))}


# ------------------------------------------------------------------------------------------------ blocks


@dataclasses.dataclass
class Cell:
    """A table cell with a CSS class (e.g. 'missing', 'num', 'small')."""

    text: str
    css: str = ""


CellLike = Union[str, Cell]


@dataclasses.dataclass
class Heading:
    text: str
    anchor: str
    level: int = 2


@dataclasses.dataclass
class Para:
    text: str  # `backticks` mark code
    css: str = ""


@dataclasses.dataclass
class Table:
    headers: list[str]
    rows: list[list[CellLike]]
    caption: str = ""


@dataclasses.dataclass
class Figure:
    path: str  # relative to the results root
    caption: str
    number: int = 0  # filled in by number_figures
    half: bool = False  # shown two to a row in HTML (the many small per-run curves)


@dataclasses.dataclass
class Missing:
    what: str
    command: str
    note: str = ""


Block = Union[Heading, Para, Table, Figure, Missing]


# ------------------------------------------------------------------------------------------ assignment


@dataclasses.dataclass(frozen=True)
class Target:
    """What the assignment reports for one experiment: a point ('about 0.60') or a range ('96-97%')."""

    low: float | None
    high: float | None
    text: str

    def difference(self, measured: float | None) -> str:
        """Signed distance of `measured` from the target ('within' inside a range)."""
        if measured is None or self.low is None:
            return "n/a"
        if self.low == self.high:
            return f"{measured - self.low:+.3f}"
        if self.low <= measured <= self.high:
            return "within"
        edge = self.low if measured < self.low else self.high
        return f"{measured - edge:+.3f}"


LENET_TARGET = Target(0.60, 0.60, "about 0.60 (60%) validation and test; train up to about 0.80")
RNN64_TARGET = Target(0.96, 0.97, "0.96-0.97 (96-97%) train, validation and test")
LSTM128_TARGET = Target(0.98, 0.99, "0.98-0.99 (98-99%) train, validation and test")
NO_TARGET = Target(None, None, "not in the assignment")
RNN_TARGETS = {("rnn", 64): RNN64_TARGET, ("lstm", 128): LSTM128_TARGET}  # (cell, hidden) -> the report's
CLAIM_1C = ("batch normalization (before max pooling) significantly helped the output of the first "
            "convolutional layer to be more normally distributed, but only slightly affected the distribution "
            "of the output of the second convolutional layer")
CLAIM_3C = ("Surprisingly, the RNN training in this assignment was much easier to optimize than the CNN training "
            "from earlier in the assignment, perhaps because the images in the MNIST dataset had a higher "
            "resolution compared to the shrunken images in the CIFAR10 dataset")


# ----------------------------------------------------------------------------------------------- parts


@dataclasses.dataclass(frozen=True)
class Part:
    key: str  # the task, and its folder under the root
    title: str
    anchor: str
    required: tuple[str, ...]  # present when any of these exists in the folder (glob patterns)
    expected: tuple[str, ...]  # figures the task makes; absent ones are listed as missing
    captions: tuple[tuple[str, Callable[[str], str]], ...]  # (pattern on the root-relative path, caption(path))
    also: tuple[str, ...] = ()  # other folders the task writes figures into (shown in this part too)


def _fixed(text: str) -> Callable[[str], str]:
    return lambda path: text


def _run_caption(prefix: str, assignment_figure: bool) -> Callable[[str], str]:
    """Caption of a per-configuration recurrent figure `.../fig_<cell>_h<hidden>.png`."""

    def caption(path: str) -> str:
        m = re.search(r"fig_(rnn|lstm|gru)_h(\d+)\.png$", path)
        if not m:
            return generic_caption(path)
        cell, hidden = m.group(1), int(m.group(2))
        fig = ASSIGNMENT_FIGURE.get((cell, hidden)) if assignment_figure else None
        ref = f" (the assignment's Figure {fig})" if fig else ""
        return f"{prefix}{CELL_NAMES[cell]} with {hidden} hidden units: accuracy and loss against epoch{ref}."

    return caption


PARTS = (
    Part("lenet", "Part 1b: LeNet5 on CIFAR10", "part-1b", ("metrics.json",), ("fig1_curves.png",), (
        ("lenet/fig1_curves.png", _fixed("The assignment's Figure 1: accuracy and loss of LeNet5 on CIFAR10 against "
                                         "epoch, for train (eval mode; dotted: running average with dropout on), "
                                         "validation and test.")),
    )),
    Part("visualize", "Part 1c: Inside the trained network", "part-1c", ("*.png", "activation_stats.json"),
         ("fig2_conv1_filters.png", "fig3_activations.png", "fig_batchnorm_comparison.png"), (
             ("visualize/fig2_conv1_filters.png", _fixed("The assignment's Figure 2: the 32 5x5 filters of the "
                                                         "first convolutional layer.")),
             ("visualize/fig3_activations.png", _fixed("The assignment's Figure 3: distributions of each "
                                                       "convolutional layer's activations over the test split, "
                                                       "before batch norm and max-pooling (and after).")),
             ("visualize/*batchnorm_comparison*.png", _fixed(
                 "With and without batch norm: each layer's activations before max-pooling, for the network "
                 "trained with batch norm and the one trained without (the assignment's claim 'not shown').")),
             ("visualize/fig_feature_maps.png", _fixed("Feature maps of conv1 and conv2 for one test image per "
                                                       "class.")),
             ("visualize/fig_filters_over_training.png", _fixed("The conv1 filters after selected epochs of "
                                                                "training.")),
             ("lenet_nobn/fig1_curves.png", _fixed("LeNet5 trained without batch norm (otherwise the same "
                                                   "settings), the comparison network of this part: accuracy "
                                                   "and loss against epoch.")),
         ), also=("lenet_nobn",)),
    Part("deconv", "Part 2: Visualizing and understanding (deconvnet)", "part-2", ("*.png", "topk.json"),
         ("fig_deconv_conv1.png", "fig_deconv_conv2.png", "fig_occlusion.png"), (
             ("deconv/fig_deconv_conv1.png", _fixed("Deconvnet (Zeiler & Fergus): for each conv1 filter, its "
                                                    "strongest activations projected back to pixel space (left) "
                                                    "beside the image patches that caused them (right), both "
                                                    "cropped to the filter's receptive field.")),
             ("deconv/fig_deconv_conv2.png", _fixed("The same for each conv2 filter: projections of its strongest "
                                                    "activations beside their image patches (receptive fields).")),
             ("deconv/fig_deconv_*.png", lambda p: "Deconvnet projections: " + generic_caption(p)),
             ("deconv/fig_occlusion*.png", _fixed("Occlusion sensitivity: how the correct class's probability "
                                                  "falls as a grey square covers each part of the image.")),
         )),
    Part("rnn", "Part 3a-3b: RNN, LSTM and GRU on MNIST", "part-3ab", ("*/metrics.json",), ("fig_summary.png",), (
        ("rnn/fig_summary.png", _fixed("Across cells and hidden sizes: final test accuracy, parameters and seconds "
                                       "per epoch.")),
        ("rnn/*/fig_rnn_h*.png", _run_caption("", True)),
        ("rnn/*/fig_lstm_h*.png", _run_caption("", True)),
        ("rnn/*/fig_gru_h*.png", _run_caption("", True)),
    )),
    Part("compare", "Part 3c: CNN vs RNN on the same MNIST splits", "part-3c", ("comparison.json",),
         ("fig_cnn_vs_rnn.png",), (
             ("compare/fig_cnn_vs_rnn.png", _fixed("LeNet5 against the recurrent net on the same MNIST splits and "
                                                   "seed: test accuracy against cumulative training seconds (left) "
                                                   "and epoch (middle), and training loss (right); dashed: 97%.")),
             ("compare/lenet/fig1_curves.png", _fixed("LeNet5 on MNIST (same architecture as Part 1b, 28x28x1 "
                                                      "input): accuracy and loss against epoch.")),
             ("compare/*/fig_*_h*.png", _run_caption("The recurrent net of the comparison: ", False)),
         )),
)


def part_command(part: str, root: str) -> str:
    """The command that makes `part` under `root` (the same argv `--task all` runs, without --quick)."""
    return "python run.py " + shlex.join(run_all.task_argv(part, root))


# -------------------------------------------------------------------------------------------- reading


def is_present(root: str, part: Part) -> bool:
    folder = os.path.join(root, part.key)
    return any(glob.glob(os.path.join(folder, pattern)) for pattern in part.required)


def natural_key(text: str) -> list:
    """'h16' before 'h128': digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def discover_figures(root: str, part: Part) -> list[Figure]:
    """Every PNG under the part's folders (checkpoints excluded), known captions first, in caption order.

    Figures of sub-runs (one per configuration) and of the `also` folders are shown half size."""
    figures = []
    for folder in (part.key,) + part.also:
        for path in glob.glob(os.path.join(root, folder, "**", "*.png"), recursive=True):
            rel = os.path.relpath(path, root)
            if any(d in SKIP_DIRS for d in rel.split(os.sep)[:-1]):
                continue
            order, caption = caption_for(part, rel)
            half = folder != part.key or rel.count(os.sep) > 1
            figures.append((order, natural_key(rel), Figure(rel, caption, half=half)))
    return [f for _, _, f in sorted(figures, key=lambda t: (t[0], t[1]))]


def caption_for(part: Part, rel: str) -> tuple[int, str]:
    """(rank of the first matching known pattern, caption); unknown figures rank last with a generic caption."""
    for i, (pattern, caption) in enumerate(part.captions):
        if fnmatch.fnmatch(rel, pattern):
            return i, caption(rel)
    return len(part.captions), generic_caption(rel)


def generic_caption(rel: str) -> str:
    """'deconv/sub/fig_top_k_grid.png' -> 'Top k grid (sub).' (the part's own folder left out)."""
    stem = os.path.splitext(os.path.basename(rel))[0]
    stem = re.sub(r"^fig\d*_", "", stem).replace("_", " ").strip() or stem
    where = os.sep.join(rel.split(os.sep)[1:-1])
    return stem[:1].upper() + stem[1:] + (f" ({where})" if where else "") + "."


def rnn_runs(root: str) -> list[dict]:
    """metrics.json of every recurrent run under <root>/rnn, in cell then hidden-size order."""
    runs = []
    for path in glob.glob(os.path.join(root, "rnn", "*", "metrics.json")):
        m = read_json(path)
        if m and m.get("config", {}).get("cell") in CELL_NAMES:
            runs.append(m)
    return sorted(runs, key=lambda m: (CELL_ORDER[m["config"]["cell"]], m["config"]["hidden"]))


# ------------------------------------------------------------------------------------------ formatting


def fmt_acc(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def fmt_seconds(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt_lr(lr) -> str:
    """0.00017, or '0.0001,0.0003' for a vmapped list of rates."""
    rates = lr if isinstance(lr, (list, tuple)) else [lr]
    return ",".join("n/a" if r is None else f"{r:g}" for r in rates)


def machine(env: dict | None) -> str:
    """'CPU: x86_64 Linux, 2 CPUs; jax 0.4.30' or 'NVIDIA H100 (gpu) on ...' from metrics.json's environment."""
    if not env:
        return "n/a"
    jax_version = env.get("versions", {}).get("jax")
    where = (f"CPU: {env.get('machine')}" if env.get("jax_backend") == "cpu"
             else f"{env.get('device')} ({env.get('jax_backend')}) on {env.get('machine')}")
    return where + (f"; jax {jax_version}" if jax_version else "")


def settings(metrics: dict, defaults) -> tuple[str, bool]:
    """('25 epochs, batch 50, lr 0.00017', shrunk?) where shrunk means fewer epochs or data than the report."""
    c = metrics.get("config", {})
    epochs = metrics.get("epochs", c.get("epochs"))
    text = f"{epochs} epoch{'' if epochs == 1 else 's'}, batch {c.get('batch_size')}, lr {fmt_lr(c.get('lr'))}"
    shrunk = False
    if c.get("limit"):
        text += f", first {c['limit']} training examples"
        shrunk = True
    if (c.get("epochs") or 0) < defaults.epochs:
        shrunk = True
    if shrunk:
        text += " (shrunk run: not comparable with the assignment)"
    return text, shrunk


def provenance(metrics: dict) -> list[CellLike]:
    """Command, seed(s), machine, wall time, finished-at cells of the run that wrote `metrics`."""
    seeds = metrics.get("seeds") or [metrics.get("config", {}).get("seed")]
    return [Cell(f"`{metrics.get('command', 'n/a')}`", "small"), ", ".join(map(str, seeds)),
            Cell(machine(metrics.get("environment")), "small"), fmt_seconds(metrics.get("wall_seconds")),
            Cell(metrics.get("finished_at", "n/a"), "small")]


PROVENANCE_HEADERS = ["command", "seed(s)", "machine", "wall time", "finished"]


# ------------------------------------------------------------------------------------------- sections


def summary_rows(root: str) -> list[list[CellLike]]:
    """The headline table: each measured accuracy beside the assignment's, with its provenance."""
    rows = []
    lenet = read_json(os.path.join(root, "lenet", "metrics.json"))
    rows.append(_summary_row("1b", "LeNet5 on CIFAR10", "lenet", lenet, LENET_TARGET, LeNetConfig,
                             part_command("lenet", root)))
    by_name = {(m["config"]["cell"], m["config"]["hidden"]): m for m in rnn_runs(root)}
    for part, (cell, hidden) in (("3a", ("rnn", 64)), ("3b", ("lstm", 128)), ("3b", ("gru", 128))):
        cmd = "python run.py " + shlex.join(["--task", "rnn", "--cell", cell, "--hidden", str(hidden),
                                             "--out", os.path.join(root, "rnn")])
        rows.append(_summary_row(part, f"{CELL_NAMES[cell]}-{hidden} on MNIST", f"rnn/{cell}_h{hidden}",
                                 by_name.get((cell, hidden)), RNN_TARGETS.get((cell, hidden), NO_TARGET),
                                 RNNConfig, cmd))
    comparison = read_json(os.path.join(root, "compare", "comparison.json"))
    for row in (comparison or {}).get("rows", []):
        metrics = read_json(os.path.join(root, "compare", row.get("folder") or "", "metrics.json"))
        rows.append(_summary_row("3c", f"{row['model']} on MNIST (comparison)", f"compare/{row.get('folder')}",
                                 metrics, NO_TARGET, RNNConfig, part_command("compare", root)))
    if comparison is None:
        rows.append(_summary_row("3c", "LeNet5 vs best recurrent net on MNIST", "compare", None, NO_TARGET,
                                 RNNConfig, part_command("compare", root)))
    return rows


def _summary_row(part, name, folder, metrics, target: Target, defaults, command) -> list[CellLike]:
    if metrics is None:
        return [part, name, *[Cell("missing", "missing")] * 3, target.text, "n/a",
                Cell(f"missing: run `{command}`", "missing"), "", "", "", ""]
    text, shrunk = settings(metrics, defaults)
    return [part, f"{name} (`{folder}`)", Cell(fmt_acc(metrics.get("train_accuracy")), "num"),
            Cell(fmt_acc(metrics.get("val_accuracy")), "num"), Cell(fmt_acc(metrics.get("test_accuracy")), "num"),
            target.text, Cell(target.difference(metrics.get("test_accuracy")), "num"),
            Cell(text, "warn small" if shrunk else "small"), *provenance(metrics)]


SUMMARY_HEADERS = ["part", "experiment", "train acc", "val acc", "test acc", "assignment", "test vs assignment",
                   "settings", *PROVENANCE_HEADERS]


def lenet_blocks(root: str) -> list[Block]:
    m = read_json(os.path.join(root, "lenet", "metrics.json"))
    c = LeNetConfig()
    blocks: list[Block] = [Para(
        f"LeNet5 (conv 5x5x32 + ReLU, batch norm, 2x2 max-pool; conv 5x5x64 + ReLU, batch norm, max-pool; "
        f"fc 1024 + ReLU, dropout {c.dropout_rate}; fc 10) trained with the report's settings: nadam {c.lr:g}, "
        f"batch {c.batch_size}, {c.epochs} epochs, L2 {c.conv_l2} on each conv kernel and {c.fc_l2} on fc1, "
        "Glorot-normal kernels, biases 0.1. The assignment: about 0.60 (60%) on both validation and test.")]
    if m:
        rows = [[label, Cell(fmt_acc(m.get(f"{split}_accuracy")), "num"), Cell(fmt_acc(m.get(f"{split}_loss")), "num"),
                 target] for label, split, target in (("train (eval mode)", "train", "up to about 0.80"),
                                                      ("validation", "val", "about 0.60 (60%)"),
                                                      ("test", "test", "about 0.60 (60%)"))]
        blocks.append(Table(
            ["split", "accuracy", "loss", "assignment"], rows,
            f"{m.get('epochs')} epochs on {m.get('data_source')} ({m.get('train_size')} train / "
            f"{m.get('val_size')} validation / {m.get('test_size')} test images); the reported model is epoch "
            f"{m.get('selected_epoch')} ({m.get('selection', 'best validation accuracy')}); last epoch: test "
            f"accuracy {fmt_acc((m.get('last_epoch') or {}).get('test_accuracy'))}; "
            f"{m.get('param_count', 0):,} parameters; {m.get('train_images_per_sec', 0):.0f} training images/s; "
            f"{fmt_seconds(m.get('seconds_per_epoch'))} per epoch."))
    return blocks


STATS_COLUMNS = (("network", "{}"), ("layer", "{}"), ("stage", "{}"), ("mean", "{:.3f}"), ("std", "{:.3f}"),
                 ("zero_fraction", "{:.1%}"), ("skewness", "{:.2f}"), ("excess_kurtosis", "{:.2f}"),
                 ("ks_normal", "{:.3f}"))


def visualize_blocks(root: str) -> list[Block]:
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_1C}\u201d (not shown there). The table gives each "
                                "layer's activation statistics over the test split; a normal distribution has "
                                "skewness 0, excess kurtosis 0 and a small KS distance.")]
    stats = read_json(os.path.join(root, "visualize", "activation_stats.json"))
    nets = (stats or {}).get("networks") or {}
    if nets:
        blocks.append(Para("Networks: " + "; ".join(
            f"`{key}` = {n.get('label', key)} (`{n.get('checkpoint', '?')}`), test accuracy "
            f"{fmt_acc(n.get('test_accuracy'))}" for key, n in nets.items()) + "."))
    table = (stats or {}).get("table") or []
    if table:
        columns = [(k, f) for k, f in STATS_COLUMNS if any(k in r for r in table)]
        rows = [[Cell(_fmt_value(r.get(k), f), "" if f == "{}" else "num") for k, f in columns] for r in table]
        blocks.append(Table([k.replace("_", " ") for k, _ in columns], rows,
                            f"From `visualize/activation_stats.json` ({stats.get('test_images', '?')} test "
                            f"images of {stats.get('data_source', '?')}); stages: pre_bn = after ReLU, before "
                            "batch norm; post_bn = after batch norm; post_pool = after max-pool."))
    return blocks


def _fmt_value(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def deconv_blocks(root: str) -> list[Block]:
    blocks: list[Block] = [Para(
        "Zeiler & Fergus's deconvnet on the trained LeNet5: for each filter of each conv layer, the images that "
        "activate it most strongly, and those activations projected back to pixel space through ReLU, "
        "unpooling with the max-pool switches and transposed convolutions.")]
    topk = read_json(os.path.join(root, "deconv", "topk.json"))
    if topk:
        blocks.append(Para(
            f"Settings (`deconv/topk.json`): top-{topk.get('top_k')} over the {topk.get('split')} split "
            f"({topk.get('split_size')} images of {topk.get('data_source')}), rule `{topk.get('mode')}`, batch "
            f"norm passed back by `{topk.get('bn')}`, checkpoint `{topk.get('checkpoint')}`; "
            f"{machine(topk.get('environment'))}."))
    return blocks


def rnn_blocks(root: str) -> list[Block]:
    c = RNNConfig()
    blocks: list[Block] = [Para(
        f"Hand-written cells over `jax.lax.scan`, each image row a time step; recurrent layer -> batch norm -> "
        f"dense 10. The report's settings: nadam {c.lr:g}, batch {c.batch_size}, {c.epochs} epochs. The "
        "assignment: simple RNN with 64 hidden units 96-97%; LSTM with 128 hidden units 98-99% (train, "
        "validation and test).")]
    runs = rnn_runs(root)
    if runs:
        blocks.append(Table(["cell", "hidden", "parameters", "train acc", "val acc", "test acc", "assignment",
                             "s/epoch", "settings", "seed(s)", "finished"], [_rnn_row(m) for m in runs],
                            f"Every run under `rnn/`; machine: {machine(runs[0].get('environment'))}; command: "
                            f"`{runs[0].get('command')}`."))
    return blocks


def _rnn_row(m: dict) -> list[CellLike]:
    """One recurrent run's line: size, accuracies (mean +- std over the models of a vmapped run), the
    assignment's figure, speed."""
    cfg = m["config"]
    target = RNN_TARGETS.get((cfg["cell"], cfg["hidden"]))
    text, shrunk = settings(m, RNNConfig)
    std = f" \u00b1 {m['test_accuracy_std']:.4f}" if m.get("test_accuracy_std") else ""
    return [CELL_NAMES[cfg["cell"]], Cell(str(cfg["hidden"]), "num"), Cell(f"{m.get('param_count', 0):,}", "num"),
            Cell(fmt_acc(m.get("train_accuracy")), "num"), Cell(fmt_acc(m.get("val_accuracy")), "num"),
            Cell(fmt_acc(m.get("test_accuracy")) + std, "num"), target.text if target else "",
            Cell(f"{m.get('seconds_per_epoch', 0):.1f}", "num"), Cell(text, "warn small" if shrunk else "small"),
            ", ".join(map(str, m.get("seeds", []))), Cell(m.get("finished_at", ""), "small")]


def compare_blocks(root: str) -> list[Block]:
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_3C}.\u201d That contrast changes the dataset and the "
                                "architecture at once. Here LeNet5 (unchanged, 28x28x1 input) and the best "
                                "recurrent net train on the same MNIST splits with the same seed, each with its "
                                "own report hyperparameters, for the same number of epochs.")]
    comp = read_json(os.path.join(root, "compare", "comparison.json"))
    if not comp:
        return blocks
    target = comp.get("target_accuracy", 0.97)
    pct = f"{round(target * 100):d}"

    def never(value, fmt):  # None means the run never reached the target
        return Cell("never" if value is None else fmt.format(value), "num")

    rows = [[r["model"], Cell(f"{r['param_count']:,}", "num"), Cell(fmt_acc(r["test_accuracy"]), "num"),
             Cell(fmt_acc(r["val_accuracy"]), "num"), Cell(f"{r['train_seconds_per_epoch']:.1f}", "num"),
             never(r.get(f"epochs_to_{pct}"), "{}"), never(r.get(f"train_seconds_to_{pct}"), "{:.1f}"),
             f"{fmt_lr(r['lr'])} / {r['batch_size']}", Cell(str(r["epochs"]), "num")] for r in comp.get("rows", [])]
    blocks.append(Table(["model", "parameters", "test acc", "val acc", "train s/epoch", f"epochs to {target:.0%}",
                         f"train s to {target:.0%}", "lr / batch", "epochs"], rows,
                        f"{comp.get('data_source')}: {comp.get('train_size')} train / {comp.get('val_size')} "
                        f"validation / {comp.get('test_size')} test images, seed {comp.get('seed')}; "
                        f"recurrent net: {comp.get('recurrent_choice', {}).get('reason', 'n/a')}; "
                        f"{machine(comp.get('environment'))}; finished {comp.get('finished_at')}."))
    blocks.append(Para("What the figures show: " + comp.get("summary", ""), "finding"))
    return blocks


SECTION_BLOCKS = {"lenet": lenet_blocks, "visualize": visualize_blocks, "deconv": deconv_blocks,
                  "rnn": rnn_blocks, "compare": compare_blocks}


def part_blocks(root: str, part: Part) -> tuple[list[Block], list[Missing]]:
    """The section of one part and what is missing from it."""
    blocks: list[Block] = [Heading(part.title, part.anchor)]
    command = part_command(part.key, root)
    folder = os.path.join(root, part.key)
    missing: list[Missing] = []
    if not is_present(root, part):
        note = (f"an unfinished run is in `{part.key}.partial/`: the same command resumes it"
                if os.path.isdir(folder + ".partial") else "")
        missing.append(Missing(f"{part.title}: no results in `{part.key}/`", command, note))
        return blocks + SECTION_BLOCKS[part.key](root) + missing, missing
    blocks += SECTION_BLOCKS[part.key](root)
    figures = discover_figures(root, part)
    found = {os.path.relpath(f.path, part.key) for f in figures}
    for name in part.expected:
        if name not in found:
            missing.append(Missing(f"{part.title}: figure `{part.key}/{name}`", command))
    data_files = sorted(os.path.relpath(p, root) for ext in ("json", "csv", "md")
                        for p in glob.glob(os.path.join(folder, f"*.{ext}")))
    if data_files:
        blocks.append(Para("Data: " + ", ".join(f"`{p}`" for p in data_files) + "."))
    return blocks + figures + missing, missing


def run_all_blocks(root: str) -> list[Block]:
    """How `--task all` made this folder, when it did: each task's status, time and command."""
    info = read_json(os.path.join(root, RUN_ALL_JSON))
    if not info:
        return []
    rows = [[t["task"], Cell(t["status"], "" if t["status"] == "ok" else "missing"),
             Cell(fmt_seconds(t.get("seconds")), "num"), Cell(f"`{t.get('command', '')}`", "small")]
            for t in info.get("tasks", [])]
    return [Heading("How these results were made", "made"),
            Table(["task", "status", "time", "command"], rows,
                  f"`{info.get('command')}` on {machine(info.get('environment'))}: "
                  f"{fmt_seconds(info.get('wall_seconds'))} in all, finished {info.get('finished_at')}.")]


def build_report(root: str) -> tuple[list[Block], list[Missing]]:
    """All the report's blocks, in order (summary table, missing list, provenance, one section per part), and
    the missing results (each also shown in its part's section)."""
    sections, missing = [], []
    for part in PARTS:
        blocks, miss = part_blocks(root, part)
        sections += blocks
        missing += miss
    head: list[Block] = [
        Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from `{os.path.abspath(root)}`. Each measured "
             "number sits beside the assignment's (`../shared/assignment-report.txt`), with the command, seed(s), "
             "machine and time that produced it.", "meta"),
        Heading("Measured against the assignment", "summary"),
        Table(SUMMARY_HEADERS, summary_rows(root)),
    ]
    if missing:
        head += [Heading("Missing results", "missing"),
                 Para(f"{len(missing)} result(s) are not in `{root}`; each line gives the command that makes it "
                      f"(add `--data-dir {CIFAR_FOLDER}` to the LeNet5 command to train on the course's image "
                      "folder).")] + missing
    return number_figures(head + run_all_blocks(root) + sections), missing


def number_figures(blocks: list[Block]) -> list[Block]:
    n = 0
    for b in blocks:
        if isinstance(b, Figure):
            n += 1
            b.number = n
    return blocks


# ------------------------------------------------------------------------------------------- rendering


def markdown_table(headers: list[str], rows: list[list[CellLike]]) -> str:
    """A GitHub-flavoured Markdown table; '|' in cells escaped."""
    def cell(c: CellLike) -> str:
        text = c.text if isinstance(c, Cell) else str(c)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], title: str) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            out += [("> " if b.css == "finding" else "") + b.text, ""]
        elif isinstance(b, Table):
            out += [markdown_table(b.headers, b.rows), ""] + ([f"*{b.caption}*", ""] if b.caption else [])
        elif isinstance(b, Figure):
            out += [f"![Figure {b.number}]({b.path})", "", f"**Figure {b.number}.** {b.caption} (`{b.path}`)", ""]
        elif isinstance(b, Missing):
            note = f" ({b.note})" if b.note else ""
            out += [f"- **Missing:** {b.what}{note}. Make it with: `{b.command}`", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escapes HTML and turns `code` spans into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def _html_cell(c: CellLike, tag: str = "td") -> str:
    text, css = (c.text, c.css) if isinstance(c, Cell) else (str(c), "")
    cls = f' class="{css}"' if css else ""
    return f"<{tag}{cls}>{_inline(text)}</{tag}>"


def to_html(blocks: list[Block], title: str, root: str) -> str:
    toc = "".join(f'<li><a href="#{b.anchor}">{html.escape(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading))
    body = []
    for i, b in enumerate(blocks):
        half = isinstance(b, Figure) and b.half
        prev_half = i > 0 and isinstance(blocks[i - 1], Figure) and blocks[i - 1].half
        if half and not prev_half:
            body.append('<div class="grid">')
        if prev_half and not half:
            body.append("</div>")
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{b.anchor}">{html.escape(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            body.append(f'<p class="{b.css}">{_inline(b.text)}</p>' if b.css else f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(_html_cell(h, "th") for h in b.headers)
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in b.rows)
            # The caption goes below as a paragraph: a <caption> would wrap to the width of a narrow table.
            cap = f'<p class="caption">{_inline(b.caption)}</p>' if b.caption else ""
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        f"</table>{cap}</div>")
        elif isinstance(b, Figure):
            body.append(f'<figure id="figure-{b.number}"><img src="{_data_uri(os.path.join(root, b.path))}" '
                        f'alt="Figure {b.number}"><figcaption><b>Figure {b.number}.</b> {_inline(b.caption)} '
                        f"<code>{html.escape(b.path)}</code></figcaption></figure>")
        elif isinstance(b, Missing):
            note = f" ({_inline(b.note)})" if b.note else ""
            body.append(f'<div class="missing-box"><b>Missing:</b> {_inline(b.what)}{note}.<br>Make it with: '
                        f"<code>{html.escape(b.command)}</code></div>")
    if blocks and isinstance(blocks[-1], Figure) and blocks[-1].half:
        body.append("</div>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><nav><ul>{toc}</ul></nav>"
            + "\n".join(body) + "</body></html>\n")


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 1280px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.8em; margin-bottom: .2em; }
h2 { margin-top: 2.2em; padding-bottom: .2em; border-bottom: 2px solid #e3e6ea; }
nav ul { display: flex; flex-wrap: wrap; gap: .3em 1.2em; padding: 0; list-style: none; }
nav a { color: #1a5fb4; text-decoration: none; }
code { font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #f3f4f6; padding: 0 .25em;
       border-radius: 3px; word-break: break-all; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 13.5px; }
p.caption { color: #555; font-size: 12.5px; margin: .4em 0 0; }
th, td { border: 1px solid #d8dbe0; padding: .35em .6em; vertical-align: top; text-align: left; }
th { background: #eef1f5; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.small { font-size: 12px; color: #444; }
td.missing, td.missing code { color: #a61b1b; background: #fdf0f0; }
td.warn { background: #fff7e0; }
figure { margin: 1.5em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0 1.5em; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #444; font-size: 13.5px; margin-top: .3em; }
.missing-box { border-left: 4px solid #c01c28; background: #fdf0f0; padding: .5em .8em; margin: .6em 0; }
p.finding { border-left: 4px solid #1a5fb4; background: #f0f5fc; padding: .6em .9em; }
p.meta { color: #555; }
"""


# ----------------------------------------------------------------------------------------------- entry


def write_text(path: str, text: str) -> None:
    """Writes `text` to a temporary name and renames it, so a reader never sees half a report."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


TITLE = "ELEC 576 Assignment 2 in JAX/Flax: results"


def run(args) -> int:
    root = args.out or "results"
    if not os.path.isdir(root):
        raise UserError(f"no results folder {root!r}: run `python run.py --task all` (or the tasks one by one) "
                        "first, or point --out at the folder that holds lenet/, rnn/, ...")
    blocks, missing = build_report(root)
    write_text(os.path.join(root, MD_NAME), to_markdown(blocks, TITLE))
    write_text(os.path.join(root, HTML_NAME), to_html(blocks, TITLE, root))
    n_fig = sum(isinstance(b, Figure) for b in blocks)
    print(f"report: {n_fig} figures in {os.path.join(root, HTML_NAME)} and {os.path.join(root, MD_NAME)}")
    if missing:
        print(f"report: {len(missing)} missing result(s) listed with the commands that make them")
    return 0
