"""Figures of the deconvnet experiment, in the style of Zeiler & Fergus (2014), Figure 2.

Per conv layer, one mosaic: for every filter a block with the top-k projections (left grid) beside the image
patches that produced them (right grid), all cropped to the layer's receptive field. The whole layer is drawn
as one image at an integer zoom, so every pixel of a tile is the same size and nothing is resampled.

Display conventions:
  * a projection is signed; each tile is stretched on its own, symmetrically: value / max|value| of that tile
    mapped to [0, 1], so zero is mid-grey (the paper's per-tile contrast normalisation);
  * patches are the input pixels as they are ([0, 1]);
  * cells of a receptive field that fall outside the image (units at the border) are drawn in OUTSIDE.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.report.plotting import save  # noqa: E402

BACKGROUND = np.array([1.0, 1.0, 1.0])  # separators and margins
OUTSIDE = np.array([0.80, 0.87, 0.96])  # receptive-field cells outside the image
EMPTY = np.array([0.93, 0.93, 0.93])  # top-k slots with no activation (split smaller than k)
DPI = 100


def grid_shape(k: int) -> tuple[int, int]:
    """Rows and columns of the grid of k tiles: 9 -> 3 x 3, as square as possible."""
    cols = math.ceil(math.sqrt(k))
    return math.ceil(k / cols), cols


def stretch_symmetric(tiles: np.ndarray) -> np.ndarray:
    """Signed tiles [..., h, w, C] -> [..., h, w, C] in [0, 1]: 0.5 + 0.5 * v / max|v| per tile (NaN kept;
    an all-zero tile is uniform grey)."""
    peak = np.nanmax(np.abs(np.nan_to_num(tiles, nan=0.0)), axis=(-3, -2, -1), keepdims=True)
    return 0.5 + 0.5 * tiles / np.where(peak > 0, peak, 1.0)


def to_rgb(tiles: np.ndarray, empty: np.ndarray | None = None) -> np.ndarray:
    """Tiles [..., h, w, C] in [0, 1] (C = 1 or 3, NaN = outside the image) -> RGB [..., h, w, 3]."""
    rgb = np.repeat(tiles, 3, axis=-1) if tiles.shape[-1] == 1 else tiles[..., :3]
    outside = np.isnan(rgb).any(axis=-1, keepdims=True)
    rgb = np.where(outside, OUTSIDE, np.clip(rgb, 0.0, 1.0))
    if empty is not None:  # [...] bool: the whole tile is missing
        rgb = np.where(empty[..., None, None, None], EMPTY, rgb)
    return rgb


def tile_grid(tiles: np.ndarray, cols: int, gap: int) -> np.ndarray:
    """RGB tiles [k, h, w, 3] -> one RGB image of ceil(k / cols) rows, `gap` background pixels between."""
    k, h, w, _ = tiles.shape
    rows = math.ceil(k / cols)
    out = np.tile(BACKGROUND, (rows * (h + gap) - gap, cols * (w + gap) - gap, 1))
    for i in range(k):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return out


def layer_mosaic(projections: np.ndarray, patches: np.ndarray, per_row: int, *, tile_gap: int = 1,
                 mid_gap: int = 3, block_gap: int = 4, label_band: int = 8):
    """Builds the layer image.

    projections, patches: [F, k, h, w, C] (NaN = outside the image / no activation). Returns (mosaic
    [H, W, 3], label anchors [(x, y)] per filter: centre above each block, in mosaic pixels, block_width).
    """
    F, k = projections.shape[:2]
    _, gcols = grid_shape(k)
    empty = np.all(np.isnan(patches), axis=(2, 3, 4))  # [F, k]
    proj_rgb = to_rgb(stretch_symmetric(projections), empty)
    patch_rgb = to_rgb(patches, empty)
    blocks = [np.concatenate([tile_grid(proj_rgb[f], gcols, tile_gap),
                              np.tile(BACKGROUND, (tile_grid(proj_rgb[f], gcols, tile_gap).shape[0], mid_gap, 1)),
                              tile_grid(patch_rgb[f], gcols, tile_gap)], axis=1) for f in range(F)]
    bh, bw = blocks[0].shape[:2]
    n_rows = math.ceil(F / per_row)
    cols = min(per_row, F)
    H = n_rows * (label_band + bh) + (n_rows - 1) * block_gap
    W = cols * bw + (cols - 1) * block_gap
    mosaic = np.tile(BACKGROUND, (H, W, 1))
    anchors = []
    for f, block in enumerate(blocks):
        r, c = divmod(f, per_row)
        y = r * (label_band + bh + block_gap) + label_band
        x = c * (bw + block_gap)
        mosaic[y:y + bh, x:x + bw] = block
        anchors.append((x + bw / 2, y - label_band / 2))
    return mosaic, anchors, bw


def patch_tile_origin(anchor: tuple[float, float], block_width: int, label_band: int, k: int, i: int, rf: int,
                      tile_gap: int = 1) -> tuple[int, int]:
    """(x, y) in mosaic pixels of the top-left of image patch i of the block labelled at `anchor` (its
    layer_mosaic anchor): the right-hand grid of the block."""
    _, gcols = grid_shape(k)
    x0 = anchor[0] - block_width / 2 + block_width - (gcols * rf + (gcols - 1) * tile_gap)
    y0 = anchor[1] + label_band / 2
    r, c = divmod(i, gcols)
    return int(round(x0)) + c * (rf + tile_gap), int(round(y0)) + r * (rf + tile_gap)


DISPLAY_WIDTH = 1180  # screen pixels the report's column shows a figure at without shrinking it
MIN_TILE = 24  # screen pixels of one receptive-field tile, at the least
MARK = "#d01c1c"  # the frame of a padding-dominated patch


def layer_zoom(rf: int, k: int) -> tuple[int, int]:
    """(integer zoom, blocks per row) for receptive fields of `rf` pixels and top-k grids: every tile at
    least MIN_TILE screen pixels, the figure at most DISPLAY_WIDTH wide (so it is shown unshrunk)."""
    _, gcols = grid_shape(k)
    zoom = max(2, math.ceil(MIN_TILE / rf))
    block = 2 * (gcols * rf + gcols - 1) + 3
    gap = max(2, math.ceil(24 / zoom))
    return zoom, max(1, (DISPLAY_WIDTH // zoom + gap) // (block + gap))


def plot_layer(projections: np.ndarray, patches: np.ndarray, filter_ids: Sequence[int], top_values: np.ndarray,
               path: str, title: str, subtitle: str, per_row: int | None = None,
               marks: np.ndarray | None = None) -> str:
    """The paper-style figure of one layer (see the module docstring), drawn at its display size: tiles of at
    least MIN_TILE screen pixels, at most DISPLAY_WIDTH wide, as many rows of blocks as that takes.

    projections, patches: [F, k, h, w, C]; filter_ids [F]; top_values [F] (each filter's strongest
    activation, printed beside its number); marks [F, k] bool: patches framed in MARK (padding-dominated).
    """
    rf, k = projections.shape[2], projections.shape[1]
    zoom, fit = layer_zoom(rf, k)
    per_row = per_row or fit
    label_band = math.ceil(20 / zoom)
    mosaic, anchors, bw = layer_mosaic(projections, patches, per_row, label_band=label_band,
                                       block_gap=max(2, math.ceil(24 / zoom)))
    h, w = mosaic.shape[:2]
    fig_w = max(w * zoom + 20, 900)
    lines = textwrap.wrap(subtitle, width=int(fig_w / 8.6))  # at most ~8 screen pixels a character at 10.5 pt
    head, foot = 44 + 17 * len(lines), 10  # screen pixels for the title lines and the bottom margin
    fig_h = h * zoom + head + foot
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    ax = fig.add_axes([10 / fig_w, foot / fig_h, w * zoom / fig_w, h * zoom / fig_h])
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for fid, value, (x, y) in zip(filter_ids, top_values, anchors):
        ax.text(x, y, f"filter {fid}   max {value:.2f}" if np.isfinite(value) else f"filter {fid}",
                ha="center", va="center", fontsize=10)
    if marks is not None:
        for f, i in zip(*np.nonzero(marks)):
            x, y = patch_tile_origin(anchors[f], bw, label_band, k, int(i), rf)
            # unclipped: a frame sits half a pixel outside its tile, past the image at the mosaic's right edge
            ax.add_patch(plt.Rectangle((x - 1, y - 1), rf + 1, rf + 1, fill=False, ec=MARK, lw=1.6, clip_on=False))
    fig.text(0.5, 1 - 22 / fig_h, title, ha="center", va="center", fontsize=15, weight="bold")
    fig.text(0.5, 1 - 40 / fig_h, "\n".join(lines), ha="center", va="top", fontsize=10.5)
    return save(fig, path, dpi=DPI)


def _true_prob_panel(fig, ax, prob: np.ndarray, name: str) -> None:
    """p(true class) against occluder position on the map's own range: on a fixed 0-1 scale a map between
    0.02 and 0.1 is one dark square."""
    lo, hi = float(np.min(prob)), float(np.max(prob))
    im = ax.imshow(prob, cmap="magma", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.85).set_label("this image's own range", fontsize=8)
    ax.set_title(f"p({name}) vs. occluder centre", fontsize=9)


def plot_occlusion(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], maps: dict,
                   projections: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], path: str, title: str) -> str:
    """Zeiler & Fergus Figure 7 for a few images: one row per image.

    Columns: the image (with the occluder drawn at one position), the total activation of the strongest
    `maps['layer']` feature map against occluder position, that feature's strongest activation projected to
    pixels (its receptive field boxed), the true-class probability against occluder position, the most
    probable class against occluder position.
    images [n, H, W, C]; labels [n]; projections [n, H, W, C]; boxes (r0, r1, c0, c1) per image.
    """
    n = len(images)
    fig, axes = plt.subplots(n, 5, figsize=(16, 3.1 * n + 0.9), squeeze=False, constrained_layout=True)
    size = maps["size"]
    cmap_cls = matplotlib.colormaps["tab10"]
    for i in range(n):
        img = images[i]
        gray = img.shape[-1] == 1
        show = dict(cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
        a = axes[i]
        a[0].imshow(img[..., 0] if gray else img, **show)
        # one example occluder position, so the reader sees the square's size
        r = c = img.shape[0] // 2
        a[0].add_patch(plt.Rectangle((c - size // 2 - 0.5, r - size // 2 - 0.5), size, size,
                                     fc=(0.5, 0.5, 0.5), ec="yellow", lw=1.2))
        pred = int(maps["clean_pred"][i])
        verdict = "correct" if pred == labels[i] else f"predicted {class_names[pred]}"
        a[0].set_title(f"{class_names[labels[i]]} ({verdict}), p(true) = {maps['clean_prob'][i]:.2f}\n"
                       f"grey {size}x{size} square (one position)", fontsize=9)
        im = a[1].imshow(maps["feature_total"][i], cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=a[1], shrink=0.85)
        a[1].set_title(f"{maps['layer']} filter {maps['feature'][i]}: total activation\n"
                       "vs. occluder centre", fontsize=9)
        proj = projections[i]
        peak = np.max(np.abs(proj)) or 1.0
        pv = 0.5 + 0.5 * proj / peak
        if gray:  # a diverging palette, so the projection is not read as the grey image (white: zero)
            a[2].imshow(pv[..., 0], cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
        else:
            a[2].imshow(np.clip(pv, 0, 1), **show)
        r0, r1, c0, c1 = boxes[i]
        a[2].add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False,
                                     ec="black" if gray else "red", lw=1.2))
        a[2].set_title(f"filter {maps['feature'][i]}'s top activation in pixels\n(box: its receptive field"
                       + ("; red +, blue -)" if gray else ")"), fontsize=9)
        _true_prob_panel(fig, a[3], maps["true_prob"][i], class_names[labels[i]])
        top = maps["top_class"][i]
        a[4].imshow(top, cmap=cmap_cls, vmin=-0.5, vmax=9.5, interpolation="nearest")
        present = [int(v) for v in np.unique(top)]
        handles = [plt.Rectangle((0, 0), 1, 1, color=cmap_cls(v)) for v in present]
        a[4].legend(handles, [class_names[v] for v in present], fontsize=9, loc="center left",
                    bbox_to_anchor=(1.0, 0.5), frameon=False)
        a[4].set_title("most probable class vs. occluder centre", fontsize=9)
        for ax in a:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    return save(fig, path, dpi=110)
