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
from lenet.visualize import (
    FIG_ACTIVATIONS,
    FIG_BN_COMPARISON,
    FIG_FEATURE_MAPS,
    FIG_FILTER_HISTORY,
    FIG_FILTERS,
    NOBN_SUFFIX,
    STATS_JSON,
)

LENET_KEY, VISUALIZE_KEY = "lenet", "visualize"  # the tasks, and their folders under the results root
NOBN_KEY = LENET_KEY + NOBN_SUFFIX  # where `--task visualize --compare-batchnorm` trains the comparison net
CIFAR_FOLDER = "../shared/data/elec576/CIFAR10"  # the course's image folder, relative to the repository
# 'about': a point target, met within 0.02
LENET_TARGET = Target(0.60, 0.60, "about 0.60 (60%) validation and test; train up to about 0.80", 0.02)
TRAIN_TARGET = Target(0.80, 0.80, "up to about 0.80 (Keras's running accuracy, dropout on)", 0.02)
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
        f"batch {c.train.batch_size}, {c.train.epochs} epochs, L2 {c.conv_l2} on each conv kernel and {c.fc_l2} on "
        "fc1, "
        "Glorot-normal kernels, biases 0.1. The assignment: about 0.60 (60%) on both validation and test.")]
    if m:
        blocks.append(_lenet_table(m))
    return blocks


def _lenet_table(m: dict) -> Table:
    """Each split's accuracy (mean \u00b1 std over seeds, per-seed values) and loss beside the assignment's, with
    a verdict; training accuracy twice: Keras's running mean with dropout on (what the assignment's 'up to
    about 0.80' is) and in eval mode (dropout off, not in the assignment)."""
    rows = []
    for label, key, target in (
            ("train: running mean while training, dropout on (as Keras reports it)", "train_running", TRAIN_TARGET),
            ("train: eval mode (dropout off) after the epoch", "train", report.NO_TARGET),
            ("validation", "val", LENET_TARGET), ("test", "test", LENET_TARGET)):
        estimate = report.estimate_of(m, f"{key}_accuracy")
        rows.append([label, report.estimate_cell(m, f"{key}_accuracy", per_seed=True),
                     Cell(fmt_acc(m.get(f"{key}_loss")), "num"),
                     target.text if target is not report.NO_TARGET else "not in the assignment",
                     Cell(report.verdict_line(estimate, target), "small")])
    selected = m.get("selected_epoch")
    return Table(
        ["split", "accuracy", "loss", "assignment", "verdict"], rows,
        f"{m.get('epochs')} epochs on {m.get('data_source')} ({m.get('train_size')} train / "
        f"{m.get('val_size')} validation / {m.get('test_size')} test images); the reported model is the "
        f"best-validation epoch ({', '.join(map(str, selected)) if isinstance(selected, list) else selected}; "
        f"{m.get('selection', 'best validation accuracy')}); at the last epoch: test accuracy "
        f"{fmt_acc((m.get('last_epoch') or {}).get('test_accuracy'))}; {m.get('param_count', 0):,} parameters; "
        f"{m.get('train_images_per_sec', 0):.0f} training images/s; training time "
        f"{fmt_seconds(m.get('train_seconds_per_epoch'))} per epoch (epoch time with evaluation "
        f"{fmt_seconds(m.get('seconds_per_epoch'))}).")


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
    if stats.get("table"):
        blocks.append(Para("Verdict on the claim: " + claim_1c_verdict(stats["table"]), "finding"))
    seeds = (read_json(os.path.join(root, LENET_KEY, METRICS_JSON)) or {}).get("seeds") or []
    if len(seeds) > 1:
        blocks.append(Para(f"The checkpoints hold several seeds' models ({', '.join(map(str, seeds))}); these "
                           f"statistics and figures use the first seed's (seed {seeds[0]}) model of each network."))
    if nets:
        blocks.append(Para("Networks: " + "; ".join(
            f"`{key}` = {n.get('label', key)} (`{n.get('checkpoint', '?')}`), test accuracy "
            f"{fmt_acc(n.get('test_accuracy'))}" for key, n in nets.items()) + "."))
    if stats.get("table"):
        blocks.append(_stats_table(stats))
    return blocks


