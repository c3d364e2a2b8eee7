"""`python run.py --task compare`: LeNet5 against the best recurrent net on the same MNIST splits (Part 3c).

The assignment found the RNN on MNIST "much easier to optimize" than the CNN on CIFAR10, which mixes two
changes (dataset and architecture). Here both nets see the same MNIST splits (loaded once) with the same seed,
each with its own report hyperparameters (LeNet5: nadam 1.7e-4, batch 50; recurrent: nadam 1e-3, batch 32)
for the same number of epochs (the recurrent report's 10), so the dataset is no longer part of the gap.

Writes into --out (default results/compare):
  lenet/, <cell>_h<hidden>/     each model's own run folder (metrics.json, history.csv, figure, checkpoint)
  comparison.json/.csv/.md      one row per model: test accuracy, parameters, seconds per epoch, epochs (and
                                training seconds) to reach 98.5% test accuracy (mean +- std over
                                --seeds N, per-seed values); plus the choice, a summary and a verdict
  fig_cnn_vs_rnn.png            test accuracy against cumulative training time and against epoch, train loss
The recurrent configuration is `--cell`/`--hidden` when given, else the highest validation accuracy in the sibling
rnn/summary.json (or rnn/*/metrics.json) that `--task rnn` wrote, else LSTM-128 (the report's best).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

from common import data as data_lib
from common import report
from common.cli import config_from_args
from common.core.errors import UserError
from common.core.history import mean_rows, model_histories
from common.report import plotting
from common.report.document import markdown_table
from common.run import results as results_lib
from common.runtime import outputs
from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate as train_lenet
from recurrent.config import CELL_TITLES, RNNConfig
from recurrent.train import SUMMARY_JSON
from recurrent.train import train_and_evaluate as train_recurrent

# The threshold the comparison times both nets to: 97% separated nothing (both nets pass it in the first
# epoch or two), 98.5% lies between LeNet5's and the recurrent nets' early epochs.
TARGET_ACCURACY = 0.985
DEFAULT_RECURRENT = ("lstm", 128)  # the report's best recurrent net (98-99%)
FIGURE = "fig_cnn_vs_rnn.png"
TABLE = "comparison"  # .json, .csv, .md
COLOURS = {"cnn": "tab:red", "rnn": "tab:blue"}


# ------------------------------------------------------------------------------------- which recurrent net


def best_recurrent(rnn_dir: str) -> tuple[str, int, str]:
    """(cell, hidden, reason): the run with the highest validation accuracy that `--task rnn` left in `rnn_dir`.

    Reads summary.json (a sweep) and, failing that, the per-run `<cell>_h<hidden>/metrics.json` files (a
    single run writes no summary). Ties go to the smaller net.
    Falls back to LSTM-128 when there is nothing usable.
    """
    rows = _rnn_rows(rnn_dir)
    if not rows:
        cell, hidden = DEFAULT_RECURRENT
        return cell, hidden, (f"no recurrent results in the sibling `{os.path.basename(rnn_dir)}/`; using the "
                              f"report's best configuration, {CELL_TITLES[cell]}-{hidden}")
    # Chosen on validation accuracy: picking on the test split would leak it into the comparison.
    best = max(rows, key=lambda r: (r.get("val_accuracy") or 0.0, -r["hidden"]))
    return best["cell"], int(best["hidden"]), (
        f"highest validation accuracy ({best.get('val_accuracy') or 0.0:.4f}) of the {len(rows)} recurrent "
        f"run(s) in the sibling `{os.path.basename(rnn_dir)}/`")


def _rnn_rows(rnn_dir: str) -> list[dict]:
    """[{cell, hidden, test_accuracy, val_accuracy}] from summary.json or the per-run metrics.json files."""
    summary = os.path.join(rnn_dir, SUMMARY_JSON)
    candidates = []
    if os.path.isfile(summary):
        candidates = (outputs.read_json(summary) or {}).get("runs", [])
    if not candidates:
        for path in sorted(glob.glob(os.path.join(rnn_dir, "*_h*", "metrics.json"))):
            metrics = outputs.read_json(path) or {}
            config = metrics.get("config", {})
            candidates.append({**metrics, "cell": config.get("cell"), "hidden": config.get("hidden")})
    return [r for r in candidates
            if r.get("cell") in CELL_TITLES and isinstance(r.get("hidden"), int)
            and isinstance(r.get("test_accuracy"), (int, float))]


def recurrent_choice(args, rnn_dir: str) -> tuple[str, int, str]:
    """--cell/--hidden (one value each) when given, else `best_recurrent(rnn_dir)`."""
    if args.cell is None and args.hidden is None:
        return best_recurrent(rnn_dir)
    for flag, values in (("--cell", args.cell), ("--hidden", args.hidden)):
        if values is not None and len(values) != 1:
            raise UserError(f"--task compare trains one recurrent net: give {flag} one value, not "
                            f"{','.join(map(str, values))}")
    cell = args.cell[0] if args.cell else DEFAULT_RECURRENT[0]
    hidden = args.hidden[0] if args.hidden else DEFAULT_RECURRENT[1]
    return cell, hidden, "chosen with --cell/--hidden"


# ---------------------------------------------------------------------------------------------- tables


def epochs_to_reach(history: list[dict], target: float = TARGET_ACCURACY) -> int | None:
    """First epoch whose test accuracy is >= target (None if none is)."""
    for row in history:
        if row["test_accuracy"] is not None and row["test_accuracy"] >= target:
            return int(row["epoch"])
    return None


def cumulative_train_seconds(history: list[dict]) -> list[float]:
    """Training seconds up to the end of each epoch; evaluation time is left out (it is measurement, and
    LeNet5 and the recurrent net evaluate the same three splits), the first step's compilation is kept."""
    return np.cumsum([row["train_seconds"] for row in history]).tolist()


