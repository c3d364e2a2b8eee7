"""The report's Part 1b (`--task lenet`) and Part 1c (`--task visualize`): what the assignment says, its claims
with their verdicts, how the measured numbers are shown beside them, and the captions of these tasks' figures."""
from __future__ import annotations

import os

from common import report
from common.report import NOT_JUDGED, Claim, Estimate, Section, Target, fixed_caption, fmt_acc, plotting
from common.report.document import Block, Cell, Para, Table
from common.runtime.outputs import METRICS_JSON, read_json
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
LENET_TARGET = Target(0.60, 0.60, "about 0.60 (60%)", 0.02)
TRAIN_TARGET = Target(0.80, 0.80, "up to about 0.80 (80%)", 0.02)
CLAIM_1C = ("batch normalization (before max pooling) significantly helped the output of the first "
            "convolutional layer to be more normally distributed, but only slightly affected the distribution "
            "of the output of the second convolutional layer")
# activation_stats.json's table columns shown, with their formats ('{}': text, left-aligned)
STATS_COLUMNS = (("network", "{}"), ("layer", "{}"), ("stage", "{}"), ("mean", "{:.3f}"), ("std", "{:.3f}"),
                 ("zero_fraction", "{:.1%}"), ("skewness", "{:.2f}"), ("excess_kurtosis", "{:.2f}"),
                 ("ks_normal", "{:.3f}"))
# The assignment's figures made by these tasks (root-relative path -> its number there)
# The assignment's numbers on Figure 1's accuracy panel (runs on CIFAR10 with batch norm: lenet.train's titles)
plotting.register_targets("LeNet5 on CIFAR10", [
    (LENET_TARGET.low, LENET_TARGET.high, "assignment: about 0.60 (validation and test)"),
    (TRAIN_TARGET.low, TRAIN_TARGET.high, "assignment: training accuracy up to about 0.80")])
ASSIGNMENT_FIGURES = {f"{LENET_KEY}/{FIGURE}": 1, f"{VISUALIZE_KEY}/{FIG_FILTERS}": 2,
                      f"{VISUALIZE_KEY}/{FIG_ACTIVATIONS}": 3}


def lenet_metrics(root: str) -> dict | None:
    return read_json(os.path.join(root, LENET_KEY, METRICS_JSON))


def lenet_shrunk(root: str, keys: tuple[str, ...] = (LENET_KEY, NOBN_KEY)) -> list[str]:
    """How Part 1b's run (and the network without batch norm of Part 1c) is smaller than the assignment's."""
    defaults = LeNetConfig().to_dict()
    out = []
    for key in keys:
        m = read_json(os.path.join(root, key, METRICS_JSON))
        text = m and report.shrunk_text(f"`{key}`", m.get("config", {}), m.get("epochs"), defaults)
        out += [text] if text else []
    return out


# ---------------------------------------------------------------------------------------------- Part 1b


def lenet_blocks(root: str) -> list[Block]:
    """The architecture and the assignment's settings, this run's, then each split's accuracy beside the
    assignment's."""
    m = lenet_metrics(root)
    c = LeNetConfig()
    blocks: list[Block] = [Para(
        f"LeNet5 (conv 5x5x32 + ReLU, batch norm, 2x2 max-pool; conv 5x5x64 + ReLU, batch norm, max-pool; "
        f"fc 1024 + ReLU, dropout {c.dropout_rate}; fc 10). The assignment's settings: nadam {c.train.lr:g}, batch "
        f"{c.train.batch_size}, {c.train.epochs} epochs, L2 {c.conv_l2} on each conv kernel and {c.fc_l2} on fc1, "
        "Glorot-normal kernels, biases 0.1; its result: about 0.60 (60%) on both validation and test, training "
        "accuracy up to about 0.80.")]
    if m:
        shrunk = lenet_shrunk(root, (LENET_KEY,))
        blocks.append(Para(f"This run: {report.settings(m, c.train.epochs)[0]}"
                           + (f" \u2014 {NOT_JUDGED}." if shrunk else "."), "finding" if shrunk else ""))
        blocks.append(_lenet_table(root, m, bool(shrunk)))
    return blocks


def max_running_accuracy(root: str) -> Estimate | None:
    """Each model's highest running training accuracy over its epochs (what 'up to about 80%' is), over seeds."""
    models = report.history_by_model(os.path.join(root, LENET_KEY, report.HISTORY_CSV))
    values = [max(r["train_running_accuracy"] for r in rows) for rows in models if rows]
    return report.aggregate(values, report.ACCURACY_RANGE) if values else None


