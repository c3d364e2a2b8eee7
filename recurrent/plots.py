"""The sweep's figures: the summary (test accuracy at the best-validation epoch, parameters and training speed per
(cell, hidden size)) and the validation curves of every hidden size, one panel per cell on a shared axis."""
from __future__ import annotations

import numpy as np

from common.core import history as history_lib
from common.report import plotting
from recurrent.config import CELL_TITLES

CELL_COLOURS = {"rnn": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}


ONE_EPOCH = "not comparable: one epoch, includes compilation"  # common.report.ONE_EPOCH (no import: no JAX here)


def steady_seconds(row: dict) -> float | None:
    """The row's training s/epoch after the first epoch (summary rows of older sweeps: their unnamed field)."""
    if "train_seconds_per_epoch_after_first" in row:
        return row["train_seconds_per_epoch_after_first"]
    return row.get("train_seconds_per_epoch") if (row.get("epochs") or 1) > 1 else None


def plot_sweep_summary(rows: list[dict], path: str) -> str:
    """Test accuracy, parameters and training s/epoch after the first epoch against hidden size; one-epoch runs
    have no such epoch (their one epoch is mostly compilation), so their times are not drawn, and said so."""
    plt = plotting.plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    for cell in dict.fromkeys(r["cell"] for r in rows):
        rs = sorted((r for r in rows if r["cell"] == cell), key=lambda r: r["hidden"])
        h = [r["hidden"] for r in rs]
        style = dict(color=CELL_COLOURS.get(cell), marker="o", label=cell.upper())
        acc = np.array([r["test_accuracy"] for r in rs])
        std = np.array([r.get("test_accuracy_std") or 0.0 for r in rs])
        axes[0].errorbar(h, acc, yerr=std if std.any() else None, capsize=3, **style)
        axes[1].plot(h, [r["param_count"] for r in rs], **style)
        timed = [(x, steady_seconds(r)) for x, r in zip(h, rs) if steady_seconds(r) is not None]
        if timed:
            axes[2].plot(*zip(*timed), **style)
    if not any(steady_seconds(r) is not None for r in rows):
        axes[2].text(0.5, 0.5, ONE_EPOCH.replace(": ", ":\n"), transform=axes[2].transAxes, ha="center",
                     va="center", fontsize=11, color="0.3")
    for ax, ylabel, title in ((axes[0], "test accuracy (error bars: \u00b1 std over seeds)",
                               "Test accuracy at the best-validation epoch"),
                              (axes[1], "parameters", "Model size"),
                              (axes[2], "training s/epoch, evaluation left out\n(median of the epochs after the "
                               "first, which compiles)", "Training time per epoch")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["hidden"] for r in rows}))
        ax.get_xaxis().set_major_formatter(plotting.matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("hidden units")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    if not any(steady_seconds(r) is not None for r in rows):
        axes[2].set_xlim(axes[0].get_xlim())
        axes[2].set_yticks([])
    plotting.figure_legend(fig, axes[:1])
    fig.suptitle("Recurrent nets on MNIST (rows as time steps)")
    return plotting.save(fig, path)


def plot_validation_overlay(runs: list[tuple[str, int, list[dict]]], path: str) -> str:
    """Validation accuracy against epoch, one panel per cell with a line per hidden size, every panel on the
    same y axis so that cells and sizes compare by eye. `runs`: (cell, hidden, history) where history is
    `fit`'s rows (per-model lists when several seeds trained together: the mean, with a min-max band)."""
    plt = plotting.plt
    cells = list(dict.fromkeys(cell for cell, _, _ in runs))
    sizes = sorted({hidden for _, hidden, _ in runs})
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(sizes), 2)))
    fig, axes = plt.subplots(1, len(cells), figsize=(4.6 * len(cells), 4.0), sharey=True, squeeze=False,
                             constrained_layout=True)
    seeds = 1
    for ax, cell in zip(axes[0], cells):
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
        for cell_, hidden, history in sorted(runs, key=lambda r: r[1]):
            if cell_ != cell:
                continue
            per_model = history_lib.model_histories(history)
            seeds = max(seeds, len(per_model))
            rows = history_lib.mean_rows(history)
            epochs = [r["epoch"] for r in rows]
            colour = colours[sizes.index(hidden)]
            ax.plot(epochs, [r["val_accuracy"] for r in rows], marker="o", ms=3, color=colour,
                    label=f"{hidden} hidden")
            if len(per_model) > 1:
                plotting.band(ax, epochs, [[r["val_accuracy"] for r in m] for m in per_model], colour)
            if len(epochs) == 1:
                ax.set_xticks(epochs)  # one epoch: one tick, not fractions of it
        # the assignment's band of each configuration drawn in this panel (labelled with its configuration)
        plotting.draw_targets(ax, dict.fromkeys(line for h in sizes for line in plotting.targets_for(
            f"{CELL_TITLES.get(cell, cell)} with {h} hidden units")))
        ax.set_title(cell.upper())
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
        # below the panel: a legend inside would cover a curve or the assignment's band
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=plotting.LEGEND_SIZE,
                  frameon=False)
    axes[0][0].set_ylabel("validation accuracy" + (f"\n(mean of {seeds} seeds; band: min-max)" if seeds > 1 else ""))
    fig.suptitle("Validation accuracy per epoch: every hidden size of each cell, one shared axis")
    return plotting.save(fig, path)
