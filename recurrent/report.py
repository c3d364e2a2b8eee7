"""The report's Part 3a-3b (`--task rnn`) and Part 3c (`--task compare`): the assignment's targets, the sweep's
and the comparison's tables, their rows of the headline table and the captions of their figures."""
from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Callable

from common import report
from common.document import Block, Cell, CellLike, Para, Table
from common.outputs import METRICS_JSON, read_json
from common.report import NO_TARGET, Section, Target, fixed_caption, fmt_acc, fmt_lr, generic_caption, machine
from lenet.train import FIGURE as LENET_FIGURE
from recurrent import compare
from recurrent.config import CELL_TITLES, CELLS, RNNConfig
from recurrent.train import SUMMARY_FIGURE, VALIDATION_FIGURE, figure_name

RNN_KEY, COMPARE_KEY = "rnn", "compare"  # the tasks, and their folders under the results root
COMPARISON_JSON = compare.TABLE + ".json"
RNN64_TARGET = Target(0.96, 0.97, "0.96-0.97 (96-97%) train, validation and test")
LSTM128_TARGET = Target(0.98, 0.99, "0.98-0.99 (98-99%) train, validation and test")
RNN_TARGETS = {("rnn", 64): RNN64_TARGET, ("lstm", 128): LSTM128_TARGET}  # (cell, hidden) -> the report's
# The configurations of the headline table: (part, cell, hidden).
HEADLINE_RUNS = (("3a", "rnn", 64), ("3b", "lstm", 128), ("3b", "gru", 128))
# The assignment's Figures 4-11: simple RNN then LSTM, hidden 16, 32, 64, 128.
ASSIGNMENT_FIGURE = {(cell, h): 4 + 4 * i + j for i, cell in enumerate(("rnn", "lstm"))
                     for j, h in enumerate((16, 32, 64, 128))}
CLAIM_3C = ("Surprisingly, the RNN training in this assignment was much easier to optimize than the CNN training "
            "from earlier in the assignment, perhaps because the images in the MNIST dataset had a higher "
            "resolution compared to the shrunken images in the CIFAR10 dataset")
# figure_name(cell, hidden) with both parts captured; built from figure_name itself so the name has one source.
RUN_FIGURE = re.compile(re.escape(figure_name("CELL", 999)).replace("CELL", f"({'|'.join(CELLS)})")
                        .replace("999", r"(\d+)") + "$")


def run_caption(prefix: str, assignment_figure: bool) -> Callable[[str], str]:
    """Caption of a per-configuration recurrent figure `.../figure_name(cell, hidden)`; with
    `assignment_figure`, the assignment's figure of the same configuration is named."""

    def caption(path: str) -> str:
        m = RUN_FIGURE.search(path)
        if not m:
            return generic_caption(path)
        cell, hidden = m.group(1), int(m.group(2))
        fig = ASSIGNMENT_FIGURE.get((cell, hidden)) if assignment_figure else None
        ref = f" (the assignment's Figure {fig})" if fig else ""
        return f"{prefix}{CELL_TITLES[cell]} with {hidden} hidden units: accuracy and loss against epoch{ref}."

    return caption


# ------------------------------------------------------------------------------------------- Part 3a-3b


def rnn_runs(root: str) -> list[dict]:
    """metrics.json of every recurrent run under <root>/rnn, in cell (CELLS) then hidden-size order."""
    runs = []
    for path in glob.glob(os.path.join(root, RNN_KEY, "*", METRICS_JSON)):
        m = read_json(path)
        if m and m.get("config", {}).get("cell") in CELL_TITLES:
            runs.append(m)
    return sorted(runs, key=lambda m: (CELLS.index(m["config"]["cell"]), m["config"]["hidden"]))


def rnn_blocks(root: str) -> list[Block]:
    """The model and settings, then one line per run of the sweep."""
    c = RNNConfig()
    blocks: list[Block] = [Para(
        f"Hand-written cells over `jax.lax.scan`, each image row a time step; recurrent layer -> batch norm -> "
        f"dense 10. The report's settings: nadam {c.train.lr:g}, batch {c.train.batch_size}, {c.train.epochs} "
        "epochs. The "
        "assignment: simple RNN with 64 hidden units 96-97%; LSTM with 128 hidden units 98-99% (train, "
        "validation and test).")]
    runs = rnn_runs(root)
    if runs:
        blocks.append(Table(["cell", "hidden", "parameters", "train acc (eval mode)", "val acc",
                             "test acc (best-validation epoch)", "assignment", "test vs assignment (verdict)",
                             "train s/epoch", "settings", "seed(s)", "finished"], [_rnn_row(m) for m in runs],
                            f"Every run under `{RNN_KEY}/`; train s/epoch: training time of an epoch after the "
                            "first, evaluation left out; machine: "
                            f"{machine(runs[0].get('environment'))}; command: `{report.command_line(runs[0])}`."))
    return blocks


