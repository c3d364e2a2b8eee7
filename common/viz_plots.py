"""Figures for looking inside a trained conv net: filter grids, filters over training, activation
histograms and feature maps. Plain matplotlib on the Agg backend (no display needed).

Conventions shared by every figure here:
  * signed weights use one diverging colour map, symmetric around zero (white = 0), with a colour bar;
  * a kernel is normalised by its own largest |weight| so that weak filters still show their pattern; the
    scale is printed beside it, so magnitudes are not lost;
  * histograms are densities (area 1) with the fitted normal N(mean, std) drawn over them, on a linear and
    a log axis: on the log axis a normal is a downward parabola, which makes tails and skew easy to see.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

from common.plotting import save  # noqa: E402

DIVERGING = "RdBu_r"  # red positive, blue negative, white zero
SEQUENTIAL = "magma"  # non-negative maps (after ReLU): black = 0
NORMAL_STYLE = dict(color="black", lw=1.2, ls="--", label="fitted normal")


# ------------------------------------------------------------------------------------------------ filters


def filter_tiles(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conv kernel [kh, kw, in, out] -> (tiles [out, kh, kw, in] in [-1, 1], scales [out]).

    Each tile is divided by its own max |weight| (its scale), so 0 stays 0 and the sign is kept. An all-zero
    kernel has scale 0 and stays all zero instead of dividing by zero.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"expected a conv kernel [kh, kw, in, out], got shape {kernel.shape}")
    tiles = np.moveaxis(kernel, -1, 0)
    scales = np.max(np.abs(tiles), axis=(1, 2, 3))
    safe = np.where(scales > 0, scales, 1.0)
    return tiles / safe[:, None, None, None], scales


def tile_image(tile: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """One normalised tile [kh, kw, in] -> (image for imshow, imshow kwargs).

    One input channel: the diverging map over [-1, 1]. Three (RGB) channels: each channel mapped from
    [-1, 1] to [0, 1], so mid-grey is zero and the colour is the one the filter responds to most. Any other
    channel count: the mean over channels on the diverging map.
    """
    if tile.shape[-1] == 3:
        return np.clip(0.5 + 0.5 * tile, 0.0, 1.0), {}
    image = tile[..., 0] if tile.shape[-1] == 1 else tile.mean(axis=-1)
    return image, {"cmap": DIVERGING, "vmin": -1.0, "vmax": 1.0}


def _clean_axis(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("0.6")
        spine.set_linewidth(0.6)


def _colour_note(in_channels: int) -> str:
    if in_channels == 3:
        return "RGB tiles: each channel mapped from [-max|w|, +max|w|] to [0, 1]; mid-grey = 0"
    return "each filter divided by its own max |w| (printed under it); white = 0"


def plot_filter_grid(kernel: np.ndarray, path: str, title: str, cols: int = 8) -> str:
    """Figure 2: every first-layer kernel as a labelled tile, with one shared colour bar (gray input) or
    RGB tiles (colour input). kernel: [kh, kw, in, out]."""
    tiles, scales = filter_tiles(kernel)
    n, kh, kw, cin = tiles.shape
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols + 1.3, 1.45 * rows + 1.0), squeeze=False,
                             constrained_layout=True)
    im = None
    for i, ax in enumerate(axes.flat):
        _clean_axis(ax)
        if i >= n:
            ax.set_visible(False)
            continue
        image, kwargs = tile_image(tiles[i])
        im = ax.imshow(image, interpolation="nearest", **kwargs)
        ax.set_title(f"filter {i}", fontsize=8, pad=2)
        ax.set_xlabel(f"max|w| {scales[i]:.3f}", fontsize=7, labelpad=1)
    if cin != 3 and im is not None:
        bar = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.02, aspect=30)
        bar.set_label("weight / max |weight| of the filter", fontsize=9)
        bar.set_ticks([-1, -0.5, 0, 0.5, 1])
    fig.suptitle(f"{title}\n{kh}x{kw} kernels, {cin} input channel(s); {_colour_note(cin)}", fontsize=11)
    return save(fig, path)


def plot_filters_over_training(kernels_by_epoch: Mapping[int, np.ndarray], path: str, title: str,
                               strip_cols: int = 4) -> str:
    """One strip per filter: its kernel after each saved epoch, left to right.

    kernels_by_epoch: {epoch: [kh, kw, in, out]}. Each strip is divided by the filter's largest |weight|
    over all epochs, so growth and shrinkage of a filter stay visible along the strip.
    """
    epochs = sorted(kernels_by_epoch)
    stack = np.stack([np.asarray(kernels_by_epoch[e], np.float64) for e in epochs])  # [E, kh, kw, in, out]
    n_epochs, n_filters, cin = len(epochs), stack.shape[-1], stack.shape[3]
    strip_scale = np.max(np.abs(stack), axis=(0, 1, 2, 3))  # [out]
    safe = np.where(strip_scale > 0, strip_scale, 1.0)
    norm = stack / safe
    strip_rows = int(np.ceil(n_filters / strip_cols))
    fig = plt.figure(figsize=(strip_cols * (0.62 * n_epochs + 0.5) + 1.2, 0.78 * strip_rows + 1.3),
                     constrained_layout=True)
    outer = fig.add_gridspec(strip_rows, strip_cols, wspace=0.06, hspace=0.04)
    im = None
    for f in range(n_filters):
        inner = outer[f // strip_cols, f % strip_cols].subgridspec(1, n_epochs, wspace=0.05)
        for j in range(n_epochs):
            ax = fig.add_subplot(inner[0, j])
            _clean_axis(ax)
            image, kwargs = tile_image(norm[j, :, :, :, f])
            im = ax.imshow(image, interpolation="nearest", **kwargs)
            if j == 0:
                ax.set_ylabel(f"filter {f}", fontsize=7, rotation=0, ha="right", va="center", labelpad=3)
            if f // strip_cols == 0:
                ax.set_title(f"ep {epochs[j]}", fontsize=7, pad=2)
    if cin != 3 and im is not None:
        bar = fig.colorbar(im, ax=fig.axes, shrink=0.6, pad=0.01, aspect=40)
        bar.set_label("weight / max |weight| of the filter over all epochs", fontsize=9)
    note = ("epoch 0 = initialisation; " if 0 in epochs else "") + (
        "each strip scaled by the filter's max |w| over epochs"
        + ("; mid-grey = 0" if cin == 3 else "; white = 0"))
    fig.suptitle(f"{title}\n{note}", fontsize=11)
    return save(fig, path)


# ----------------------------------------------------------------------------------------- distributions


def histogram_density(counts: Sequence[float], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Histogram counts over [lo, hi] -> (edges [bins + 1], density [bins] with unit area)."""
    counts = np.asarray(counts, np.float64)
    edges = np.linspace(lo, hi, len(counts) + 1)
    total = counts.sum()
    width = (hi - lo) / len(counts)
    return edges, counts / (total * width) if total > 0 else counts