def _lenet_table(root: str, m: dict, shrunk: bool) -> Table:
    """Each split's accuracy (mean \u00b1 std over seeds, per-seed values, t-interval) and loss beside the
    assignment's, with a verdict; training accuracy twice: Keras's running mean with dropout on (its maximum
    over epochs is the assignment's 'up to about 0.80') and in eval mode (not in the assignment)."""
    rows = []
    for label, key, target in (
            ("train: running mean while training, dropout on (as Keras reports it)", "train_running", report.NO_TARGET),
            ("train: eval mode (dropout off) after the epoch", "train", report.NO_TARGET),
            ("validation", "val", LENET_TARGET), ("test", "test", LENET_TARGET)):
        estimate = report.estimate_of(m, f"{key}_accuracy")
        rows.append([label, Cell(report.fmt_estimate(estimate), "num"), Cell(report.fmt_interval(estimate), "small"),
                     Cell(fmt_acc(m.get(f"{key}_loss")), "num"), target.text,
                     Cell(report.verdict_line(estimate, target, shrunk), "small")])
    best = max_running_accuracy(root)
    rows.append(["train: highest running accuracy over the epochs", Cell(report.fmt_estimate(best), "num"),
                 Cell(report.fmt_interval(best), "small"), "", TRAIN_TARGET.text,
                 Cell(report.verdict_line(best, TRAIN_TARGET, shrunk), "small")])
    selected = m.get("selected_epoch")
    timing = report.run_timing(os.path.join(root, LENET_KEY), m)
    return Table(
        ["split", "accuracy (mean \u00b1 std)", "interval", "loss", "assignment", "verdict"], rows,
        f"{m.get('epochs')} epochs on {m.get('data_source')} ({m.get('train_size')} train / "
        f"{m.get('val_size')} validation / {m.get('test_size')} test images); the reported model is the "
        f"best-validation epoch ({', '.join(map(str, selected)) if isinstance(selected, list) else selected}; "
        f"{m.get('selection', 'best validation accuracy')}); at the last epoch: test accuracy "
        f"{fmt_acc((m.get('last_epoch') or {}).get('test_accuracy'))}; {m.get('param_count', 0):,} parameters. "
        f"Times: {report.timing_sentence(timing)}.")


def lenet_claims(root: str, command: str) -> list[Claim]:
    """Part 1b's claims: validation and test accuracy about 0.60, training accuracy up to about 0.80."""
    m, shrunk = lenet_metrics(root), bool(lenet_shrunk(root, (LENET_KEY,)))
    return [report.accuracy_claim("1b", "LeNet5 on CIFAR10: validation accuracy", report.estimate_of(m, "val_accuracy"),
                                  LENET_TARGET, shrunk, command, "1b-val", 1),
            report.accuracy_claim("1b", "LeNet5 on CIFAR10: test accuracy", report.estimate_of(m, "test_accuracy"),
                                  LENET_TARGET, shrunk, command, "1b-test", 1),
            report.accuracy_claim("1b", "LeNet5: highest training accuracy (running, dropout on) over the epochs",
                                  max_running_accuracy(root) if m else None, TRAIN_TARGET, shrunk, command,
                                  "1b-train-running-max", 1)]


LENET_SECTION = Section(
    key=LENET_KEY, title="Part 1b: LeNet5 on CIFAR10", anchor="part-1b", required=(METRICS_JSON,),
    expected=(FIGURE,),
    captions=(
        (f"{LENET_KEY}/{FIGURE}", fixed_caption(
            "Accuracy and loss of LeNet5 on CIFAR10 against epoch: train (eval mode, filled circles; dotted with "
            "hollow triangles: the running mean with dropout on), validation and test; grey dashed line: the "
            "assignment's 0.60 (validation and test), grey dotted line: its 0.80 (training); the running loss, "
            "with dropout on, has its own panel. With one epoch the splits' points stand side by side.")),
    ),
    blocks=lenet_blocks, claims=lenet_claims, shrunk=lambda root: lenet_shrunk(root, (LENET_KEY,)),
    figure_number=ASSIGNMENT_FIGURES.get,
    hint=f"add `--data-dir {CIFAR_FOLDER}` to the LeNet5 command to train on the course's image folder")


# ---------------------------------------------------------------------------------------------- Part 1c