def _rnn_row(m: dict) -> list[CellLike]:
    """One recurrent run's line: size, accuracies (mean \u00b1 std over the seeds of a vmapped run, per-seed
    values), the assignment's target and a verdict on it, training speed."""
    cfg = m["config"]
    target = RNN_TARGETS.get((cfg["cell"], cfg["hidden"]), NO_TARGET)
    train_s = m.get("train_seconds_per_epoch", m.get("seconds_per_epoch", 0))
    return [CELL_TITLES[cfg["cell"]], Cell(str(cfg["hidden"]), "num"),
            Cell(f"{m.get('param_count', 0):,}", "num"), report.estimate_cell(m, "train_accuracy"),
            report.estimate_cell(m, "val_accuracy"), report.estimate_cell(m, "test_accuracy", per_seed=True),
            target.text if target is not NO_TARGET else "",
            Cell(report.verdict_line(report.estimate_of(m, "test_accuracy"), target), "small"),
            Cell(f"{train_s:.1f}", "num"),
            report.settings_cell(m, RNNConfig().train.epochs), ", ".join(map(str, m.get("seeds", []))),
            Cell(m.get("finished_at", ""), "small")]


def rnn_summary(root: str, command: str) -> list[list[CellLike]]:
    """The headline rows of Part 3a-3b (HEADLINE_RUNS), each with the command that makes that one run (not
    `command`, the whole sweep)."""
    by_name = {(m["config"]["cell"], m["config"]["hidden"]): m for m in rnn_runs(root)}
    rows = []
    for part, cell, hidden in HEADLINE_RUNS:
        one = "python run.py " + shlex.join(["--task", RNN_KEY, "--cell", cell, "--hidden", str(hidden),
                                             "--out", os.path.join(root, RNN_KEY)])
        folder = f"{RNN_KEY}/{RNNConfig(cell=cell, hidden=hidden).name}"
        rows.append(report.summary_row(part, f"{CELL_TITLES[cell]}-{hidden} on MNIST", folder,
                                       by_name.get((cell, hidden)), RNN_TARGETS.get((cell, hidden), NO_TARGET),
                                       RNNConfig().train.epochs, one))
    return rows


RNN_SECTION = Section(
    key=RNN_KEY, title="Part 3a-3b: RNN, LSTM and GRU on MNIST", anchor="part-3ab",
    required=(f"*/{METRICS_JSON}",), expected=(SUMMARY_FIGURE, VALIDATION_FIGURE),
    captions=((f"{RNN_KEY}/{SUMMARY_FIGURE}", fixed_caption(
        "Across cells and hidden sizes: test accuracy at the best-validation epoch (error bars: \u00b1 std over "
        "seeds when several), parameters and training seconds per epoch (evaluation left out).")),
              (f"{RNN_KEY}/{VALIDATION_FIGURE}", fixed_caption(
        "Validation accuracy per epoch for every hidden size, one panel per cell, all on one y axis (with "
        "several seeds: their mean and a min-max band). The per-run figures below have their own axes.")))
    + tuple((f"{RNN_KEY}/*/{figure_name(cell, '*')}", run_caption("", True)) for cell in CELLS),
    blocks=rnn_blocks, summary=rnn_summary)


# ---------------------------------------------------------------------------------------------- Part 3c