def rebin(counts: Sequence[float], factor: int) -> np.ndarray:
    """Sums groups of `factor` neighbouring bins (bins must be divisible by factor)."""
    counts = np.asarray(counts)
    return counts.reshape(-1, factor).sum(axis=1)


def stats_text(s: Mapping[str, Any]) -> str:
    def f(key, fmt):
        v = s.get(key)
        return "n/a" if v is None else format(v, fmt)

    return (f"mean {f('mean', '.3f')}, std {f('std', '.3f')}\n"
            f"zeros {100 * (s.get('zero_fraction') or 0):.1f}%\n"
            f"skew {f('skewness', '.2f')}, ex. kurt {f('excess_kurtosis', '.2f')}\n"
            f"KS to normal {f('ks_normal', '.3f')}")


def draw_distribution(ax, s: Mapping[str, Any], *, log: bool, standardize: bool = False, color="tab:blue",
                      display_bins: int = 128, show_stats: bool = True) -> None:
    """One activation histogram (`s` is a StreamingStats.result()) as a density, with its fitted normal.

    standardize: plot (x - mean) / std, so that shapes of different layers share one axis and N(0, 1).
    On the linear axis a point mass (e.g. the ReLU's zeros) is clipped so that it does not flatten the rest;
    its size is written on the plot.
    """
    h = s["histogram"]
    counts = np.asarray(h["counts"], np.float64)
    factor = max(1, len(counts) // display_bins)
    if len(counts) % factor == 0:
        counts = rebin(counts, factor)
    lo, hi = h["lo"], h["hi"]
    mean, std = s["mean"] or 0.0, s["std"] or 0.0
    if standardize and std > 0:
        lo, hi = (lo - mean) / std, (hi - mean) / std
        mean, std = 0.0, 1.0
    edges, density = histogram_density(counts, lo, hi)
    ax.stairs(density, edges, fill=True, color=color, alpha=0.35, lw=0)
    ax.stairs(density, edges, color=color, lw=0.9, label="activations")
    if std > 0:
        pad = 0.05 * (hi - lo)
        x = np.linspace(min(lo - pad, mean - 4 * std), max(hi + pad, mean + 4 * std), 600)
        pdf = sps.norm.pdf(x, mean, std)
        ax.plot(x, pdf, **NORMAL_STYLE)
        ax.set_xlim(lo - pad, hi + pad)
    if log:
        positive = density[density > 0]
        if positive.size:
            ax.set_yscale("log")
            ax.set_ylim(positive.min() * 0.5, positive.max() * 3)
        ax.set_ylabel("density (log scale)")
    else:
        order = np.sort(density)
        peak_bin = int(np.argmax(density))
        # A spike (a point mass) is far taller than its neighbours: cap the axis at the rest of the data.
        if len(order) > 2 and order[-1] > 3 * order[-2]:
            cap = max(order[-2], sps.norm.pdf(mean, mean, std) if std > 0 else 0) * 1.25
            ax.set_ylim(0, cap)
            share = counts[peak_bin] / counts.sum()
            x_peak = 0.5 * (edges[peak_bin] + edges[peak_bin + 1])
            ax.annotate(f"spike: {100 * share:.0f}% of values\n(clipped)", xy=(x_peak, cap),
                        xytext=(0.5, 0.93), textcoords="axes fraction", ha="left", va="top", fontsize=7.5,
                        arrowprops=dict(arrowstyle="->", lw=0.7, color="0.3"))
        else:
            ax.set_ylim(0, None)
        ax.set_ylabel("density")
    ax.set_xlabel("activation (standardised: (x - mean) / std)" if standardize else "activation value")
    ax.grid(alpha=0.25)
    if show_stats:
        ax.text(0.98, 0.97 if log else 0.70, stats_text(s), transform=ax.transAxes, ha="right", va="top",
                fontsize=7.5, family="monospace",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))


