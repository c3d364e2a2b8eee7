"""The sweep's summary figure: test accuracy at the best-validation epoch, parameters and training speed per
(cell, hidden size)."""
from __future__ import annotations

import numpy as np

from common import plotting

CELL_COLOURS = {"rnn": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}


def plot_sweep_summary(rows: list[dict], path: str) -> str:
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
        axes[2].plot(h, [r.get("train_seconds_per_epoch") or r["seconds_per_epoch"] for r in rs], **style)
    for ax, ylabel, title in ((axes[0], "test accuracy (error bars: \u00b1 std over seeds)",
                               "Test accuracy at the best-validation epoch"),
                              (axes[1], "parameters", "Model size"),
                              (axes[2], "training seconds per epoch (no evaluation)", "Training time per epoch")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["hidden"] for r in rows}))
        ax.get_xaxis().set_major_formatter(plotting.matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("hidden units")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle("Recurrent nets on MNIST (rows as time steps)")
    return plotting.save(fig, path)