def compare_blocks(root: str) -> list[Block]:
    """The assignment's claim, then the comparison table and its one-paragraph summary."""
    blocks: list[Block] = [Para(f"The assignment: \u201c{CLAIM_3C}.\u201d That contrast changes the dataset and the "
                                "architecture at once. Here LeNet5 (unchanged, 28x28x1 input) and the best "
                                "recurrent net train on the same MNIST splits with the same seed(s), each with its "
                                "own report hyperparameters, for the same number of epochs.")]
    comp = read_json(os.path.join(root, COMPARE_KEY, COMPARISON_JSON))
    if comp:
        blocks += [_compare_table(comp), Para("What the figures show: " + comp.get("summary", ""), "finding")]
        if comp.get("rows") and len(comp["rows"]) == 2:
            blocks.append(Para("Verdict on the claim: " + compare.claim_verdict(comp["rows"]), "finding"))
    return blocks


def _compare_table(comp: dict) -> Table:
    """comparison.json's rows: size, accuracy (mean \u00b1 std over seeds), speed and the time each net took to
    reach the target (with its spread over seeds)."""
    target = comp.get("target_accuracy", compare.TARGET_ACCURACY)
    key_e, key_s = f"epochs_to_{compare._pct(target)}", f"train_seconds_to_{compare._pct(target)}"
    rows = [[r["model"], Cell(f"{r['param_count']:,}", "num"),
             Cell(report.fmt_estimate(compare.accuracy_estimate(r)), "num"),
             Cell(fmt_acc(r["val_accuracy"]), "num"), Cell(f"{r['train_seconds_per_epoch']:.1f}", "num"),
             Cell(compare.fmt_spread(r, key_e, "{:.1f}" if f"{key_e}_per_model" in r else "{}"), "num"),
             Cell(compare.fmt_spread(r, key_s, "{:.1f}"), "num"),
             f"{fmt_lr(r['lr'])} / {r['batch_size']}", Cell(str(r["epochs"]), "num")] for r in comp.get("rows", [])]
    seeds = comp.get("seeds") or [comp.get("seed")]
    return Table(["model", "parameters", "test acc (best-validation epoch)", "val acc", "train s/epoch",
                  f"epochs to {compare.pct_text(target)}", f"train s to {compare.pct_text(target)}", "lr / batch",
                  "epochs"], rows,
                 f"{comp.get('data_source')}: {comp.get('train_size')} train / {comp.get('val_size')} "
                 f"validation / {comp.get('test_size')} test images, seed(s) {', '.join(map(str, seeds))}; "
                 f"recurrent net: {comp.get('recurrent_choice', {}).get('reason', 'n/a')}; "
                 f"{machine(comp.get('environment'))}; finished {comp.get('finished_at')}.")


def compare_summary(root: str, command: str) -> list[list[CellLike]]:
    """One headline row per model of the comparison, or one 'missing' row when it has not been run."""
    comparison = read_json(os.path.join(root, COMPARE_KEY, COMPARISON_JSON))
    epochs = RNNConfig().train.epochs
    if comparison is None:
        return [report.summary_row("3c", "LeNet5 vs best recurrent net on MNIST", COMPARE_KEY, None, NO_TARGET,
                                   epochs, command)]
    rows = []
    for row in comparison.get("rows", []):
        metrics = read_json(os.path.join(root, COMPARE_KEY, row.get("folder") or "", METRICS_JSON))
        rows.append(report.summary_row("3c", f"{row['model']} on MNIST (comparison)",
                                       f"{COMPARE_KEY}/{row.get('folder')}", metrics, NO_TARGET, epochs, command))
    return rows


COMPARE_SECTION = Section(
    key=COMPARE_KEY, title="Part 3c: CNN vs RNN on the same MNIST splits", anchor="part-3c",
    required=(COMPARISON_JSON,), expected=(compare.FIGURE,),
    captions=(
        (f"{COMPARE_KEY}/{compare.FIGURE}", fixed_caption(
            "LeNet5 against the recurrent net on the same MNIST splits and seed: test accuracy against cumulative "
            f"training seconds (left) and epoch (middle), and training loss (right); dashed: "
            f"{compare.pct_text(compare.TARGET_ACCURACY)}; with several seeds, the mean and a min-max band.")),
        # LeNet5's run folder of the comparison: the only one that writes LeNet5's curves
        (f"{COMPARE_KEY}/*/{LENET_FIGURE}", fixed_caption(
            "LeNet5 on MNIST (same architecture as Part 1b, 28x28x1 input): accuracy and loss against epoch.")),
        (f"{COMPARE_KEY}/*/{figure_name('*', '*')}", run_caption("The recurrent net of the comparison: ", False)),
    ),
    blocks=compare_blocks, summary=compare_summary)