def plot_activation_histograms(panels: Sequence[tuple[str, Mapping[str, Any]]], path: str, title: str,
                               standardize: bool = False, colors_: Sequence[str] | None = None) -> str:
    """Figure 3: one column per (label, stats) panel; the top row has linear densities, the bottom row log."""
    n = len(panels)
    palette = colors_ or ["tab:blue", "tab:orange"] * n
    fig, axes = plt.subplots(2, n, figsize=(4.1 * n + 0.6, 7.6), squeeze=False, constrained_layout=True)
    for j, (label, s) in enumerate(panels):
        for i, log in enumerate((False, True)):
            draw_distribution(axes[i, j], s, log=log, standardize=standardize, color=palette[j],
                              show_stats=(i == 0))
        axes[0, j].set_title(label, fontsize=10)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=12)
    return save(fig, path)


def plot_distribution_grid(grid: Sequence[Sequence[tuple[str, Mapping[str, Any] | None]]], path: str, title: str,
                           *, log: bool = True, standardize: bool = True,
                           column_colors: Sequence[str] | None = None) -> str:
    """Rows of panels (e.g. layers) by columns (e.g. networks), each a distribution with its normal fit.

    Standardised x and a log density axis by default: every panel then shares the same N(0, 1) parabola,
    which is what a comparison of shapes needs. A None stats entry leaves the panel empty with a note.
    """
    rows, cols = len(grid), max(len(r) for r in grid)
    palette = column_colors or ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols + 0.4, 3.7 * rows + 0.8), squeeze=False,
                             constrained_layout=True)
    for i, row in enumerate(grid):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(row) or row[j][1] is None:
                ax.set_axis_off()
                if j < len(row):
                    ax.text(0.5, 0.5, f"{row[j][0]}\n(not available)", ha="center", va="center",
                            transform=ax.transAxes)
                continue
            label, s = row[j]
            draw_distribution(ax, s, log=log, standardize=standardize, color=palette[j % len(palette)])
            if s.get("std"):
                ax.set_xlim(max(ax.get_xlim()[0], -6), min(ax.get_xlim()[1], 12))
            ax.set_title(label, fontsize=10)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=12)
    return save(fig, path)


