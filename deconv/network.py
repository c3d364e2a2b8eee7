"""The trained LeNet5 seen by the deconvnet: a forward record of what the way back needs, the streaming
top-k search, batched projections to pixel space and receptive-field crops.

The forward values come from `lenet.model.LeNet5` itself: `forward_record` applies the module once in
inference mode and reads what it sows, so nothing of its forward pass is re-implemented here:

    x -> conv_i (+ bias) -> h_i -> ReLU -> a_i -> BN_i (inference) -> b_i -> max-pool -> p_i -> conv_{i+1} ...
         h_i: 'pre_relu' conv{i}_pre_relu; a_i, b_i, p_i: 'intermediates' conv{i}_pre_bn, conv{i}_bn, conv{i}_pool

From those it builds the deconvnet's steps: the layer's kernel (ConvStep), h_i (ReluStep), the BN scale from
the module's parameters, statistics and `LeNet5.BN_EPSILON` (BatchNormStep), and the pooling switches, the
argmax positions of b_i (or a_i without batch norm) that LeNet5's reshape + max pool does not report
(PoolStep). The geometry (kernel, stride, padding, pool size) is LeNet5's class constants.

The activation searched and projected for layer `conv_i` is `a_i`: the rectified feature map, after ReLU and
before batch norm, as in Zeiler & Fergus (whose layers are conv -> ReLU -> pool). Going back from `a_i` the
deconvnet passes through (in reverse) ReLU_i, conv_i^T, then for each earlier layer: unpool (switches), BN^T,
ReLU, conv^T. `tests/test_deconv_experiment.py` checks every projection mode against `jax.vjp` through
`LeNet5` itself.

Under `jax.jit` (the top-k search and the projector) XLA drops the parts of the module's pass that nothing
uses (the fc layers, and the conv layers above `upto`), so running the whole module costs nothing extra.

Shapes: images are NHWC `[B, H, W, C]` (28x28x1 for the course's gray28 CIFAR10); conv_i maps are
`[B, H_i, W_i, F_i]` (28x28x32 and 14x14x64).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deconv import ops
from lenet.config import LeNetConfig
from lenet.model import LeNet5, create_model


def conv_names(params: dict) -> list[str]:
    """'conv1', 'conv2', ... in network order (conv10 after conv2)."""
    return sorted((n for n in params if n.startswith("conv") and n[4:].isdigit()), key=lambda n: int(n[4:]))


def geometry(params: dict) -> tuple[ops.LayerGeom, ...]:
    """The layer geometry of this LeNet5 for `ops.receptive_field`, from LeNet5's own constants: per conv
    layer, the conv (LeNet5.KERNEL, STRIDE, PADDING) then the POOL x POOL / POOL max-pool."""
    layers = []
    for i, name in enumerate(conv_names(params), start=1):
        layers += [ops.LayerGeom(LeNet5.KERNEL, LeNet5.STRIDE, LeNet5.PADDING, name),
                   ops.LayerGeom(LeNet5.POOL, LeNet5.POOL, "VALID", f"pool{i}")]
    return tuple(layers)


def conv_receptive_fields(params: dict, image_hw) -> dict[str, ops.RFGeom]:
    """{conv name: RFGeom of that conv layer's units (before its pooling)}."""
    return {g.name: g for g in ops.receptive_field(geometry(params), image_hw) if g.name.startswith("conv")}


def lenet_for(params: dict) -> LeNet5:
    """The LeNet5 these parameters belong to (`lenet.model.create_model`): layer widths read off the weights,
    batch norm if it has bn layers, placed before pooling as the deconvnet's steps assume. Dropout and the
    initialisers keep the report's values: inference does not use them."""
    width = lambda name: int(params[name]["kernel"].shape[-1])
    config = LeNetConfig.create(features=tuple(width(n) for n in conv_names(params)), hidden=width("fc1"),
                                use_batchnorm="bn1" in params)
    return create_model(config, num_classes=width("fc2"))


def sown_values(variables: dict, images: jax.Array) -> dict[str, jax.Array]:
    """LeNet5 in inference mode on images [B, H, W, C] -> {name: value} of everything it sows: 'intermediates'
    (conv{i}_pre_bn, conv{i}_bn, conv{i}_pool) and 'pre_relu' (conv{i}_pre_relu), each [B, H_i, W_i, F_i]."""
    model = lenet_for(variables["params"])
    _, state = model.apply(variables, images, train=False, mutable=["intermediates", LeNet5.PRE_RELU])
    return {name: values[0] for collection in state.values() for name, values in collection.items()}


def forward_record(variables: dict, images: jax.Array, upto: str | None = None):
    """LeNet5's inference pass through the conv layers (the module's own values), with the deconvnet's steps.

    Args:
      variables: {'params': ..., 'batch_stats': ...} of a LeNet5 (no 'batch_stats' / bn params when the
        model was trained without batch norm).
      images: [B, H, W, C].
      upto: stop after this conv layer (default: the last one).
    Returns:
      (acts, steps): acts {conv name: a_i [B, H_i, W_i, F_i]} (after ReLU, before BN: LeNet5's sown
      conv{i}_pre_bn); steps {conv name: tuple of ops steps in forward order from the image to a_i}, ready
      for `ops.deconv_project`.
    """
    params, stats = variables["params"], variables.get("batch_stats", {})
    names = conv_names(params)
    if upto is not None and upto not in names:
        raise ValueError(f"no layer {upto!r}; this network has {', '.join(names)}")
    names = names[:names.index(upto or names[-1]) + 1]
    sown = sown_values(variables, images)
    acts, steps_by_layer, steps = {}, {}, []
    in_shape = tuple(images.shape)
    for name in names:
        steps += [ops.ConvStep(params[name]["kernel"], in_shape, LeNet5.STRIDE, LeNet5.PADDING),
                  ops.ReluStep(sown[f"{name}_pre_relu"])]
        acts[name], steps_by_layer[name] = sown[f"{name}_pre_bn"], tuple(steps)
        if name == names[-1]:
            break
        pooled = acts[name]  # what LeNet5 pools: a_i, or b_i with batch norm
        if f"{name}_bn" in sown:
            bn = "bn" + name[4:]
            scale = ops.bn_inference_scale(params[bn]["scale"], stats[bn]["var"], LeNet5.BN_EPSILON)
            steps.append(ops.BatchNormStep(scale))  # the shift does not go back: only the linear part
            pooled = sown[f"{name}_bn"]
        # Same windows as LeNet5's pool; the switches are the one thing its pass does not give.
        _, switches = ops.max_pool_with_switches(pooled, LeNet5.POOL)
        steps.append(ops.PoolStep(switches, tuple(pooled.shape)))
        in_shape = tuple(sown[f"{name}_pool"].shape)
    return acts, steps_by_layer


# ------------------------------------------------------------------------------------------- top-k search


def _topk_step(state: dict, variables: dict, images, indices, mask, *, layers: tuple[str, ...], k: int):
    """Folds one batch into the running per-filter top-k of every layer in `layers`.

    state {layer: (values [F, k], {'image', 'row', 'col'}: [F, k])}; images [b, H, W, C]; indices [b]
    (position in the split); mask [b] (0 for the padding of the last batch, whose maps become -inf so that
    they can never enter a top-k).
    """
    acts, _ = forward_record(variables, images, upto=layers[-1])  # the recorded steps are dead code here
    out = {}
    for name in layers:
        a = jnp.where(mask[:, None, None, None] > 0, acts[name], -jnp.inf)
        out[name] = ops.update_topk(state[name], a, indices, k)
    return out


@functools.cache
def _jitted_topk_step(layers: tuple[str, ...], k: int):
    return jax.jit(functools.partial(_topk_step, layers=layers, k=k))


def top_activations(variables: dict, batches: Iterable[dict], layers: Iterable[str], k: int) -> dict:
    """One jitted pass over `batches` keeping, per layer and filter, the k images with the strongest single
    activation (each image at most once per filter; its own strongest position).

    batches: dicts with 'image' [b, H, W, C] and 'mask' [b] as `common.data.eval_batches` yields them (one
    compiled shape). Returns {layer: {'value': [F, k] float32, 'image': [F, k], 'row': [F, k], 'col': [F, k]}}
    as numpy, sorted by decreasing value; only the running top-k is ever held, never the activations.
    """
    params = variables["params"]
    names = conv_names(params)
    layers = tuple(sorted(set(layers), key=names.index))
    step = _jitted_topk_step(layers, k)
    state = {n: ops.init_topk(params[n]["kernel"].shape[-1], k) for n in layers}
    start = 0
    for batch in batches:
        b = len(batch["mask"])
        state = step(state, variables, batch["image"], jnp.arange(start, start + b, dtype=jnp.int32),
                     batch["mask"])
        start += b
    state = jax.device_get(state)
    return {n: {"value": np.asarray(v), **{key: np.asarray(m) for key, m in meta.items()}}
            for n, (v, meta) in state.items()}


# ------------------------------------------------------------------------------------------- projections


def project_one(variables: dict, image, filt, row, col, *, layer: str, mode: str = "deconvnet",
                bn: str = "transpose"):
    """Projects one activation of `layer` back to pixel space (Zeiler & Fergus, section 2.1).

    Args:
      image: [H, W, C]; filt, row, col: int scalars (may be traced): the filter and the position in its map.
      mode: how the signal passes each ReLU on the way down: 'deconvnet' (ReLU of the signal, the paper),
        'guided' (guided backprop) or 'backprop' (the plain gradient); see `ops.relu_mode`.
      bn: 'transpose' multiplies by the BN scale gamma / sqrt(var + eps) (the adjoint, so 'backprop' is the
        exact gradient); 'inverse' divides by it (undoes the forward scaling instead).
    Returns:
      [H, W, C] projection of a_layer[row, col, filt] alone (every other activation zeroed, as in the paper):
      that activation times its input gradient ('backprop'), or the same with the guided / deconvnet ReLU
      rules (tested against jax.vjp).
    """
    acts, steps = forward_record(variables, image[None], upto=layer)
    signal = ops.isolate_activation(acts[layer][0], filt, row, col)  # from a_layer [H_l, W_l, F]
    return ops.deconv_project(signal[None], steps[layer], relu=mode, bn=bn)[0]


@functools.cache
def _jitted_projector(layer: str, mode: str, bn: str):
    one = functools.partial(project_one, layer=layer, mode=mode, bn=bn)
    # vmap over the (filter, rank) pairs flattened into one batch axis; the weights are shared.
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)))