SIGNIFICANT_KS_DROP = 0.05  # a drop of the KS distance to the normal this large counts as 'significantly'
KS_DROP_RANGE = (-1.0, 1.0)  # a difference of two KS distances (each in 0 to 1)


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


def model_tables(stats: dict) -> list[list[dict]]:
    """The statistics table of each of the N models (activation_stats.json's per_model), or model 0's alone."""
    return stats.get("per_model") or ([stats["table"]] if stats.get("table") else [])


def ks_estimates(tables: list[list[dict]]) -> tuple[Estimate, Estimate, Estimate, str] | None:
    """(conv1's KS drop, conv2's, conv1's minus conv2's) over the models, and what was compared; None when a
    table lacks conv1 or conv2 with and without batch norm."""
    drops = [ks_drops(t) for t in tables]
    if not drops or any("conv1" not in d or "conv2" not in d for d, _ in drops):
        return None
    d1, d2 = [d["conv1"] for d, _ in drops], [d["conv2"] for d, _ in drops]
    # a KS distance lies in 0 to 1, so a drop in -1 to 1 and a difference of two drops in -2 to 2
    return (report.aggregate(d1, KS_DROP_RANGE), report.aggregate(d2, KS_DROP_RANGE),
            report.aggregate([a - b for a, b in zip(d1, d2)], (-2.0, 2.0)), drops[0][1])


def _word(low_ok: bool, high_bad: bool) -> str:
    return "supported" if low_ok else "not supported" if high_bad else "not separated"


def claim_1c_parts(tables: list[list[dict]], shrunk: bool) -> tuple[str, str, str]:
    """(conv1 verdict, conv2 verdict, what was compared) on the t-intervals over the models: conv1's KS drop
    at least SIGNIFICANT_KS_DROP ('significantly'), and conv2's smaller than conv1's ('only slightly'). Each is a
    comparison of two networks' measured distributions, so with one model: ONE_SEED."""
    est = ks_estimates(tables)
    if est is None:
        return "n/a", "n/a", "the statistics lack conv1 or conv2 with and without batch norm"
    d1, _, diff, how = est
    if shrunk:
        word = report.SHRUNK_ONE_SEED if d1.n < report.MIN_SEEDS else NOT_JUDGED
        return word, word, how
    if d1.n < report.MIN_SEEDS:
        return report.ONE_SEED, report.ONE_SEED, how
    one = "the value" if d1.n == 1 else f"the 95% t-interval (N = {d1.n} models)"
    v1 = (f"{_word(d1.low >= SIGNIFICANT_KS_DROP, d1.high < SIGNIFICANT_KS_DROP)}: {one} of conv1's drop, "
          f"{report.fmt_range(d1.low, d1.high)}{report.interval_notes(d1)}, against {SIGNIFICANT_KS_DROP}")
    v2 = (f"{_word(diff.low > 0, diff.high < 0)}: {one} of conv1's drop minus conv2's, "
          f"{report.fmt_range(diff.low, diff.high)}{report.interval_notes(diff)}, against 0")
    return v1, v2, how


def visualize_stats(root: str) -> dict:
    return read_json(os.path.join(root, VISUALIZE_KEY, STATS_JSON)) or {}


def visualize_claims(root: str, command: str) -> list[Claim]:
    """Part 1c's claim, in its two halves (conv1 'significantly', conv2 'only slightly')."""
    tables = model_tables(visualize_stats(root))
    shrunk = bool(lenet_shrunk(root))
    est = ks_estimates(tables)
    missing = "missing" + (f": run `{command}`" if command else "")
    v1, v2, _ = claim_1c_parts(tables, shrunk)
    m1 = missing if est is None else report.fmt_measured(est[0], digits=3)
    m2 = missing if est is None else (f"conv2 {report.fmt_measured(est[1], digits=3)}; conv1 minus conv2 "
                                      f"{report.fmt_measured(est[2], digits=3)}")
    return [Claim("1c", "batch norm makes conv1's output markedly more normal (drop of the KS distance to a normal)",
                  m1, f"'significantly' (taken as a drop \u2265 {SIGNIFICANT_KS_DROP})", v1, "1c-conv1", 3),
            Claim("1c", "batch norm changes conv2's distribution only slightly (a smaller KS drop than conv1's)", m2,
                  "'only slightly' (conv2's drop < conv1's)", v2, "1c-conv2", 3)]


