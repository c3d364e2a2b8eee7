"""Matplotlib helpers shared by the experiments (Agg backend: no display needed)."""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Each split its own marker too: with one epoch there are only points, and two of one colour must still differ.
SPLIT_STYLE = {
    "train": dict(color="tab:blue", marker="o", label="train (eval mode)"),
    "train_running": dict(color="tab:blue", ls=":", alpha=0.8, marker="^", mfc="white",
                          label="train (running mean while training)"),
    "val": dict(color="tab:orange", marker="s", label="validation"),
    "test": dict(color="tab:green", marker="D", label="test"),
}
# With one epoch, each split's point (and its min-max bar over seeds) is drawn this far beside the epoch, so that
# no point hides another: the running and eval-mode training accuracies can be far apart or equal.
ONE_EPOCH_OFFSET = {"train": -0.15, "train_running": -0.05, "val": 0.05, "test": 0.15}
EVAL_SPLITS = ("train", "val", "test")  # the eval-mode losses, on one axis; the running loss has its own
TARGET_STYLE = dict(color="0.25", ls="--", lw=1.0)
LEGEND_SIZE = 9  # points: >= 9 screen pixels for a figure shown at or above 70% of its size (130 dpi)

# (title prefix, ((low, high, label), ...)): the assignment's numbers drawn on the accuracy curves of runs whose
# title starts with the prefix. Filled by the experiment packages (register_targets), which know the assignment.
TARGET_LINES: list[tuple[str, tuple[tuple[float, float, str], ...]]] = []


def register_targets(title_prefix: str, lines: Sequence[tuple[float, float, str]]) -> None:
    """Draw `lines` ((low, high, label): a line when low == high, else a band) on plot_history's accuracy
    panel for every title starting with `title_prefix` (registering a prefix again replaces its lines)."""
    TARGET_LINES[:] = [t for t in TARGET_LINES if t[0] != title_prefix] + [(title_prefix, tuple(lines))]


def targets_for(title: str) -> tuple[tuple[float, float, str], ...]:
    return next((lines for prefix, lines in TARGET_LINES if title.startswith(prefix)), ())


def draw_targets(ax, lines: Sequence[tuple[float, float, str]]) -> None:
    """The assignment's numbers on an accuracy axis: dashed lines, or a shaded band for a range."""
    for i, (low, high, label) in enumerate(lines):
        if low == high:  # dashed, then dotted: two lines of one panel stay apart in the legend
            ax.axhline(low, label=label, **{**TARGET_STYLE, "ls": ("--", ":")[i % 2]})
        else:
            ax.axhspan(low, high, color="0.5", alpha=0.18, lw=0, label=label)


def _curve(ax, epochs, rows, per_model, key: str, style: dict, several: bool, offset: float = 0.0) -> None:
    values = [r.get(key) for r in rows]
    if any(v is None for v in values):
        return
    n = len(per_model) if several else 1
    x = [e + offset for e in epochs]
    one = len(epochs) == 1
    ax.plot(x, values, ms=6 if one else 4, zorder=3,
            **{**style, "marker": style.get("marker", "o") if len(epochs) < 30 else None,
               "label": style["label"] + (f", mean of {n} models" if several else "")})
    if several:
        band(ax, x, [[r[key] for r in m] for m in per_model], style["color"], width=3 if one else 6)


def plot_history(rows: Sequence[dict[str, Any]], path: str, title: str, selected_epoch: int | None = None,
                 per_model: Sequence[Sequence[dict[str, Any]]] | None = None) -> str:
    """Accuracy, the eval-mode losses and the running training loss against epoch, each on its own axes so
    that none flattens another (the running loss, in train mode: dropout on, is far above the others); the
    assignment's numbers for this run (`targets_for(title)`) on the accuracy panel; a grey line marks the
    epoch whose model is reported (the best validation accuracy). With `per_model` (each model's rows, when
    several trained together) `rows` is their mean and a band spans their min-max. One legend, below."""
    epochs = [r["epoch"] for r in rows]
    several = per_model is not None and len(per_model) > 1
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), layout="constrained")
    panels = ((axes[0], "accuracy", ("train", "train_running", "val", "test"), "accuracy"),
              (axes[1], "loss", EVAL_SPLITS, "cross-entropy loss (eval mode)"),
              (axes[2], "loss", ("train_running",), "running training loss (train mode)"))
    for ax, metric, splits, ylabel in panels:
        for split in splits:
            offset = ONE_EPOCH_OFFSET[split] if len(epochs) == 1 and len(splits) > 1 else 0.0
            _curve(ax, epochs, rows, per_model, f"{split}_{metric}", SPLIT_STYLE[split], several, offset)
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", ls="-.", lw=0.8,
                       label=f"reported model (epoch {selected_epoch}, best validation)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel[:1].upper() + ylabel[1:], fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.ticklabel_format(axis="y", useOffset=False)  # '+1.752' above an axis reads as a value
        if len(epochs) == 1:
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    draw_targets(axes[0], targets_for(title))
    if several:
        axes[0].fill_between([], [], [], color="grey", alpha=0.2, label="shaded: min-max over the models")
    figure_legend(fig, axes)
    fig.suptitle(title)
    return save(fig, path)


def figure_legend(fig, axes, ncols: int = 3) -> None:
    """One legend below the panels with every label of `axes` once: outside the data, never over it."""
    found: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    fig.legend(list(found.values()), list(found), loc="outside lower center", ncols=min(ncols, len(found)),
               fontsize=LEGEND_SIZE, frameon=False)


def band(ax, x, curves, color, width: float = 6) -> None:
    """A min-max band over `curves` (one list of values per model); a vertical bar for a single epoch."""
    lo, hi = [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)]
    if len(x) == 1:
        ax.vlines(x, lo, hi, color=color, alpha=0.4, lw=width)
    else:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def save(fig, path: str, dpi: int = 130) -> str:
    """Renders `fig` to bytes (the format from `path`'s extension, PNG without one), then writes them
    atomically (common.runtime.outputs), so no reader or resumed run ever sees half a figure."""
    from common.runtime import outputs  # here: this module stays importable without JAX

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=dpi, format=os.path.splitext(path)[1].lstrip(".").lower() or "png")
    finally:
        plt.close(fig)
    outputs.atomic_write_bytes(path, buffer.getvalue())
    return path
