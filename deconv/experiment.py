"""`python run.py --task deconv`: Zeiler & Fergus's deconvnet on the trained LeNet5 (report Part 2).

Loads the checkpoint that `--task lenet` wrote (`--checkpoint`, default results/lenet) and writes into `--out`
(default results/deconv):
  fig_deconv_conv1.png, fig_deconv_conv2.png   per filter: its top-k activations projected to pixel space
                                               (left 3x3) beside the image patches (right 3x3), both cropped
                                               to the layer's receptive field (5x5 and 14x14 pixels)
  topk.json                                    per layer and filter: values, image indices, labels, positions
                                               and receptive-field boxes of the top-k, plus every setting,
                                               so the figures can be redrawn
  fig_occlusion.png                            occlusion sensitivity of a few seeded test images

Data: the checkpoint's own data settings (same folder or TFDS dataset, image mode, validation holdout), except
where --data-dir / --tfds-data-dir point elsewhere. The search runs over the validation split (--split test
for the test split). Options: --layer, --filters, --top-k, --mode {deconvnet,guided,backprop}.

How the pass back through batch norm is done is `DeconvSettings.bn`: 'transpose' (default; multiply by the
BN scale gamma / sqrt(var + eps), the adjoint of BN's linear part, which makes 'backprop' the exact gradient)
or 'inverse' (divide by it, undoing the forward scaling); on the command line `--bn transpose|inverse`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import numpy as np

from common import data as data_lib
from common.core.errors import DataError, UserError
from common.run import results as results_lib
from common.runtime.outputs import environment_info
from deconv import figures, network, occlusion, ops
from lenet import checkpoint as lenet_checkpoint
from lenet.config import LeNetConfig
from lenet.model import create_model

TOPK_JSON = "topk.json"
FIG_LAYER = "fig_deconv_{layer}.png"
FIG_OCCLUSION = "fig_occlusion.png"
OCCLUSION_IMAGES = 4
OCCLUSION_SEED = 0
MODE_TEXT = {"deconvnet": "deconvnet (Zeiler & Fergus: ReLU of the signal)",
             "guided": "guided backprop (forward and signal gating)",
             "backprop": "plain backprop (the input gradient)"}


@dataclasses.dataclass(frozen=True)
class DeconvSettings:
    layers: tuple[str, ...] = ("conv1", "conv2")
    filters: tuple[int, ...] | None = None  # None: every filter of each layer
    top_k: int = 9
    split: str = "val"
    mode: str = "deconvnet"
    bn: str = "transpose"
    occlusion_images: int = OCCLUSION_IMAGES
    occlusion_layer: str = "conv2"

    def validate(self) -> DeconvSettings:
        if self.mode not in ops.RELU_MODES:
            raise UserError(f"unknown mode {self.mode!r}; choose from {', '.join(ops.RELU_MODES)}")
        if self.bn not in ("transpose", "inverse"):
            raise UserError(f"unknown batch-norm rule {self.bn!r}; choose 'transpose' or 'inverse'")
        if self.split not in ("val", "test"):
            raise UserError(f"unknown split {self.split!r}; choose 'val' or 'test'")
        if self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {self.top_k}")
        if not self.layers:
            raise UserError("no layer chosen; give --layer conv1, conv2 or conv1,conv2")
        return self


# ------------------------------------------------------------------------------------------- experiment


def deconv_experiment(config: LeNetConfig, variables: dict, dataset: data_lib.Dataset, out_dir: str,
                      settings: DeconvSettings, checkpoint: str = "", run_info: dict | None = None) -> dict:
    """Runs the search, the projections and the occlusion study; writes the figures into `out_dir` and
    returns the content of topk.json (the caller writes it)."""
    if config.use_batchnorm and config.bn_position != "before_pool":  # its steps undo BN, then the pooling
        raise UserError(f"the deconvnet follows the report's LeNet5 (batch norm before max-pooling); {checkpoint!r} "
                        f"was trained with batch norm {config.bn_position.replace('_', ' ')}")
    params = variables["params"]
    names = network.conv_names(params)
    filters = resolve_filters(params, settings)
    split = dataset.val if settings.split == "val" else dataset.test
    if len(split) == 0:
        raise DataError(f"the {settings.split} split is empty (validation fraction {config.data.val_fraction}); "
                        "use --split test")
    model = create_model(config, len(dataset.class_names))
    lenet_checkpoint.check_fits(model, variables, dataset, checkpoint)
    layers = tuple(filters)
    k = settings.top_k
    if k > len(split):
        print(f"deconv: the {settings.split} split has only {len(split)} images; keeping the top {len(split)} "
              f"instead of {k}", file=sys.stderr)
        k = len(split)
    timing = {}

    # 1. one jitted pass over the split: running top-k per filter of every layer
    t0 = time.perf_counter()
    top = network.top_activations(variables, data_lib.eval_batches(split, config.train.eval_batch_size), layers, k)
    timing["topk_search"] = time.perf_counter() - t0

    # 2. projections to pixel space, batched over (filter, rank), cropped to the receptive field
    rfs = network.conv_receptive_fields(params, split.images.shape[1:3])
    t0 = time.perf_counter()
    arrays = {}
    for layer in layers:
        network.check_box_fits(rfs[layer], split.images.shape[1:3])
        arrays[layer] = network.layer_arrays(variables, data_lib.to_float(split.images), top[layer], layer, rfs[layer],
                                             mode=settings.mode, bn=settings.bn, filters=filters[layer])
    timing["projections"] = time.perf_counter() - t0

    # 3. occlusion sensitivity on a few seeded test images
    t0 = time.perf_counter()
    occlusion_study = _occlusion_study(model, variables, dataset.test, settings, rfs, names)
    timing["occlusion"] = time.perf_counter() - t0

    # 4. figures
    t0 = time.perf_counter()
    written = _write_figures(out_dir, settings, k, split, top, arrays, filters, rfs, occlusion_study,
                             dataset.class_names)
    timing["figures"] = time.perf_counter() - t0

    # paths as the report writes them, relative to this folder or the results root: true when the results move
    return results_lib.readable(topk_summary(settings, k, layers, filters, top, rfs, split, dataset, timing,
                                             results_lib.portable_path(checkpoint, out_dir), run_info,
                                             occlusion_study["maps"], occlusion_study["picks"], written),
                                results_lib.results_root(out_dir))


def _occlusion_study(model, variables, test: data_lib.Split, settings: DeconvSettings, rfs, names) -> dict:
    """Occlusion maps of a few seeded test images, and where each one's chosen feature peaks, projected to
    pixels with the same rule: {'picks', 'maps' (None when there is no test image), 'images', 'labels',
    'projections', 'boxes'}."""
    layer = settings.occlusion_layer if settings.occlusion_layer in names else names[-1]
    picks = pick_occlusion_images(model, variables, test, settings.occlusion_images, OCCLUSION_SEED)
    if not len(picks):
        return {"picks": picks, "maps": None}
    imgs, labs = data_lib.to_float(test.images[picks]), test.labels[picks]
    occ = occlusion.occlusion_maps(model, variables, imgs, labs, layer=layer)
    rows, cols = occ["peak"][:, 0], occ["peak"][:, 1]
    projections = network.project(variables, imgs, occ["feature"], rows, cols, layer=layer, mode=settings.mode,
                                  bn=settings.bn)
    boxes = [ops.receptive_box(rfs[layer], int(r), int(c), imgs.shape[1:3]) for r, c in zip(rows, cols)]
    return {"picks": picks, "maps": occ, "images": imgs, "labels": labs, "projections": projections,
            "boxes": boxes}


def _write_figures(out_dir, settings: DeconvSettings, k, split, top, arrays, filters, rfs, occlusion_study,
                   class_names) -> list[str]:
    """One mosaic per layer and the occlusion figure; returns the file names written."""
    written = []
    split_text = f"{'validation' if settings.split == 'val' else 'test'} split ({len(split)} images)"
    for layer, f_ids in filters.items():
        a, rf, t = arrays[layer], rfs[layer], top[layer]
        path = os.path.join(out_dir, FIG_LAYER.format(layer=layer))
        ids = list(f_ids)
        marks = padding_dominated(inside_fractions(rf, t["row"][ids], t["col"][ids], t["image"][ids],
                                                   split.images.shape[1:3]))
        figures.plot_layer(
            a["projection"], a["patch"], f_ids, t["value"][ids, 0], path, marks=marks,
            title=f"LeNet5 {layer}: top-{k} activations per filter over the {split_text}",
            subtitle=(f"each block: left, the {k} activations projected to pixel space by {MODE_TEXT[settings.mode]}"
                      f", BN {settings.bn}; right, the image patches. Both cropped to the "
                      f"{rf.size[0]}x{rf.size[1]} receptive field (blue: outside the image; red frame: padding-"
                      f"dominated, {marks.sum()} of {marks.size}); projections stretched per tile, grey = 0."))
        written.append(os.path.basename(path))
    occ = occlusion_study["maps"]
    if occ is not None:
        path = os.path.join(out_dir, FIG_OCCLUSION)
        figures.plot_occlusion(occlusion_study["images"], occlusion_study["labels"], class_names, occ,
                               occlusion_study["projections"], occlusion_study["boxes"], path,
                               title=f"Occlusion sensitivity (Zeiler & Fergus Fig. 7): grey {occ['size']}x"
                                     f"{occ['size']} square centred on every pixel; seeded test images of "
                                     "different classes, correctly classified ones first")
        written.append(FIG_OCCLUSION)
    return written


PADDING_DOMINATED = 0.5  # a patch is padding-dominated when less than this share of its receptive field is image


def inside_fractions(rf, rows, cols, images, image_hw) -> np.ndarray:
    """Share of each top-k unit's receptive field that lies inside the image: rows, cols, images [F, k] (image
    -1: no activation, share NaN) -> [F, k] in [0, 1]. A unit in a corner of conv1 sees a 3x3 of its 5x5 field
    (0.36): the rest is the convolutions' zero padding."""
    rows, cols, images = (np.asarray(a) for a in (rows, cols, images))
    out = np.full(rows.shape, np.nan)
    for idx in np.ndindex(rows.shape):
        if images[idx] >= 0:
            r0, r1, c0, c1 = ops.receptive_box(rf, int(rows[idx]), int(cols[idx]), image_hw)
            out[idx] = (r1 - r0) * (c1 - c0) / (rf.size[0] * rf.size[1])
    return out