def steady_train_seconds(history: list[dict]) -> float | None:
    """Median training seconds of an epoch after the first (which includes compilation); None with one epoch."""
    rows = history[1:]
    return float(np.median([row["train_seconds"] for row in rows])) if rows else None


def spread(key: str, values: list) -> dict:
    """{key: value} for one model; for several, {key: mean of those not None (None if all are), key_std:
    their sample std, key_per_model: values, key_reached: how many are not None}."""
    if len(values) == 1:
        return {key: values[0]}
    known = [v for v in values if v is not None]
    return {key: float(np.mean(known)) if known else None,
            f"{key}_std": float(np.std(known, ddof=1)) if len(known) > 1 else (0.0 if known else None),
            f"{key}_per_model": values, f"{key}_reached": len(known)}


def comparison_row(model: str, kind: str, folder: str, metrics: dict, history: list[dict], target: float) -> dict:
    """One line of the comparison table from a finished run's metrics and per-epoch history (accuracies:
    the mean over the run's models with std and per-model values when several; epochs and training seconds
    to `target` for each model, the seconds of the whole run, all models together)."""
    reached = [epochs_to_reach(h, target) for h in model_histories(history)]
    seconds = cumulative_train_seconds(history)
    row = {
        "model": model,
        "kind": kind,  # 'cnn' or 'rnn'
        "folder": folder,  # the run's subfolder of the comparison's output
        "param_count": metrics["param_count"],
        "seeds": metrics.get("seeds") or [metrics.get("config", {}).get("seed")],
        "epochs": metrics["epochs"],
        # times with their basis in their names (common.run.results): None where the run had no such epochs
        "train_seconds_per_epoch_after_first": steady_train_seconds(history),
        "train_seconds_first_epoch": float(history[0]["train_seconds"]),
        "wall_seconds": metrics["wall_seconds"],  # the whole run: every epoch with evaluation, compilation in
        "lr": metrics["config"]["lr"],
        "batch_size": metrics["config"]["batch_size"],
    }
    for split in ("test", "val", "train"):
        key = f"{split}_accuracy"
        row.update({k: metrics[k] for k in (key, f"{key}_std", f"{key}_per_model") if k in metrics})
    row.update(spread(f"epochs_to_{_pct(target)}", reached))
    row.update(spread(f"train_seconds_to_{_pct(target)}", [None if e is None else seconds[e - 1] for e in reached]))
    return row


def _pct(target: float) -> str:
    """The target in the rows' keys: 0.97 -> '97', 0.985 -> '98_5'."""
    return f"{target * 100:g}".replace(".", "_")


def pct_text(target: float) -> str:
    """0.985 -> '98.5%', 0.97 -> '97%'."""
    return f"{target * 100:g}%"


