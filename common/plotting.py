"""Matplotlib helpers shared by the experiments (Agg backend: no display needed)."""
from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

SPLIT_STYLE = {
    "train": dict(color="tab:blue", label="train (eval mode)"),
    "train_running": dict(color="tab:blue", ls=":", alpha=0.7, label="train (running mean while training)"),
    "val": dict(color="tab:orange", label="validation"),
    "test": dict(color="tab:green", label="test"),
}


def plot_history(rows: Sequence[dict[str, Any]], path: str, title: str, selected_epoch: int | None = None) -> str:
    """Accuracy and loss against epoch for train, validation and test, side by side (the report's Figure 1);
    a grey line marks the epoch whose model is reported (the best validation accuracy)."""
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, metric, ylabel in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "cross-entropy loss")):
        for split, style in SPLIT_STYLE.items():
            values = [r.get(f"{split}_{metric}") for r in rows]
            if all(v is not None for v in values):
                ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, ms=3, **style)
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", ls="--", lw=0.8,
                       label=f"reported model (epoch {selected_epoch}, best validation)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.capitalize())
        ax.grid(alpha=0.3)
        if len(epochs) == 1:
            ax.set_xticks(epochs)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def save(fig, path: str, dpi: int = 130) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