def visualize_blocks(root: str) -> list[Block]:
    """The assignment's claim, the networks compared, the verdicts and the activation statistics."""
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_1C}\u201d (not shown there). The tables give each "
                                "layer's activation statistics over the test split; a normal distribution has "
                                "skewness 0, excess kurtosis 0 and a small KS distance.")]
    stats = visualize_stats(root)
    tables = model_tables(stats)
    if tables:
        v1, v2, how = claim_1c_parts(tables, bool(lenet_shrunk(root)))
        blocks.append(Para(f"Verdict on the claim, over {len(tables)} model(s) ({how}): conv1 \u2014 {v1}; conv2 "
                           f"\u2014 {v2}.", "finding"))
    blocks.append(Para(f"The statistics are over the {len(tables) or 'N'} model(s) the checkpoint's run trained "
                       "(one per seed: mean \u00b1 std and the 95% t-interval); the figures and the first table "
                       "show the first seed's model (seed 0) alone."))
    nets = stats.get("networks") or {}
    if nets:
        blocks.append(Para("Networks: " + "; ".join(
            f"`{key}` = {n.get('label', key)} (`{report.recorded_path(root, VISUALIZE_KEY, n.get('checkpoint'))}`), "
            "test accuracy of "
            f"model 0 {fmt_acc(n.get('test_accuracy'))}" for key, n in nets.items()) + "."))
    if stats.get("table"):
        blocks.append(_stats_table(stats))
    if len(tables) > 1:
        blocks.append(_ks_models_table(tables))
    return blocks


def _stats_table(stats: dict) -> Table:
    """activation_stats.json's table (model 0): the STATS_COLUMNS that any row has."""
    table = stats["table"]
    columns = [(k, f) for k, f in STATS_COLUMNS if any(k in r for r in table)]
    rows = [[Cell(_fmt_value(_shown(r, k), f), "" if f == "{}" else "num") for k, f in columns] for r in table]
    return Table([k.replace("_", " ") for k, _ in columns], rows,
                 f"Model 0 (seed 0), from `{VISUALIZE_KEY}/{STATS_JSON}` ({stats.get('test_images', '?')} test "
                 f"images of {stats.get('data_source', '?')}); stages: pre_bn = after ReLU, before batch norm; "
                 "post_bn = after batch norm; after_relu = after ReLU in the network without batch norm; post_pool "
                 "= after max-pool.")


def _ks_models_table(tables: list[list[dict]]) -> Table:
    """The KS distance of each (network, layer, stage) over the N models."""
    keys = [(r["network"], r["layer"], r["stage"]) for r in tables[0]]
    rows = []
    for network, layer, stage in keys:
        values = [_ks(t, network, layer, stage) for t in tables]
        if any(v is None for v in values):
            continue
        e = report.aggregate(values, (0.0, 1.0))  # a KS distance lies in 0 to 1
        shown = _shown({"network": network, "stage": stage}, "stage")
        rows.append([network, layer, shown, Cell(report.fmt_estimate(e, digits=3), "num"),
                     Cell(report.fmt_interval(e), "small")])
    return Table(["network", "layer", "stage", "KS distance to a normal (mean \u00b1 std over the models)",
                  "interval"], rows, f"Over the {len(tables)} models of the checkpoint's run (model i of each "
                  "network has the same seed).")


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
            "The 32 5x5 filters of the first convolutional layer (seed 0's model).")),
        (f"{VISUALIZE_KEY}/{FIG_ACTIVATIONS}", fixed_caption(
            "Distributions of each convolutional layer's activations over the test split, before batch norm and "
            "max-pooling (and after), seed 0's model.")),
        (_bn_comparison_glob(), fixed_caption(
            "With and without batch norm: each layer's activations before max-pooling, for the network trained "
            "with batch norm and the one trained without (the assignment's claim 'not shown'); seed 0's models.")),
        (f"{VISUALIZE_KEY}/{FIG_FEATURE_MAPS}", fixed_caption(
            "Feature maps of conv1 and conv2 for one test image per class (seed 0's model).")),
        (f"{VISUALIZE_KEY}/{FIG_FILTER_HISTORY}", fixed_caption(
            "The conv1 filters after selected epochs of training (seed 0's model).")),
        (f"{NOBN_KEY}/{FIGURE}", fixed_caption(
            "LeNet5 trained without batch norm (otherwise the same settings), the comparison network of this "
            "part: accuracy and loss against epoch.")),
    ),
    blocks=visualize_blocks, claims=visualize_claims, shrunk=lambda root: lenet_shrunk(root, (NOBN_KEY,)),
    figure_number=ASSIGNMENT_FIGURES.get, also=(NOBN_KEY,))