def padding_dominated(fractions: np.ndarray) -> np.ndarray:
    """[F, k] bool: most of the unit's receptive field is padding (see `inside_fractions`)."""
    return np.nan_to_num(fractions, nan=1.0) < PADDING_DOMINATED


def resolve_filters(params: dict, settings: DeconvSettings) -> dict[str, tuple[int, ...]]:
    """{layer: filter indices} for the chosen layers in network order; a UserError for a layer or filter
    this network does not have."""
    names = network.conv_names(params)
    bad = [name for name in settings.layers if name not in names]
    if bad:
        raise UserError(f"no layer {bad[0]!r} in this LeNet5; it has {', '.join(names)}")
    filters = {}
    for layer in (name for name in names if name in settings.layers):
        n_filters = int(params[layer]["kernel"].shape[-1])
        chosen = tuple(range(n_filters)) if settings.filters is None else tuple(settings.filters)
        missing = [f for f in chosen if f >= n_filters]
        if missing:
            raise UserError(f"filter {missing[0]} does not exist in {layer}, which has {n_filters} filters "
                            f"(0-{n_filters - 1})")
        filters[layer] = chosen
    return filters


def pick_occlusion_images(model, variables, test: data_lib.Split, n: int, seed: int) -> np.ndarray:
    """Indices of up to n test images of different classes, drawn with `seed` among the correctly classified
    ones (an occlusion map of a wrongly classified image has little to show), topped up with any others."""
    if n <= 0 or len(test) == 0:
        return np.zeros(0, np.int64)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    logits = np.concatenate(jax.device_get([apply(variables, b["image"]) for b in data_lib.eval_batches(test, 500)]))
    logits = logits[: len(test)]
    correct = logits.argmax(-1) == test.labels
    order = np.random.default_rng(seed).permutation(len(test))
    order = np.concatenate([order[correct[order]], order[~correct[order]]])
    picks, seen = [], set()
    for i in order:
        if test.labels[i] not in seen:
            picks.append(int(i))
            seen.add(int(test.labels[i]))
        if len(picks) == n:
            break
    return np.array(picks, np.int64)