def accuracy_estimate(row: dict) -> report.Estimate:
    """The row's test accuracy over its models (one value for one model)."""
    return report.aggregate(row.get("test_accuracy_per_model") or [row["test_accuracy"]], report.ACCURACY_RANGE)


def fmt_spread(row: dict, key: str, fmt: str) -> str:
    """'3' or '3.5 \u00b1 0.7 (2/2 seeds)' or 'never'; `fmt` formats one value."""
    value = row.get(key)
    if value is None:
        return "never"
    if f"{key}_per_model" not in row:
        return fmt.format(value)
    n = len(row[f"{key}_per_model"])
    return f"{fmt.format(value)} \u00b1 {fmt.format(row[f'{key}_std'])} ({row[f'{key}_reached']}/{n} seeds)"


CLAIM_WORDS = {  # report.separation of the recurrent net's test accuracy against LeNet5's
    "higher": "supported on equal data (the recurrent net more accurate)",
    "lower": "not supported on equal data (LeNet5 more accurate)",
    "overlap": "not separated on equal data",
}


def claim_verdict(rows: list[dict], shrunk: bool = False) -> str:
    """The assignment's Part 3c claim (the RNN much easier to optimise than the CNN) judged on equal data by
    report.comparison_verdict on the test accuracies (N >= 2 seeds on both sides, the N named): the one
    judgement of the claim, which the prose (`summary_text`) never contradicts."""
    cnn, rnn = rows
    a, b = accuracy_estimate(cnn), accuracy_estimate(rnn)
    word = report.comparison_verdict(b, a, CLAIM_WORDS, shrunk)
    if a.n < 2 or b.n < 2 or shrunk:
        return f"{word} ({cnn['model']} {a.mean:.4f} vs {rnn['model']} {b.mean:.4f}, test accuracy)."
    return (f"{word} ({cnn['model']} {report.fmt_range(a.low, a.high, 4)} vs {rnn['model']} "
            f"{report.fmt_range(b.low, b.high, 4)}, {report.INTERVAL_RULE}).")


def seconds_per_epoch_text(row: dict) -> str:
    """'0.65 s of training per epoch after the first' or the one epoch's, said not comparable."""
    after = row.get("train_seconds_per_epoch_after_first")
    if after is None and (row.get("epochs") or 1) > 1:
        after = row.get("train_seconds_per_epoch")  # comparison.json of older runs: the same rule, unnamed
    if after is not None:
        return f"{after:.2f} s of training per epoch after the first"
    first = row.get("train_seconds_first_epoch", row.get("train_seconds_per_epoch"))
    return f"{first or 0.0:.2f} s in its only epoch ({report.ONE_EPOCH})"


def summary_text(rows: list[dict], target: float, shrunk: str | None = None) -> str:
    """What the table shows, in words, without a finding of its own: the numbers and which net reached the
    target first; whether one net is more accurate is `claim_verdict`'s to say (the interval rule)."""
    cnn, rnn = rows
    key_e, key_s = f"epochs_to_{_pct(target)}", f"train_seconds_to_{_pct(target)}"

    def reach(r):
        if r.get(key_e) is None:
            return f"{r['model']} did not reach {pct_text(target)} test accuracy in {r['epochs']} epoch(s)"
        return (f"{r['model']} reached {pct_text(target)} after {fmt_spread(r, key_e, '{:.1f}')} epoch(s) "
                f"({fmt_spread(r, key_s, '{:.1f}')} s of training, compilation included)")

    acc = {id(r): report.fmt_estimate(accuracy_estimate(r), per_seed=False) for r in rows}
    parts = [f"Test accuracy of each net's best-validation epoch: {cnn['model']} {acc[id(cnn)]}, {rnn['model']} "
             f"{acc[id(rnn)]} ({cnn['param_count']:,} vs {rnn['param_count']:,} parameters; "
             f"{seconds_per_epoch_text(cnn)} vs {seconds_per_epoch_text(rnn)}).", reach(cnn) + "; " + reach(rnn) + "."]
    reached = [r for r in rows if r.get(key_s) is not None]
    if len(reached) == 2 and len({r[key_s] for r in reached}) == 2:
        first = min(reached, key=lambda r: r[key_s])
        parts.append(f"In cumulative training time {first['model']} got there first.")
    parts.append("Whether the accuracies differ is the verdict's to say (the interval rule, N \u2265 2 seeds "
                 "on both sides); the assignment's contrast (about 60% for LeNet5 on CIFAR10 against 96-99% for the "
                 "recurrent nets on MNIST) changed the dataset and the architecture at once.")
    if shrunk:
        parts.append(f"A shrunk run ({shrunk}): a description, not a finding.")
    return " ".join(parts)


