"""The report's Part 2 (`--task deconv`): the deconvnet's settings and the captions of its figures."""
from __future__ import annotations

import os

from common.document import Block, Para
from common.outputs import read_json
from common.report import Section, fixed_caption, generic_caption, machine
from deconv.experiment import FIG_LAYER, FIG_OCCLUSION, TOPK_JSON, DeconvSettings

DECONV_KEY = "deconv"  # the task, and its folder under the results root
LAYERS = DeconvSettings().layers  # the layers the task shows by default: one figure each


def deconv_blocks(root: str) -> list[Block]:
    """What the figures show, then the settings recorded in topk.json."""
    blocks: list[Block] = [Para(
        "Zeiler & Fergus's deconvnet on the trained LeNet5: for each filter of each conv layer, the images that "
        "activate it most strongly, and those activations projected back to pixel space through ReLU, "
        "unpooling with the max-pool switches and transposed convolutions.")]
    topk = read_json(os.path.join(root, DECONV_KEY, TOPK_JSON))
    if topk:
        blocks.append(Para(
            f"Settings (`{DECONV_KEY}/{TOPK_JSON}`): top-{topk.get('top_k')} over the {topk.get('split')} split "
            f"({topk.get('split_size')} images of {topk.get('data_source')}), rule `{topk.get('mode')}`, batch "
            f"norm passed back by `{topk.get('bn')}`, checkpoint `{topk.get('checkpoint')}`; "
            f"{machine(topk.get('environment'))}."))
    return blocks


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
            "receptive field.")),
        (_in_folder(FIG_LAYER.format(layer="conv2")), fixed_caption(
            "The same for each conv2 filter: projections of its strongest activations beside their image patches "
            "(receptive fields).")),
        (_in_folder(FIG_LAYER.format(layer="*")), lambda p: "Deconvnet projections: " + generic_caption(p)),
        (_in_folder(FIG_OCCLUSION.replace(".png", "*.png")), fixed_caption(
            "Occlusion sensitivity: how the correct class's probability falls as a grey square covers each part "
            "of the image.")),
    ),
    blocks=deconv_blocks)
