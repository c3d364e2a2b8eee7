"""Matplotlib helpers shared by the experiments (Agg backend: no display needed)."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SPLIT_STYLE = {
    "train": dict(color="tab:blue", label="train (eval mode)"),
    "train_running": dict(color="tab:blue", ls=":", alpha=0.7, label="train (running mean while training)"),
    "val": dict(color="tab:orange", label="validation"),
    "test": dict(color="tab:green", label="test"),
}


def plot_history(rows: Sequence[dict[str, Any]], path: str, title: str, selected_epoch: int | None = None,
                 per_model: Sequence[Sequence[dict[str, Any]]] | None = None) -> str:
    """Accuracy and loss against epoch for train, validation and test, side by side (the report's Figure 1);
    a grey line marks the epoch whose model is reported (the best validation accuracy). With `per_model`
    (each model's rows, when several trained together) `rows` is their mean and a band spans their min-max."""
    epochs = [r["epoch"] for r in rows]
    several = per_model is not None and len(per_model) > 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, metric, ylabel in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "cross-entropy loss")):
        for split, style in SPLIT_STYLE.items():
            key = f"{split}_{metric}"
            values = [r.get(key) for r in rows]
            if any(v is None for v in values):
                continue
            label = style["label"] + (f", mean of {len(per_model)} seeds" if several else "")
            ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, ms=3, **{**style, "label": label})
            if several:
                band(ax, epochs, [[r[key] for r in m] for m in per_model], style["color"])
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", ls="--", lw=0.8,
                       label=f"reported model (epoch {selected_epoch}, best validation)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.capitalize())
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(epochs) == 1:
            ax.set_xticks(epochs)
    if several:
        axes[0].fill_between([], [], [], color="grey", alpha=0.2, label="shaded: min-max over seeds")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def band(ax, x, curves, color) -> None:
    """A min-max band over `curves` (one list of values per model); a vertical bar for a single epoch."""
    lo, hi = [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)]
    if len(x) == 1:
        ax.vlines(x, lo, hi, color=color, alpha=0.4, lw=6)
    else:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def save(fig, path: str, dpi: int = 130) -> str:
    """Renders `fig` to bytes (the format from `path`'s extension, PNG without one), then writes them
    atomically (common.outputs), so no reader or resumed run ever sees half a figure."""
    from common import outputs  # here: this module stays importable without JAX

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=dpi, format=os.path.splitext(path)[1].lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    outputs.atomic_write_bytes(path, buffer.getvalue())
    return path