PROJECT_CHUNK = 64  # examples per projection call: one compiled shape for any number of projections


def project(variables: dict, images, filters, rows, cols, *, layer: str, mode: str = "deconvnet",
            bn: str = "transpose", chunk: int = PROJECT_CHUNK) -> np.ndarray:
    """Batched `project_one`: images [N, H, W, C], filters/rows/cols int [N] -> projections [N, H, W, C].

    Runs the jitted, vmapped projector on chunks of `chunk` examples (the last one padded by repeating
    example 0), so every N, from the occlusion figure's 4 to conv2's 64 x 9, reuses one compiled shape.
    """
    fn = _jitted_projector(layer, mode, bn)
    images = np.asarray(images)
    index = [np.asarray(v, np.int32).reshape(-1) for v in (filters, rows, cols)]
    n = len(images)
    pad = -n % chunk
    take = np.concatenate([np.arange(n), np.zeros(pad, np.int64)])
    outs = [fn(variables, jnp.asarray(images[take[i:i + chunk]]), *(jnp.asarray(v[take[i:i + chunk]]) for v in index))
            for i in range(0, n + pad, chunk)]
    return np.concatenate(jax.device_get(outs))[:n]


# ------------------------------------------------------------------------------------ receptive-field crops


def crop_receptive_fields(images, rows, cols, rf: ops.RFGeom) -> jax.Array:
    """Cuts out the receptive field of unit (row, col) of a layer from each image.

    Args:
      images: [N, H, W, C]; rows, cols: int [N] unit positions in the layer's map; rf: that layer's RFGeom.
    Returns:
      [N, size_h, size_w, C]: the full receptive field, NaN where it lies outside the image (so a unit at
      the border keeps its geometry: the image content sits where it is inside the field). The in-image part
      equals `image[ops.receptive_box(rf, row, col, (H, W))]`.
    """
    images = jnp.asarray(images)
    n, H, W, C = images.shape
    (sh, sw), (fh, fw), (jh, jw) = rf.size, rf.first, rf.jump
    # pad by a whole field on each side: every box start first + i * jump (>= -size) then lands inside
    padded = jnp.pad(images.astype(jnp.float32), ((0, 0), (sh, sh), (sw, sw), (0, 0)), constant_values=jnp.nan)
    r0 = jnp.asarray(rows, jnp.int32) * jh + fh + sh
    c0 = jnp.asarray(cols, jnp.int32) * jw + fw + sw
    cut = lambda im, r, c: jax.lax.dynamic_slice(im, (r, c, 0), (sh, sw, C))
    return jax.vmap(cut)(padded, r0, c0)