def _layer_entry(t: dict, rf, filter_ids, split) -> dict:
    """topk.json's entry of one layer: its receptive field, dead filters, the padding-dominated share and, per
    filter, the top-k values, images, labels, positions, boxes and padding marks."""
    H, W = split.images.shape[1:3]
    fractions = inside_fractions(rf, t["row"], t["col"], t["image"], (H, W))
    marks = padding_dominated(fractions)
    entries = []
    for f in filter_ids:
        imgs = [int(i) for i in t["image"][f]]
        entries.append({
            "filter": int(f),
            "value": [float(v) if np.isfinite(v) else None for v in t["value"][f]],
            "image": imgs,
            "label": [int(split.labels[i]) if i >= 0 else None for i in imgs],
            "row": [int(v) for v in t["row"][f]],
            "col": [int(v) for v in t["col"][f]],
            "box": [list(ops.receptive_box(rf, int(r), int(c), (H, W))) if i >= 0 else None
                    for i, r, c in zip(imgs, t["row"][f], t["col"][f])],
            "inside_fraction": [None if np.isnan(v) else round(float(v), 4) for v in fractions[f]],
            "padding_dominated": [bool(v) for v in marks[f]],
        })
    found = [m for e in entries for m, i in zip(e["padding_dominated"], e["image"]) if i >= 0]
    return {
        "receptive_field": {"size": list(rf.size), "jump": list(rf.jump), "first": list(rf.first)},
        "dead_filters": [e["filter"] for e in entries if (e["value"][0] or 0.0) <= 0.0],
        "padding_dominated_fraction": float(np.mean(found)) if found else 0.0,
        "filters": entries,
    }