# ------------------------------------------------------------------------------------------ feature maps


def map_mosaic(maps: np.ndarray, rows: int, gap: int = 1) -> np.ndarray:
    """Feature maps [h, w, c] -> one image [rows*(h+gap)-gap, cols*(w+gap)-gap] with NaN gaps, channel k at
    (k // cols, k % cols). Gaps are NaN so that the colour map's 'bad' colour draws the separators."""
    h, w, c = maps.shape
    cols = int(np.ceil(c / rows))
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = maps[..., k]
    return out


def plot_feature_maps(images: np.ndarray, row_labels: Sequence[str], layer_maps: Sequence[tuple[str, np.ndarray, int]],
                      path: str, title: str) -> str:
    """One row per image: the image, then each layer's maps as a mosaic.

    images: [n, h, w, c] in [0, 1]; layer_maps: (label, maps [n, h', w', channels], mosaic rows). Each
    mosaic has its own colour scale from 0 to the largest activation of that layer for that image, so
    strong and dead maps are told apart within a row.
    """
    n = len(images)
    widths = [1.0] + [np.ceil(m.shape[-1] / r) * m.shape[2] / (r * m.shape[1]) for _, m, r in layer_maps]
    row_h = 1.45
    fig = plt.figure(figsize=(row_h * sum(widths) + 0.4 * len(widths) + 1.2, row_h * n + 1.2),
                     constrained_layout=True)
    gs = fig.add_gridspec(n, len(widths) + 1, width_ratios=widths + [0.04])
    cmap = matplotlib.colormaps[SEQUENTIAL].copy()
    cmap.set_bad("white")
    last = None
    for i in range(n):
        ax = fig.add_subplot(gs[i, 0])
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        _clean_axis(ax)
        ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
        if i == 0:
            ax.set_title("test image", fontsize=9)
        for j, (label, maps, mrows) in enumerate(layer_maps, start=1):
            ax = fig.add_subplot(gs[i, j])
            peak = float(np.max(maps[i]))
            last = ax.imshow(map_mosaic(maps[i] / peak if peak > 0 else maps[i], mrows), cmap=cmap, vmin=0,
                             vmax=1, interpolation="nearest")
            _clean_axis(ax)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_xlabel(f"max {peak:.2f}", fontsize=7, labelpad=1)
            if i == 0:
                ax.set_title(label, fontsize=9)
    if last is not None:
        bar = fig.colorbar(last, cax=fig.add_subplot(gs[:, -1]))
        bar.set_label("activation / largest activation of the layer for that image", fontsize=9)
    fig.suptitle(title, fontsize=12)
    return save(fig, path, dpi=110)