def write_tables(workdir: str, rows: list[dict], info: dict) -> None:
    """comparison.json (rows + how they were made), comparison.csv and comparison.md."""
    outputs.atomic_write_json(os.path.join(workdir, TABLE + ".json"), {**info, "rows": rows})
    outputs.write_csv(os.path.join(workdir, TABLE + ".csv"), rows)
    target = info["target_accuracy"]
    key_e, key_s = f"epochs_to_{_pct(target)}", f"train_seconds_to_{_pct(target)}"
    headers = ["model", "parameters", "test accuracy (best-validation epoch)", "val accuracy",
               "training s/epoch after the first (median)", f"epochs to {pct_text(target)}",
               f"cumulative training s to {pct_text(target)} (compilation in)",
               "wall s of the run (every epoch with evaluation, compilation in)"]
    body = [[r["model"], f"{r['param_count']:,}", report.fmt_estimate(accuracy_estimate(r)),
             f"{r['val_accuracy']:.4f}", _after_first(r), fmt_spread(r, key_e, "{:.1f}"),
             fmt_spread(r, key_s, "{:.1f}"), f"{r['wall_seconds']:.0f}"] for r in rows]
    text = (f"# LeNet5 vs {rows[1]['model']} on MNIST (Part 3c)\n\n{markdown_table(headers, body)}\n\n"
            f"{info['summary']}\n\nThe assignment's claim: {info['claim_verdict']}\n\n"
            f"Recurrent net: {info['recurrent_choice']['reason']}.\n")
    outputs.atomic_write_text(os.path.join(workdir, TABLE + ".md"), text)


def _after_first(row: dict) -> str:
    value = row.get("train_seconds_per_epoch_after_first")
    return f"{value:.2f}" if value is not None else report.ONE_EPOCH


def plot_comparison(runs: list[tuple[dict, list[dict]]], path: str, target: float, title: str) -> str:
    """Test accuracy against cumulative training seconds and against epoch, and train loss against epoch;
    with several seeds, the mean over them and a min-max band.

    runs: [(comparison row, history rows)] for the CNN and the recurrent net.
    """
    plt = plotting.plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained")
    for row, history in runs:
        models = model_histories(history)
        n = len(models)
        style = dict(color=COLOURS[row["kind"]], marker="o", ms=3,
                     label=row["model"] + (f" (mean of {n} seeds; band: min-max)" if n > 1 else ""))
        mean, epochs, seconds = mean_rows(history), [h["epoch"] for h in history], cumulative_train_seconds(history)
        for ax, x, key in ((axes[0], seconds, "test_accuracy"), (axes[1], epochs, "test_accuracy"),
                           (axes[2], epochs, "train_loss")):
            ax.plot(x, [h[key] for h in mean], **style)
            if n > 1:
                plotting.band(ax, x, [[h[key] for h in m] for m in models], style["color"])
    for ax in axes[:2]:
        ax.axhline(target, color="gray", ls="--", lw=1, label=pct_text(target))
        ax.set_ylabel("test accuracy")
    # two lines: on one, the label is wider than its panel and is cut at the figure's left edge
    axes[0].set_xlabel("training seconds, cumulative\n(all seeds together; compilation in, evaluation out)")
    axes[0].set_title("Test accuracy against training time")
    axes[1].set_title("Test accuracy against epoch")
    axes[2].set_title("Training loss (eval mode) against epoch")
    axes[2].set_ylabel("cross-entropy loss")
    for ax in axes[1:]:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)  # '+1.752' above an axis reads as a value
    plotting.figure_legend(fig, axes)
    fig.suptitle(title)
    return plotting.save(fig, path)


# ------------------------------------------------------------------------------------------------ entry


def base_configs(quick: bool = False) -> tuple[LeNetConfig, RNNConfig]:
    """Both nets on MNIST for the recurrent report's 10 epochs, each with its own report hyperparameters;
    the quick preset: 2 epochs on the first 2,000 training examples."""
    shrunk = {"epochs": 2, "limit": 2000} if quick else {"epochs": RNNConfig().train.epochs}
    return LeNetConfig.create(dataset="mnist", **shrunk), RNNConfig.create(**shrunk)


