"""The report's Part 2 (`--task deconv`): the deconvnet's settings, what its figures show beside Zeiler & Fergus's
layer-1 and layer-2 findings, the padding-dominated patches, its claim line and the captions of its figures."""
from __future__ import annotations

import os

from common import report
from common.report import NOT_JUDGED, Claim, Section, fixed_caption, generic_caption, machine
from common.report.document import Block, Para
from deconv.experiment import FIG_LAYER, FIG_OCCLUSION, PADDING_DOMINATED, TOPK_JSON, DeconvSettings
from lenet.config import LeNetConfig
from lenet.report import lenet_shrunk

DECONV_KEY = "deconv"  # the task, and its folder under the results root
LAYERS = DeconvSettings().layers  # the layers the task shows by default: one figure each
ZF_FINDINGS = {  # what Zeiler & Fergus found, as the assignment summarises it
    "conv1": "edges of various frequencies and colours, or patches of one solid colour",
    "conv2": "combinations of layer-1 structures (parallel lines, blobs, circles)",
}


def read_topk(root: str) -> dict:
    return report.read_json(os.path.join(root, DECONV_KEY, TOPK_JSON)) or {}


def padding_shares(topk: dict) -> dict[str, float]:
    """{layer: share of its top-k patches that are padding-dominated} (topk.json's padding_dominated_fraction)."""
    return {layer: entry["padding_dominated_fraction"] for layer, entry in (topk.get("layers") or {}).items()
            if entry.get("padding_dominated_fraction") is not None}


def model_text(root: str, topk: dict) -> str:
    """'The network: `lenet/`, 2 epochs (the assignment's: 25), test accuracy 0.158 (seed 0's model, its
    best-validation epoch 2).' from the checkpoint's metrics.json; '' when it is not under the root."""
    folder = report.recorded_path(root, DECONV_KEY, topk.get("checkpoint")).rstrip("/")
    m = report.read_json(os.path.join(root, folder, report.METRICS_JSON)) if not os.path.isabs(folder) else None
    if not m:
        return ""
    acc = (m.get("test_accuracy_per_model") or [m.get("test_accuracy")])[0]
    epoch = m.get("selected_epoch")
    epoch = epoch[0] if isinstance(epoch, list) else epoch
    full = LeNetConfig().train.epochs
    shrunk = (m.get("epochs") or 0) < full
    epochs = m.get("epochs")
    size = f"{epochs} epoch{'' if epochs == 1 else 's'}" + (f" (the assignment's: {full}; a shrunk model)"
                                                          if shrunk else "")
    return (f"The network shown: LeNet5 of `{folder}/`, trained {size}, test accuracy "
            f"{report.fmt_acc(acc)} (seed 0's model, its best-validation epoch {epoch})"
            + ("; a barely trained network has filters and projections to match." if shrunk else "."))


def deconv_blocks(root: str) -> list[Block]:
    """What the figures show beside the paper, the padding-dominated share, then the settings."""
    blocks: list[Block] = [Para(
        "Zeiler & Fergus's deconvnet on the trained LeNet5 (the first seed's model, seed 0): for each filter of "
        "each conv layer, the images that activate it most strongly, and those activations projected back to pixel "
        "space through ReLU, unpooling with the max-pool switches and transposed convolutions. The paper found "
        f"layer 1 to detect {ZF_FINDINGS['conv1']}, layer 2 {ZF_FINDINGS['conv2']}; compare the conv1 and conv2 "
        "figures below. LeNet5's conv1 sees a 5x5 patch of a 28x28 grey image and conv2 a 14x14 one, far smaller "
        "than the paper's ImageNet layers, so only layer-1/layer-2 kinds of structure can appear.")]
    topk = read_topk(root)
    shares = padding_shares(topk)
    described = model_text(root, topk) if topk else ""
    if described:
        blocks.append(Para(described, "finding"))
    if shares:
        blocks.append(Para(
            "Padding: a top-9 patch whose receptive field lies mostly outside the image (less than "
            f"{PADDING_DOMINATED:.0%} of it inside: the units at the corners, whose input is mostly the convolutions' "
            "zero padding) is framed in red in the figures and marked `padding_dominated` in "
            f"`{DECONV_KEY}/{TOPK_JSON}`: " + ", ".join(f"{layer} {share:.0%} of its top-{topk.get('top_k')} patches"
                                                        for layer, share in shares.items())
            + ". Such a filter responds to the image's border, not to a structure inside it.", "finding"))
    if topk:
        checkpoint = report.recorded_path(root, DECONV_KEY, topk.get("checkpoint"))
        blocks.append(Para(
            f"Settings (`{DECONV_KEY}/{TOPK_JSON}`): top-{topk.get('top_k')} over the {topk.get('split')} split "
            f"({topk.get('split_size')} images of {topk.get('data_source')}), rule `{topk.get('mode')}`, batch "
            f"norm passed back by `{topk.get('bn')}`, checkpoint `{checkpoint}`; "
            f"{machine(topk.get('environment'))}."))
    return blocks


def deconv_claims(root: str, command: str) -> list[Claim]:
    """Part 2's claim line: the paper's layer-1/layer-2 findings are visual, so the report shows the figures and
    the padding-dominated share and leaves the judgement to the reader (said so)."""
    topk = read_topk(root)
    shares = padding_shares(topk)
    measured = ("missing" + (f": run `{command}`" if command else "") if not topk else
                "padding-dominated top-9 patches: " + ", ".join(f"{layer} {v:.0%}" for layer, v in shares.items())
                if shares else "figures only")
    verdict = (NOT_JUDGED if lenet_shrunk(root, ("lenet",)) else
               "not judged: a visual claim with no number; compare the conv1 and conv2 figures of Part 2")
    return [Claim("2", "layer 1 detects edges and solid colours, layer 2 combinations of them (Zeiler & Fergus)",
                  measured, "visual (no number)", verdict if topk else "n/a")]


def _in_folder(name: str) -> str:
    return f"{DECONV_KEY}/{name}"


DECONV_SECTION = Section(
    key=DECONV_KEY, title="Part 2: Visualizing and understanding (deconvnet)", anchor="part-2",
    required=("*.png", TOPK_JSON),
    expected=tuple(FIG_LAYER.format(layer=layer) for layer in LAYERS) + (FIG_OCCLUSION,),
    captions=(
        (_in_folder(FIG_LAYER.format(layer="conv1")), fixed_caption(
            "Deconvnet (Zeiler & Fergus): for each conv1 filter, its strongest activations projected back to pixel "
            "space (left) beside the image patches that caused them (right), both cropped to the filter's "
            "receptive field; red frame: a padding-dominated patch.")),
        (_in_folder(FIG_LAYER.format(layer="conv2")), fixed_caption(
            "The same for each conv2 filter: projections of its strongest activations beside their image patches "
            "(receptive fields); red frame: a padding-dominated patch.")),
        (_in_folder(FIG_LAYER.format(layer="*")), lambda p: "Deconvnet projections: " + generic_caption(p)),
        (_in_folder(FIG_OCCLUSION.replace(".png", "*.png")), fixed_caption(
            "Occlusion sensitivity: how the true class's probability falls as a grey square covers each part "
            "of the image (each map on its own colour range); '(correct)' marks an image whose most probable class "
            "is the true one, beside its probability; the network and its accuracy: the text above.")),
    ),
    blocks=deconv_blocks, claims=deconv_claims)