def check_box_fits(rf: ops.RFGeom, image_hw) -> None:
    """dynamic_slice clamps out-of-range starts silently; make sure the padding above always suffices."""
    for first, size, jump, out, n in zip(rf.first, rf.size, rf.jump, rf.out_size, image_hw):
        if first < -size or first + (out - 1) * jump + size > n + size:
            raise ValueError(f"receptive field {rf} does not fit the crop padding for images of size {n}")


def layer_arrays(variables: dict, split_images: np.ndarray, top: dict[str, Any], layer: str, rf: ops.RFGeom,
                 *, mode: str, bn: str, filters: Iterable[int] | None = None) -> dict[str, np.ndarray]:
    """Projections and image patches of one layer's top-k, cropped to the receptive field.

    top: that layer's entry of `top_activations` ([F, k] arrays). Returns {'projection', 'patch'}: numpy
    [F', k, size_h, size_w, C] for the chosen filters F' (all by default); slots without an activation
    (k larger than the split) are NaN.
    """
    F, k = top["value"].shape
    filters = np.arange(F) if filters is None else np.asarray(list(filters), np.int64)
    img = top["image"][filters].reshape(-1)
    valid = img >= 0
    safe = np.where(valid, img, 0)
    f = np.repeat(filters, k)
    rows, cols = top["row"][filters].reshape(-1), top["col"][filters].reshape(-1)
    images = split_images[safe]
    proj = project(variables, images, f, rows, cols, layer=layer, mode=mode, bn=bn)
    proj_crop = crop_receptive_fields(proj, rows, cols, rf)
    patch = crop_receptive_fields(images, rows, cols, rf)
    # The projection is zero outside the field by construction; outside the image it is meaningless.
    proj_crop = jnp.where(jnp.isnan(patch), jnp.nan, proj_crop)
    shape = (len(filters), k) + tuple(patch.shape[1:])
    nan_if_empty = lambda x: np.where(valid.reshape(-1, 1, 1, 1), np.asarray(x), np.nan).reshape(shape)
    return {"projection": nan_if_empty(proj_crop), "patch": nan_if_empty(patch)}