def configs_from_args(args, cell: str, hidden: int) -> tuple[LeNetConfig, RNNConfig]:
    """Both configs from the same flags (and the same preset), `--seeds` included."""
    # --seeds N trains N models per net (seeds S..S+N-1, the same for both); one learning rate per net.
    if isinstance(args.lr, tuple):
        raise UserError("--task compare trains one configuration per net: give --lr one value (or none for each "
                        "net's report rate)")
    lenet, rnn = base_configs(args.quick)
    # --hidden is the recurrent net's; LeNet5's fc1 has a field of that name, which keeps its report value.
    lenet_args = argparse.Namespace(**{**vars(args), "hidden": None})
    return (config_from_args(lenet, lenet_args).validate(),
            config_from_args(rnn, args, cell=cell, hidden=hidden).validate())


def _seeds_text(seeds: list) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds: {', '.join(map(str, seeds))}"


def shrunk_description(config: RNNConfig) -> str | None:
    """'2 epoch(s) instead of 10, first 2000 training examples' when smaller than the report's run, else None."""
    parts, full = [], RNNConfig().train.epochs
    if config.train.epochs < full:
        parts.append(f"{config.train.epochs} epoch(s) instead of {full}")
    if config.data.limit is not None:
        parts.append(f"first {config.data.limit} training examples")
    return ", ".join(parts) or None


def run(args) -> int:
    out = args.out
    rnn_dir = os.path.join(os.path.dirname(os.path.abspath(out)), "rnn")
    choice = recurrent_choice(args, rnn_dir)
    lenet_config, rnn_config = configs_from_args(args, choice[0], choice[1])
    # Both nets must see the very same splits: the data fields of the two configs have to agree.
    data_config = rnn_config.data
    assert lenet_config.data == data_config, "LeNet5 and RNN data settings differ"
    print(f"compare: LeNet5 vs {CELL_TITLES[rnn_config.cell]}-{rnn_config.hidden} ({choice[2]})", file=sys.stderr)
    dataset = data_lib.load_dataset(data_config)

    rundir = outputs.RunDir(out)
    workdir = rundir.open()
    cnn = train_lenet(lenet_config, os.path.join(workdir, "lenet"), dataset, args.progress, args.command)
    rec = train_recurrent(rnn_config, os.path.join(workdir, rnn_config.name), dataset, args.progress, args.command)

    rnn_name = f"{CELL_TITLES[rnn_config.cell]}-{rnn_config.hidden}"
    runs = [(comparison_row("LeNet5", "cnn", "lenet", cnn.metrics, cnn.history, TARGET_ACCURACY), cnn.history),
            (comparison_row(rnn_name, "rnn", rnn_config.name, rec.metrics, rec.history, TARGET_ACCURACY),
             rec.history)]
    rows = [r for r, _ in runs]
    shrunk = shrunk_description(rnn_config)
    info = {
        "target_accuracy": TARGET_ACCURACY,
        "recurrent_choice": {"cell": choice[0], "hidden": choice[1], "reason": choice[2]},
        "summary": summary_text(rows, TARGET_ACCURACY, shrunk),
        "claim_verdict": claim_verdict(rows, bool(shrunk)),
        "shrunk": shrunk,
        "data_source": dataset.source, "train_size": len(dataset.train), "val_size": len(dataset.val),
        "test_size": len(dataset.test), "seed": rnn_config.train.seed, "seeds": rows[0]["seeds"],
        "configs": {"lenet": lenet_config.to_dict(), "recurrent": rnn_config.to_dict()},
        "command": cnn.metrics["command"], "finished_at": rec.metrics["finished_at"],
        "wall_seconds": cnn.metrics["wall_seconds"] + rec.metrics["wall_seconds"],
        "environment": rec.metrics["environment"],
    }
    # the commands, data and environment as the report writes them: no absolute path of this machine
    info = results_lib.readable(info, results_lib.results_root(rundir.final))
    write_tables(workdir, rows, info)
    plot_comparison(runs, os.path.join(workdir, FIGURE), TARGET_ACCURACY,
                    f"LeNet5 vs {rnn_name} on the same MNIST splits ({_seeds_text(rows[0]['seeds'])})")
    final = rundir.commit()
    print(info["summary"])
    print(f"compare: tables and {FIGURE} in {final}")
    return 0
