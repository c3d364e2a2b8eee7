"""Occlusion sensitivity (Zeiler & Fergus 2014, section 4.2 and Figure 7), batched.

A grey square is slid over the image, centred on every `stride`-th pixel, and for every position the real
LeNet5 (`lenet.model.LeNet5`, inference mode) gives the probability of the true class, the most probable class
and the total activation (sum over the map) of one conv feature map: the one with the strongest single
activation in the unoccluded image. All positions of one image go through the network in one jitted call.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

OCCLUDER_SIZE = 7  # a quarter of the 28-pixel image side: large enough to hide a part (wheel, head, wing)
OCCLUDER_VALUE = 0.5  # mid-grey in the [0, 1] pixel scale the model was trained on
STRIDE = 1


def occluder_masks(image_hw: tuple[int, int], size: int = OCCLUDER_SIZE, stride: int = STRIDE) -> np.ndarray:
    """Boolean masks [Ph, Pw, H, W] of a size x size square centred on pixel (i * stride, j * stride).

    Squares near the border are clipped by the image (they stay centred on the pixel, so the maps line up
    with the image). Even sizes extend one pixel further up/left of the centre.
    """
    H, W = image_hw
    if not 1 <= size <= min(H, W):
        raise ValueError(f"occluder size must be in [1, {min(H, W)}], got {size}")
    cr, cc = np.arange(0, H, stride), np.arange(0, W, stride)
    lo = size // 2
    rows = np.arange(H)[None, :] - (cr[:, None] - lo)  # [Ph, H]: offset of each row inside the square
    cols = np.arange(W)[None, :] - (cc[:, None] - lo)
    in_r, in_c = (rows >= 0) & (rows < size), (cols >= 0) & (cols < size)
    return in_r[:, None, :, None] & in_c[None, :, None, :]


def _occlusion_one(model, feature_key: str, variables, image, label, masks, value):
    """image [H, W, C], label int, masks [P, H, W] ->
    (true-class prob [P], argmax class [P], feature total [P], feature index, clean true-class prob,
    clean predicted class, (row, col) of the feature's strongest activation in the clean map)."""
    def forward(x):
        logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        return jax.nn.softmax(logits), state["intermediates"][feature_key][0]

    probs0, acts0 = forward(image[None])
    feature = jnp.argmax(jnp.max(acts0[0], axis=(0, 1)))  # strongest single activation in the clean image
    occluded = jnp.where(masks[..., None], jnp.asarray(value, image.dtype), image[None])  # [P, H, W, C]
    probs, acts = forward(occluded)
    total = jnp.sum(acts[..., feature], axis=(1, 2))
    peak = jnp.argmax(acts0[0, :, :, feature].reshape(-1))
    peak_rc = jnp.stack([peak // acts0.shape[2], peak % acts0.shape[2]])
    return (probs[:, label], jnp.argmax(probs, axis=-1), total, feature, probs0[0, label], jnp.argmax(probs0[0]),
            peak_rc)


def occlusion_maps(model, variables, images: np.ndarray, labels: np.ndarray, layer: str = "conv2",
                   size: int = OCCLUDER_SIZE, stride: int = STRIDE, value: float = OCCLUDER_VALUE) -> dict:
    """Occlusion maps for each image of images [n, H, W, C] with true labels [n].

    Returns numpy arrays: 'true_prob' [n, Ph, Pw] (probability of the true class with the square centred
    there), 'top_class' [n, Ph, Pw] (most probable class), 'feature_total' [n, Ph, Pw] (sum of the chosen
    `layer` map, after ReLU), 'feature' [n] (that map's index), 'clean_prob' [n] (true-class probability of
    the unoccluded image), 'clean_pred' [n] (its predicted class), 'peak' [n, 2] (row, col of the feature's
    strongest activation in the unoccluded image, in the layer's map), plus the settings.
    `model` must sow '<layer>_pre_bn' (LeNet5 does).
    """
    masks4 = occluder_masks(images.shape[1:3], size, stride)
    ph, pw = masks4.shape[:2]
    masks = jnp.asarray(masks4.reshape(ph * pw, *images.shape[1:3]))
    # compiled once per call, then reused for every image (same shapes)
    fn = jax.jit(functools.partial(_occlusion_one, model, f"{layer}_pre_bn"))
    outs = [jax.device_get(fn(variables, jnp.asarray(img), int(lab), masks, value))
            for img, lab in zip(images, labels)]
    grid = lambda i: np.stack([np.asarray(o[i]).reshape(ph, pw) for o in outs])
    return {"true_prob": grid(0), "top_class": grid(1), "feature_total": grid(2),
            "feature": np.array([int(o[3]) for o in outs]), "clean_prob": np.array([float(o[4]) for o in outs]),
            "clean_pred": np.array([int(o[5]) for o in outs]),
            "peak": np.array([np.asarray(o[6]) for o in outs], np.int64).reshape(-1, 2),
            "size": size, "stride": stride, "value": value, "layer": layer}
