"""The report's Part 1b (`--task lenet`) and Part 1c (`--task visualize`): what the assignment says, how the
measured numbers are shown beside it, and the captions of the figures these tasks write."""
from __future__ import annotations

import os

from common import report
from common.document import Block, Cell, CellLike, Para, Table
from common.outputs import METRICS_JSON, read_json
from common.report import Section, Target, fixed_caption, fmt_acc, fmt_seconds
from lenet.config import LeNetConfig
from lenet.train import FIGURE
from lenet.visualize import (FIG_ACTIVATIONS, FIG_BN_COMPARISON, FIG_FEATURE_MAPS, FIG_FILTER_HISTORY,
                             FIG_FILTERS, NOBN_SUFFIX, STATS_JSON)

LENET_KEY, VISUALIZE_KEY = "lenet", "visualize"  # the tasks, and their folders under the results root
NOBN_KEY = LENET_KEY + NOBN_SUFFIX  # where `--task visualize --compare-batchnorm` trains the comparison net
CIFAR_FOLDER = "../shared/data/elec576/CIFAR10"  # the course's image folder, relative to the repository
LENET_TARGET = Target(0.60, 0.60, "about 0.60 (60%) validation and test; train up to about 0.80")
CLAIM_1C = ("batch normalization (before max pooling) significantly helped the output of the first "
            "convolutional layer to be more normally distributed, but only slightly affected the distribution "
            "of the output of the second convolutional layer")
# activation_stats.json's table columns shown, with their formats ('{}': text, left-aligned)
STATS_COLUMNS = (("network", "{}"), ("layer", "{}"), ("stage", "{}"), ("mean", "{:.3f}"), ("std", "{:.3f}"),
                 ("zero_fraction", "{:.1%}"), ("skewness", "{:.2f}"), ("excess_kurtosis", "{:.2f}"),
                 ("ks_normal", "{:.3f}"))


# ---------------------------------------------------------------------------------------------- Part 1b


def lenet_blocks(root: str) -> list[Block]:
    """The architecture and settings, then train/validation/test accuracy beside the assignment's."""
    m = read_json(os.path.join(root, LENET_KEY, METRICS_JSON))
    c = LeNetConfig()
    blocks: list[Block] = [Para(
        f"LeNet5 (conv 5x5x32 + ReLU, batch norm, 2x2 max-pool; conv 5x5x64 + ReLU, batch norm, max-pool; "
        f"fc 1024 + ReLU, dropout {c.dropout_rate}; fc 10) trained with the report's settings: nadam {c.train.lr:g}, "
        f"batch {c.train.batch_size}, {c.train.epochs} epochs, L2 {c.conv_l2} on each conv kernel and {c.fc_l2} on fc1, "
        "Glorot-normal kernels, biases 0.1. The assignment: about 0.60 (60%) on both validation and test.")]
    if m:
        blocks.append(_lenet_table(m))
    return blocks


def _lenet_table(m: dict) -> Table:
    rows = [[label, Cell(fmt_acc(m.get(f"{split}_accuracy")), "num"), Cell(fmt_acc(m.get(f"{split}_loss")), "num"),
             target] for label, split, target in (("train (eval mode)", "train", "up to about 0.80"),
                                                  ("validation", "val", "about 0.60 (60%)"),
                                                  ("test", "test", "about 0.60 (60%)"))]
    return Table(
        ["split", "accuracy", "loss", "assignment"], rows,
        f"{m.get('epochs')} epochs on {m.get('data_source')} ({m.get('train_size')} train / "
        f"{m.get('val_size')} validation / {m.get('test_size')} test images); the reported model is epoch "
        f"{m.get('selected_epoch')} ({m.get('selection', 'best validation accuracy')}); last epoch: test "
        f"accuracy {fmt_acc((m.get('last_epoch') or {}).get('test_accuracy'))}; "
        f"{m.get('param_count', 0):,} parameters; {m.get('train_images_per_sec', 0):.0f} training images/s; "
        f"{fmt_seconds(m.get('seconds_per_epoch'))} per epoch.")


def lenet_summary(root: str, command: str) -> list[list[CellLike]]:
    """Part 1b's row of the headline table."""
    metrics = read_json(os.path.join(root, LENET_KEY, METRICS_JSON))
    return [report.summary_row("1b", "LeNet5 on CIFAR10", LENET_KEY, metrics, LENET_TARGET, LeNetConfig().train.epochs,
                               command)]


