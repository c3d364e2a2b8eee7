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

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from scipy import stats as sps  # noqa: E402

from common.report.plotting import save  # noqa: E402

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


def strip_mosaic(tiles: np.ndarray, upsample: int = 4, gap: int = 1) -> np.ndarray:
    """Normalised tiles [n, kh, kw, in] -> one row image [kh*u, n*(kw*u+gap)-gap] (or [..., 3] for RGB).

    Each weight becomes a u x u block so that the one-pixel NaN gaps between tiles stay thin.
    """
    n, kh, kw, cin = tiles.shape
    big = [np.kron(tile_image(t)[0], np.ones((upsample, upsample) + ((1,) if cin == 3 else ()))) for t in tiles]
    w = kw * upsample
    out = np.full((kh * upsample, n * (w + gap) - gap) + ((3,) if cin == 3 else ()), np.nan)
    for i, image in enumerate(big):
        out[:, i * (w + gap):i * (w + gap) + w] = image
    if cin == 3:
        out = np.where(np.isnan(out), 1.0, out)  # white gaps: in RGB tiles zero is mid-grey, not white
    return out


def relative_change(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far kernels moved from the first saved epoch: stack [epochs, kh, kw, in, out] ->
    (per filter at the last epoch [out], all filters together at each epoch [epochs]), as
    ||W_e - W_0|| / ||W_0|| (0 where W_0 is all zero)."""
    diff = stack - stack[:1]
    per_filter = np.linalg.norm(diff[-1].reshape(-1, stack.shape[-1]), axis=0)
    base = np.linalg.norm(stack[0].reshape(-1, stack.shape[-1]), axis=0)
    total = np.linalg.norm(diff.reshape(len(stack), -1), axis=1)
    base_total = np.linalg.norm(stack[0])
    return (np.where(base > 0, per_filter / np.where(base > 0, base, 1.0), 0.0),
            total / base_total if base_total > 0 else np.zeros(len(stack)))


def plot_filters_over_training(kernels_by_epoch: Mapping[int, np.ndarray], path: str, title: str,
                               strip_cols: int = 4) -> str:
    """One strip per filter: its kernel after each saved epoch, left to right.

    kernels_by_epoch: {epoch: [kh, kw, in, out]}. Each strip is divided by the filter's largest |weight|
    over all epochs, so growth and shrinkage of a filter stay visible along the strip.
    """
    epochs = sorted(kernels_by_epoch)
    stack = np.stack([np.asarray(kernels_by_epoch[e], np.float64) for e in epochs])  # [E, kh, kw, in, out]
    n_epochs, kh, kw, cin, n_filters = stack.shape
    strip_scale = np.max(np.abs(stack), axis=(0, 1, 2, 3))  # [out]
    norm = stack / np.where(strip_scale > 0, strip_scale, 1.0)
    moved, moved_total = relative_change(stack)
    strip_rows = int(np.ceil(n_filters / strip_cols))
    fig, axes = plt.subplots(strip_rows, strip_cols, squeeze=False, constrained_layout=True,
                             figsize=(max(9.0, strip_cols * (0.55 * n_epochs + 0.35) + 1.4), 0.95 * strip_rows + 1.2))
    cmap = matplotlib.colormaps[DIVERGING].with_extremes(bad="0.25")  # dark separators: white means zero
    im = None
    for f, ax in enumerate(axes.flat):
        if f >= n_filters:
            ax.set_visible(False)
            continue
        mosaic = strip_mosaic(norm[..., f])
        im = ax.imshow(mosaic, cmap=None if cin == 3 else cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"filter {f}: max|w| {strip_scale[f]:.3f}, moved {100 * moved[f]:.0f}%", fontsize=7.5, pad=2)
        step = mosaic.shape[1] / n_epochs
        ax.set_xticks([(j + 0.5) * step - 0.5 for j in range(n_epochs)], [str(e) for e in epochs],
                      fontsize=6.5)
        ax.tick_params(axis="x", length=0, pad=1.5)
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if f // strip_cols == strip_rows - 1 or f + strip_cols >= n_filters:
            ax.set_xlabel("after epoch", fontsize=7.5, labelpad=1)
    if cin != 3 and im is not None:
        bar = fig.colorbar(im, ax=axes, shrink=0.6, pad=0.01, aspect=40)
        bar.set_label("weight / max |weight| of the filter over all epochs", fontsize=9)
    note = ("epoch 0 = initialisation; " if 0 in epochs else "") + (
        "each strip scaled by the filter's max |w| over epochs" + ("; mid-grey = 0" if cin == 3 else "; white = 0"))
    change = ", ".join(f"{e}: {100 * m:.0f}%" for e, m in zip(epochs[1:], moved_total[1:]))
    fig.suptitle(f"{title}\n{note}\nall filters, ||W(epoch) - W({epochs[0]})|| / ||W({epochs[0]})|| after epoch "
                 f"{change}; 'moved' = the same for one filter at epoch {epochs[-1]}", fontsize=11)
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


def spike_bins(density: np.ndarray, window: int = 4, ratio: float = 3.0) -> np.ndarray:
    """Bins far taller than their neighbourhood: a point mass rather than part of a smooth density.

    A bin is a spike when it exceeds `ratio` times the median of the `window` bins on each side (itself
    excluded). Returns a boolean mask [bins].
    """
    density = np.asarray(density, np.float64)
    n = len(density)
    out = np.zeros(n, bool)
    for k in range(n):
        neighbours = np.concatenate([density[max(0, k - window):k], density[k + 1:k + 1 + window]])
        if neighbours.size:
            out[k] = density[k] > ratio * np.median(neighbours) and density[k] > ratio * density.mean() / 4
    return out


def zero_in_spikes(edges: np.ndarray, spikes: np.ndarray) -> bool:
    """True when 0 lies in one of the spike bins (the ReLU's point mass)."""
    k = np.searchsorted(edges, 0.0, side="right") - 1
    return 0 <= k < len(spikes) and bool(spikes[k])


def stats_text(s: Mapping[str, Any]) -> str:
    """The numbers printed on a histogram panel (per-channel medians when the stats have them)."""
    def f(key, fmt):
        v = s.get(key)
        return "n/a" if v is None else format(v, fmt)

    text = (f"mean {f('mean', '.3f')}, std {f('std', '.3f')}\n"
            f"zeros {100 * (s.get('zero_fraction') or 0):.1f}%\n"
            f"skew {f('skewness', '.2f')}, ex.kurt {f('excess_kurtosis', '.2f')}\n"
            f"KS to normal {f('ks_normal', '.3f')}")
    if s.get("channel_median_skewness") is not None:
        text += (f"\nper channel (median):\n skew {f('channel_median_skewness', '.2f')}, "
                 f"ex.kurt {f('channel_median_excess_kurtosis', '.2f')}")
    return text


def central_range(counts: np.ndarray, edges: np.ndarray, tail: float = 5e-4) -> tuple[float, float]:
    """The edges that hold all but `tail` of the values on each side (from a histogram)."""
    cum = np.cumsum(counts) / max(np.sum(counts), 1)
    first = int(np.searchsorted(cum, tail, side="left"))
    last = int(np.searchsorted(cum, 1.0 - tail, side="left"))
    return float(edges[first]), float(edges[min(last + 1, len(edges) - 1)])


def draw_distribution(ax, s: Mapping[str, Any], *, log: bool, standardize: bool = False, color="tab:blue",
                      display_bins: int = 120, show_stats: bool = True, xlim: tuple[float, float] | None = None,
                      label: str = "activations") -> None:
    """One activation histogram (`s` is a StreamingStats.result()) as a density, with its fitted normal.

    standardize: plot (x - mean) / std, so that shapes of different layers share one axis and N(0, 1).
    The log axis shows the whole range. The linear axis shows the central 99.9% of the values (where a
    density is visible at all) and caps point masses (e.g. the ReLU's zeros) that would flatten the rest,
    writing their share on the plot. Bins are merged to about `display_bins` across the shown range.
    """
    h = s["histogram"]
    raw = np.asarray(h["counts"], np.float64)
    lo, hi = h["lo"], h["hi"]
    mean, std = s["mean"] or 0.0, s["std"] or 0.0
    if standardize and std > 0:
        lo, hi = (lo - mean) / std, (hi - mean) / std
        mean, std = 0.0, 1.0
    raw_edges = np.linspace(lo, hi, len(raw) + 1)
    if xlim is not None:
        view = xlim
    elif log:
        view = (lo, hi)
    else:
        a, b = central_range(raw, raw_edges)
        if std > 0:
            a, b = min(a, max(lo, mean - 3 * std)), max(b, min(hi, mean + 3 * std))
        view = (a, b)
    zoomed = view[1] - view[0] < 0.98 * (hi - lo)
    # Merge bins by a power of two so that about `display_bins` fall inside the shown range.
    in_view = len(raw) * (min(view[1], hi) - max(view[0], lo)) / (hi - lo)
    factor = 1
    while len(raw) % (2 * factor) == 0 and in_view / (2 * factor) >= display_bins:
        factor *= 2
    counts = rebin(raw, factor)
    edges, density = histogram_density(counts, lo, hi)
    ax.stairs(density, edges, fill=True, color=color, alpha=0.35, lw=0)
    ax.stairs(density, edges, color=color, lw=0.9, label=label)
    pad = 0.04 * (view[1] - view[0])
    if std > 0:
        x = np.linspace(view[0] - pad, view[1] + pad, 600)
        ax.plot(x, sps.norm.pdf(x, mean, std), **NORMAL_STYLE)
    ax.set_xlim(view[0] - pad, view[1] + pad)
    centres = 0.5 * (edges[:-1] + edges[1:])
    visible = (centres >= view[0]) & (centres <= view[1])
    if log:
        positive = density[visible & (density > 0)]
        if positive.size:
            ax.set_yscale("log")
            ax.set_ylim(positive.min() * 0.5, positive.max() * 3)
        ax.set_ylabel("density (log scale)")
    else:
        _cap_point_masses(ax, s, counts, edges, density, visible, mean, std)
    xlabel = "(value - mean) / std" if standardize else "activation value"
    if zoomed and not log:
        xlabel += "  [central 99.9%; all in the log plot]"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.grid(alpha=0.25)
    if show_stats:
        ax.text(0.98, 0.97 if log else 0.80, stats_text(s), transform=ax.transAxes, ha="right", va="top",
                fontsize=STATS_SIZE, family="monospace",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))


# points: these figures are about 2,000 px wide and shown at about half that, so a statistics box needs 10.5 pt
# (19 px at 130 dpi) to be read at 9 px or more on screen
STATS_SIZE = 10.5


def _cap_point_masses(ax, s, counts, edges, density, visible, mean: float, std: float) -> None:
    """Linear axis: point masses (the ReLU's zeros, or their images under batch norm) would flatten the rest
    of the histogram, so cap the axis above everything else and say how much is cut off."""
    centres = 0.5 * (edges[:-1] + edges[1:])
    spikes = spike_bins(density) & visible
    rest = density[visible & ~spikes]
    normal_peak = sps.norm.pdf(mean, mean, std) if std > 0 else 0.0
    if spikes.any() and rest.size:
        cap = 1.2 * max(rest.max(), normal_peak)
        ax.set_ylim(0, cap)
        share = counts[spikes].sum() / counts.sum()
        x_peak = centres[spikes][np.argmax(density[spikes])]
        what = "bin at 0 holds" if zero_in_spikes(edges, spikes) and s.get("zero_fraction") else "spikes hold"
        ax.annotate(f"{what} {100 * share:.1f}%\nof all values (clipped)", xy=(x_peak, cap),
                    xytext=(0.97, 0.97), textcoords="axes fraction", ha="right", va="top", fontsize=STATS_SIZE - 1,
                    arrowprops=dict(arrowstyle="->", lw=0.7, color="0.3"))
    else:
        ax.set_ylim(0, None)
    ax.set_ylabel("density")


def plot_activation_histograms(panels: Sequence[tuple[str, Mapping[str, Any]]], path: str, title: str,
                               standardize: bool = False, colors_: Sequence[str] | None = None) -> str:
    """Figure 3: one column per (label, stats) panel; the top row has linear densities, the bottom row log."""
    n = len(panels)
    palette = colors_ or ["tab:blue", "tab:orange"] * n
    fig, axes = plt.subplots(2, n, figsize=(max(4.1 * n + 0.6, 10.0), 7.6), squeeze=False, constrained_layout=True)
    for j, (label, s) in enumerate(panels):
        for i, log in enumerate((False, True)):
            draw_distribution(axes[i, j], s, log=log, standardize=standardize, color=palette[j],
                              show_stats=(i == 0), label=label.split(": ", 1)[-1])
        axes[0, j].set_title(label, fontsize=10)
    _figure_legend(fig, axes[0])
    fig.suptitle(title, fontsize=12)
    return save(fig, path)


def _figure_legend(fig, axes) -> None:
    """One legend below the figure with every colour of the panels `axes` (each label once)."""
    found: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    # 10 pt: these figures are up to 2,200 px wide, shown at about half that
    fig.legend(list(found.values()), list(found), loc="outside lower center", ncols=min(len(found), 4),
               fontsize=10, frameon=False)


def plot_distribution_grid(grid: Sequence[Sequence[tuple[str, Mapping[str, Any] | None]]], path: str, title: str,
                           *, column_colors: Sequence[str] | None = None, max_z: float = 15.0) -> str:
    """Rows of panels (e.g. layers) by columns (e.g. networks), each a standardised distribution on a log
    density axis with N(0, 1) over it: every panel then has the same reference parabola, and the panels of
    a row share both axes so that their shapes compare directly. x stops at `max_z` standard deviations.
    A None stats entry leaves the panel empty with a note.
    """
    rows, cols = len(grid), max(len(r) for r in grid)
    palette = column_colors or ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols + 0.4, 3.9 * rows + 0.9), squeeze=False,
                             constrained_layout=True)
    for i, row in enumerate(grid):
        present = [s for _, s in row if s is not None and s.get("std")]
        z = [((s["histogram"]["lo"] - s["mean"]) / s["std"], (s["histogram"]["hi"] - s["mean"]) / s["std"])
             for s in present]
        xlim = (max(min(a for a, _ in z), -max_z), min(max(b for _, b in z), max_z)) if z else None
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(row) or row[j][1] is None:
                ax.set_axis_off()
                if j < len(row):
                    ax.text(0.5, 0.5, f"{row[j][0]}\n(not available)", ha="center", va="center",
                            transform=ax.transAxes)
                continue
            label, s = row[j]
            draw_distribution(ax, s, log=True, standardize=True, color=palette[j % len(palette)], xlim=xlim,
                              label=label.split(", ", 1)[-1])
            ax.set_title(label, fontsize=10)
        ylims = [ax.get_ylim() for ax in axes[i] if ax.axison and ax.get_yscale() == "log"]
        if ylims:
            for ax in axes[i]:
                if ax.axison:
                    ax.set_ylim(min(a for a, _ in ylims), max(b for _, b in ylims))
    _figure_legend(fig, axes[0])
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
    cmap = matplotlib.colormaps[SEQUENTIAL].with_extremes(bad="white")  # NaN gaps between maps
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
            # Square-root colour scale: conv2 maps are mostly zeros with a few strong spots, and on a
            # linear scale their weaker (but non-zero) responses would be invisible.
            last = ax.imshow(map_mosaic(maps[i] / peak if peak > 0 else maps[i], mrows), cmap=cmap,
                             norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
            _clean_axis(ax)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_xlabel(f"max {peak:.2f}", fontsize=7, labelpad=1)
            if i == 0:
                ax.set_title(label, fontsize=9)
    if last is not None:
        middle = slice(max(0, n // 2 - 2), min(n, n // 2 + 2)) if n > 4 else slice(0, n)
        bar = fig.colorbar(last, cax=fig.add_subplot(gs[middle, -1]))
        bar.set_label("activation / largest activation of the layer\nfor that image (square-root scale)", fontsize=9)
        bar.set_ticks([0, 0.05, 0.25, 0.5, 1])
    fig.suptitle(title, fontsize=12)
    return save(fig, path, dpi=110)