SIGNIFICANT_KS_DROP = 0.05  # a drop of the KS distance to the normal this large counts as 'significantly'


def _ks(table: list[dict], network: str, layer: str, stage: str) -> float | None:
    return next((r.get("ks_normal") for r in table
                 if (r.get("network"), r.get("layer"), r.get("stage")) == (network, layer, stage)), None)


def ks_drops(table: list[dict]) -> tuple[dict[str, float], str]:
    """{layer: KS distance to the normal without batch norm minus with it} and what was compared: the
    network without batch norm (after ReLU) against the one with it (after batch norm) when both are in
    the table, else within the batch-norm network, before against after batch norm."""
    layers = sorted({r["layer"] for r in table if r.get("layer")})
    pairs = [(("no_batchnorm", "pre_bn"), ("batchnorm", "post_bn"),
              "the network without batch norm (after ReLU) against the one with it (after batch norm)"),
             (("batchnorm", "pre_bn"), ("batchnorm", "post_bn"),
              "within the batch-norm network, before against after batch norm")]
    for without, with_bn, how in pairs:
        before = {layer: _ks(table, without[0], layer, without[1]) for layer in layers}
        after = {layer: _ks(table, with_bn[0], layer, with_bn[1]) for layer in layers}
        if layers and all(before[x] is not None and after[x] is not None for x in layers):
            return {x: before[x] - after[x] for x in layers}, how
    return {}, "nothing comparable"


def claim_1c_verdict(table: list[dict]) -> str:
    """Supported / partly / not supported, from how much batch norm lowers each conv layer's KS distance to
    a normal distribution: the claim is a large drop for conv1 (at least SIGNIFICANT_KS_DROP) and a smaller
    one for conv2."""
    drops, how = ks_drops(table)
    if "conv1" not in drops or "conv2" not in drops:
        return "n/a (the statistics lack conv1 or conv2 with and without batch norm)."
    d1, d2 = drops["conv1"], drops["conv2"]
    if d1 >= SIGNIFICANT_KS_DROP and d1 > d2:
        word = "supported"
    elif d1 > d2 or d1 >= SIGNIFICANT_KS_DROP:
        word = "partly supported"
    else:
        word = "not supported"
    return (f"{word}: batch norm lowers the KS distance to a normal by {d1:+.3f} for conv1 and {d2:+.3f} for "
            f"conv2 ({how}; 'significantly' taken as a drop of at least {SIGNIFICANT_KS_DROP}, 'only slightly' "
            "as a smaller drop for conv2 than conv1).")


def _stats_table(stats: dict) -> Table:
    """activation_stats.json's table: the STATS_COLUMNS that any row has."""
    table = stats["table"]
    columns = [(k, f) for k, f in STATS_COLUMNS if any(k in r for r in table)]
    rows = [[Cell(_fmt_value(_shown(r, k), f), "" if f == "{}" else "num") for k, f in columns] for r in table]
    return Table([k.replace("_", " ") for k, _ in columns], rows,
                 f"From `{VISUALIZE_KEY}/{STATS_JSON}` ({stats.get('test_images', '?')} test images of "
                 f"{stats.get('data_source', '?')}); stages: pre_bn = after ReLU, before batch norm; post_bn = after "
                 "batch norm; after_relu = after ReLU in the network without batch norm; post_pool = after "
                 "max-pool.")


def _shown(row: dict, key: str):
    """row[key], except the stage of the network without batch norm: 'after_relu' (it has no BN to be
    'pre' of)."""
    if key == "stage" and row.get("network") == "no_batchnorm" and row.get("stage") == "pre_bn":
        return "after_relu"
    return row.get(key)


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