LENET_SECTION = Section(
    key=LENET_KEY, title="Part 1b: LeNet5 on CIFAR10", anchor="part-1b", required=(METRICS_JSON,),
    expected=(FIGURE,),
    captions=(
        (f"{LENET_KEY}/{FIGURE}", fixed_caption(
            "The assignment's Figure 1: accuracy and loss of LeNet5 on CIFAR10 against epoch, for train (eval "
            "mode; dotted: running average with dropout on), validation and test.")),
    ),
    blocks=lenet_blocks, summary=lenet_summary,
    hint=f"add `--data-dir {CIFAR_FOLDER}` to the LeNet5 command to train on the course's image folder")


# ---------------------------------------------------------------------------------------------- Part 1c


def visualize_blocks(root: str) -> list[Block]:
    """The assignment's claim about batch norm, the networks compared, and the activation statistics."""
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_1C}\u201d (not shown there). The table gives each "
                                "layer's activation statistics over the test split; a normal distribution has "
                                "skewness 0, excess kurtosis 0 and a small KS distance.")]
    stats = read_json(os.path.join(root, VISUALIZE_KEY, STATS_JSON)) or {}
    nets = stats.get("networks") or {}
    if nets:
        blocks.append(Para("Networks: " + "; ".join(
            f"`{key}` = {n.get('label', key)} (`{n.get('checkpoint', '?')}`), test accuracy "
            f"{fmt_acc(n.get('test_accuracy'))}" for key, n in nets.items()) + "."))
    if stats.get("table"):
        blocks.append(_stats_table(stats))
    return blocks


def _stats_table(stats: dict) -> Table:
    """activation_stats.json's table: the STATS_COLUMNS that any row has."""
    table = stats["table"]
    columns = [(k, f) for k, f in STATS_COLUMNS if any(k in r for r in table)]
    rows = [[Cell(_fmt_value(r.get(k), f), "" if f == "{}" else "num") for k, f in columns] for r in table]
    return Table([k.replace("_", " ") for k, _ in columns], rows,
                 f"From `{VISUALIZE_KEY}/{STATS_JSON}` ({stats.get('test_images', '?')} test images of "
                 f"{stats.get('data_source', '?')}); stages: pre_bn = after ReLU, before batch norm; post_bn = after "
                 "batch norm; post_pool = after max-pool.")


def _fmt_value(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _bn_comparison_glob() -> str:
    """FIG_BN_COMPARISON's stem anywhere in the name (the task may add a suffix per network pair)."""
    stem = os.path.splitext(FIG_BN_COMPARISON)[0].removeprefix("fig_")
    return f"{VISUALIZE_KEY}/*{stem}*.png"


VISUALIZE_SECTION = Section(
    key=VISUALIZE_KEY, title="Part 1c: Inside the trained network", anchor="part-1c",
    required=("*.png", STATS_JSON), expected=(FIG_FILTERS, FIG_ACTIVATIONS, FIG_BN_COMPARISON),
    captions=(
        (f"{VISUALIZE_KEY}/{FIG_FILTERS}", fixed_caption(
            "The assignment's Figure 2: the 32 5x5 filters of the first convolutional layer.")),
        (f"{VISUALIZE_KEY}/{FIG_ACTIVATIONS}", fixed_caption(
            "The assignment's Figure 3: distributions of each convolutional layer's activations over the test "
            "split, before batch norm and max-pooling (and after).")),
        (_bn_comparison_glob(), fixed_caption(
            "With and without batch norm: each layer's activations before max-pooling, for the network trained "
            "with batch norm and the one trained without (the assignment's claim 'not shown').")),
        (f"{VISUALIZE_KEY}/{FIG_FEATURE_MAPS}", fixed_caption(
            "Feature maps of conv1 and conv2 for one test image per class.")),
        (f"{VISUALIZE_KEY}/{FIG_FILTER_HISTORY}", fixed_caption(
            "The conv1 filters after selected epochs of training.")),
        (f"{NOBN_KEY}/{FIGURE}", fixed_caption(
            "LeNet5 trained without batch norm (otherwise the same settings), the comparison network of this "
            "part: accuracy and loss against epoch.")),
    ),
    blocks=visualize_blocks, also=(NOBN_KEY,))