def topk_summary(settings, k, layers, filters, top, rfs, split, dataset, timing, checkpoint, run_info, occ,
                 picks, written) -> dict:
    """The content of topk.json."""
    layer_entries = {layer: _layer_entry(top[layer], rfs[layer], filters[layer], split) for layer in layers}
    summary = {
        "description": (f"Top-{k} activations per filter of each conv layer over the {settings.split} split. The "
                        "activation is the conv layer's output after ReLU, before batch norm; each image counts "
                        "once per filter (its strongest position). 'image' indexes the split as "
                        "common.data.load_dataset returns it, 'row'/'col' the position in the layer's map, "
                        "'box' the receptive field in the image as (r0, r1, c0, c1), half-open, clipped; "
                        "'inside_fraction' the share of the receptive field inside the image, 'padding_dominated' "
                        f"true when it is below {PADDING_DOMINATED} (the patch is mostly zero padding)."),
        "checkpoint": checkpoint or None,  # relative to this file's folder (results.portable_path)
        "data_source": dataset.source,
        "split": settings.split,
        "split_size": len(split),
        "top_k": k,
        "mode": settings.mode,
        "bn": settings.bn,
        "start_signal": "single strongest activation (others zeroed)",
        "class_names": list(dataset.class_names),
        "layers": layer_entries,
        "figures": written,
        "timing_seconds": {key: round(v, 2) for key, v in timing.items()},
        "environment": environment_info(),
    }
    if run_info:
        summary["checkpoint_config"] = run_info.get("config")
    if occ is not None:
        summary["occlusion"] = {
            "test_images": [int(i) for i in picks],
            "labels": [int(dataset.test.labels[i]) for i in picks],
            "square": occ["size"], "stride": occ["stride"], "grey_value": occ["value"], "layer": occ["layer"],
            "feature": [int(f) for f in occ["feature"]],
            "clean_true_prob": [float(p) for p in occ["clean_prob"]],
            "min_true_prob": [float(p) for p in occ["true_prob"].min(axis=(1, 2))],
        }
    return summary
