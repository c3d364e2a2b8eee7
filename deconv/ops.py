"""Pure numerical core of the Zeiler & Fergus deconvnet (JAX, NHWC, float32).

Everything here is a pure function of arrays plus *static* Python geometry
(window sizes, strides, paddings, shapes), so it can be wrapped in
``jax.jit`` (geometry arguments static / closed over) and ``jax.vmap``
(over an extra leading axis).

Conventions
-----------
* Layout is NHWC for activations (``[B, H, W, C]``) and HWIO for conv kernels
  (``[kh, kw, C_in, C_out]``), exactly like ``flax.linen.Conv``.
* ``padding`` is ``'SAME'``, ``'VALID'`` or explicit pairs
  ``((top, bottom), (left, right))``. ``'SAME'`` is resolved with
  ``jax.lax.padtype_to_pads`` (the rule used by ``lax.conv_general_dilated``,
  ``lax.reduce_window`` and hence flax): total padding
  ``max((ceil(n/s) - 1) * s + k - n, 0)``, the smaller half on top/left.
* Pooling is LeNet5's: non-overlapping ``kh x kw`` windows, stride = window, no
  padding (``'VALID'``: rows and columns that fill no whole window are dropped).
  Pool **switches** are ``int32`` arrays shaped like the pooled output
  ``[B, Ho, Wo, C]`` holding the *flat* position ``row * W + col`` of the
  selected maximum in the input map of the same image/channel.
* Tie rule for pooling: the *first* maximum in row-major window order wins
  (``jnp.argmax`` semantics).
* ``unpool`` is the exact adjoint (transpose) of gathering ``x`` at the
  switches (the linear part of max pooling): pooled values are scattered back
  to their recorded positions.
* ``conv2d_transpose`` is the exact adjoint of the convolution
  ``lax.conv_general_dilated(x, k, stride, padding)`` (what ``flax.linen.Conv``
  computes, bias aside), i.e. ``<conv(x, k), y> == <x, conv2d_transpose(y, k,
  x.shape)>``; it is what the deconvnet uses to project a signal through a conv
  layer ("filtering with the transposed/flipped filters").
* Receptive-field geometry is tracked per spatial axis; a unit's receptive
  field is the half-open input interval ``[first + i * jump, first + i * jump
  + size)`` (before clipping to the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    # pooling
    "max_pool_with_switches", "unpool", "resolve_padding",
    # convolution
    "conv2d_transpose",
    # receptive fields
    "LayerGeom", "RFGeom", "receptive_field",
    "receptive_box",
    # top-k bookkeeping
    "init_topk", "streaming_topk", "max_activation_per_filter", "update_topk",
    # projection building blocks
    "RELU_MODES", "relu_mode", "bn_inference_scale", "bn_transpose",
    "isolate_activation",
    "ConvStep", "PoolStep", "ReluStep", "BatchNormStep", "deconv_project",
]

_DN = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _pair(v, name="value") -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def resolve_padding(padding, in_hw, window, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    """Resolve ``padding`` to explicit ``((top, bottom), (left, right))``.

    Args:
      padding: ``'SAME'`` | ``'VALID'`` | pairs ``((t, b), (l, r))``.
      in_hw: input spatial size ``(H, W)``.
      window: kernel / window size ``(kh, kw)``.
      strides: ``(sh, sw)``.
    """
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"unknown padding {padding!r}")
        pads = lax.padtype_to_pads(tuple(in_hw), tuple(window), tuple(strides), p)
        return tuple((int(a), int(b)) for a, b in pads)  # type: ignore[return-value]
    pads = tuple((int(a), int(b)) for a, b in padding)
    if len(pads) != 2:
        raise ValueError(f"explicit padding needs 2 (lo, hi) pairs, got {padding}")
    return pads  # type: ignore[return-value]


def _out_size(n, k, s, lo, hi) -> int:
    return (n + lo + hi - k) // s + 1


# --------------------------------------------------------------------------
# pooling with switches
# --------------------------------------------------------------------------
def max_pool_with_switches(x, window=(2, 2)):
    """Non-overlapping max pooling (stride = window, no padding) that also returns the argmax positions
    ("switches").

    Args:
      x: ``[B, H, W, C]`` float array.
      window: ``(kh, kw)`` (or an int); rows and columns that fill no whole window are dropped, as in
        ``flax.linen.max_pool(x, window, window)``.

    Returns:
      ``pooled`` ``[B, Ho, Wo, C]``: identical values to ``flax.linen.max_pool(x, window, window)``
      (``Ho = H // kh``, ``Wo = W // kw``);
      ``switches`` ``int32 [B, Ho, Wo, C]``: flat position ``row * W + col`` in ``x`` of each window's maximum;
      ties go to the first maximum in row-major window order.
    """
    kh, kw = _pair(window, "window")
    B, H, W, C = x.shape
    Ho, Wo = H // kh, W // kw
    if Ho == 0 or Wo == 0:
        raise ValueError(f"pooling output would be empty: input {(H, W)}, window {(kh, kw)}")
    # a pure reshape puts each window's cells on one axis, in row-major window order
    patches = x[:, : Ho * kh, : Wo * kw, :].reshape(B, Ho, kh, Wo, kw, C).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(B, Ho, Wo, kh * kw, C)
    k_sel = jnp.argmax(patches, axis=3).astype(jnp.int32)  # [B, Ho, Wo, C]
    base_r = (np.arange(Ho) * kh)[None, :, None, None]
    base_c = (np.arange(Wo) * kw)[None, None, :, None]
    switches = (base_r + k_sel // kw) * W + (base_c + k_sel % kw)
    return jnp.max(patches, axis=3), switches.astype(jnp.int32)


def unpool(pooled, switches, input_shape):
    """Deconvnet unpooling: scatter pooled values back to their switch positions.

    Args:
      pooled: ``[B, Ho, Wo, C]`` signal in pooled space.
      switches: ``int32 [B, Ho, Wo, C]`` from ``max_pool_with_switches``.
      input_shape: shape of the pre-pool map, ``(B, H, W, C)`` or ``(H, W)``.
    Returns:
      ``[B, H, W, C]``: zeros except at switch positions; for fixed switches this is exactly the adjoint of
      gathering at them, i.e. the max-pool VJP (tested).
    """
    H, W = (input_shape[-3], input_shape[-2]) if len(input_shape) >= 3 else tuple(input_shape)
    B, Ho, Wo, C = pooled.shape
    b = jnp.arange(B)[:, None, None]
    c = jnp.arange(C)[None, None, :]
    out = jnp.zeros((B, H * W, C), pooled.dtype)
    out = out.at[b, switches.reshape(B, Ho * Wo, C), c].add(pooled.reshape(B, Ho * Wo, C))
    return out.reshape(B, H, W, C)


# --------------------------------------------------------------------------
# convolution and its exact adjoint
# --------------------------------------------------------------------------
def conv2d_transpose(y, kernel, input_shape, stride=1, padding="SAME", precision=None):
    """Exact adjoint of the convolution ``lax.conv_general_dilated(., kernel, stride, padding)`` (NHWC, HWIO),
    the deconvnet's filtering.

    Computed as an explicit fractionally-strided convolution: ``y`` is dilated
    by the stride, padded with ``lo = kh - 1 - t`` on top and
    ``hi = H - 1 + t - (Ho - 1) * sh`` at the bottom (likewise for width; may be
    negative = cropping; the ``hi`` side absorbs input rows the forward conv
    never read when ``(H + t + b - kh) % sh != 0``) and correlated with the
    spatially flipped, in/out-swapped kernel
    (``lax.conv_transpose(..., transpose_kernel=True)``).

    Args:
      y: ``[B, Ho, Wo, C_out]`` signal in the conv's output space.
      kernel: ``[kh, kw, C_in, C_out]`` — the *forward* HWIO kernel.
      input_shape: shape of the forward input, ``(B, H, W, C_in)`` or ``(H, W)``
        (needed because with stride > 1 several H map to the same Ho).
      stride, padding: those of the forward convolution (int or pair; ``'SAME'`` | ``'VALID'`` | pairs).
    Returns:
      ``[B, H, W, C_in]`` with ``<conv(x, k), y> == <x, conv2d_transpose(y, k, x.shape)>``
      for all ``x``; equal to the VJP of the convolution w.r.t. ``x``.
    """
    H, W = (input_shape[-3], input_shape[-2]) if len(input_shape) >= 3 else tuple(input_shape)
    strides = _pair(stride, "stride")
    kh, kw = kernel.shape[:2]
    pads = resolve_padding(padding, (H, W), (kh, kw), strides)
    expect = tuple(_out_size(n, k, s, lo, hi)
                   for n, k, s, (lo, hi) in zip((H, W), (kh, kw), strides, pads))
    if tuple(y.shape[1:3]) != expect:
        raise ValueError(f"y spatial shape {tuple(y.shape[1:3])} does not match the "
                         f"forward conv output {expect} for input {(H, W)}")
    tpads = tuple((k - 1 - lo, n - 1 + lo - (m - 1) * s)
                  for n, k, s, (lo, _), m in zip((H, W), (kh, kw), strides, pads, expect))
    return lax.conv_transpose(y, kernel, strides, tpads, dimension_numbers=_DN,
                              transpose_kernel=True, precision=precision)


# --------------------------------------------------------------------------
# receptive fields
# --------------------------------------------------------------------------
class LayerGeom(NamedTuple):
    """Geometry of one layer: ``kernel``/``stride`` int or ``(h, w)``;
    ``padding`` ``'SAME'`` | ``'VALID'`` | ``((t, b), (l, r))``."""
    kernel: Any
    stride: Any = 1
    padding: Any = "VALID"
    name: str = ""


class RFGeom(NamedTuple):
    """Receptive field of the units of one layer's output, per axis ``(h, w)``.

    ``size``: RF extent in input pixels; ``jump``: input-pixel distance between
    adjacent units; ``first``: first input pixel covered by unit 0 (may be
    negative = padding); ``start``: centre of unit 0's RF
    (``first + (size - 1) / 2``); ``out_size``: layer output size if the input
    size was given, else ``None``.
    """
    name: str
    size: tuple[int, int]
    jump: tuple[int, int]
    first: tuple[int, int]
    start: tuple[float, float]
    out_size: tuple[int, int] | None


def receptive_field(layers, input_size=None):
    """Receptive-field size / jump / start after each layer.

    Recurrence (per axis, input: size 1, jump 1, first 0):
    ``size += (k - 1) * jump``; ``first -= pad_lo * jump``; ``jump *= s``.

    Args:
      layers: sequence of ``LayerGeom`` or tuples ``(kernel, stride[, padding[, name]])``
        or dicts with those keys. Pooling layers are just (window, stride).
      input_size: ``(H, W)`` (or int) of the network input; required only to
        resolve ``'SAME'`` for strides > 1 (pads depend on the size); also
        fills ``out_size``.
    Returns:
      list of ``RFGeom``, one per layer (RF of that layer's output units).

    LeNet5 (``deconv.network.geometry``): conv1 size 5, jump 1, first -2;
    pool1 size 6, jump 2, first -2; conv2 size 6 + 4*2 = 14, jump 2, first -6;
    pool2 size 16, jump 4, first -6.
    """
    size, jump, first = [1, 1], [1, 1], [0, 0]
    n = None if input_size is None else list(_pair(input_size, "input_size"))
    out = []
    for idx, layer in enumerate(layers):
        if isinstance(layer, dict):
            layer = LayerGeom(**layer)
        elif not isinstance(layer, LayerGeom):
            layer = LayerGeom(*layer)
        k = _pair(layer.kernel, "kernel")
        s = _pair(layer.stride, "stride")
        pad = layer.padding
        if isinstance(pad, str):
            if pad.upper() == "VALID":
                pads = ((0, 0), (0, 0))
            elif n is not None:
                pads = resolve_padding(pad, n, k, s)
            elif s == (1, 1):
                pads = tuple(((kk - 1) // 2, kk - 1 - (kk - 1) // 2) for kk in k)
            else:
                raise ValueError("'SAME' with stride > 1 needs input_size")
        else:
            pads = resolve_padding(pad, (0, 0), k, s)
        for a in range(2):
            size[a] += (k[a] - 1) * jump[a]
            first[a] -= pads[a][0] * jump[a]
            jump[a] *= s[a]
            if n is not None:
                n[a] = _out_size(n[a], k[a], s[a], *pads[a])
        out.append(RFGeom(layer.name or f"layer{idx}", tuple(size), tuple(jump),
                          tuple(first),
                          tuple(f + (sz - 1) / 2 for f, sz in zip(first, size)),
                          None if n is None else tuple(n)))
    return out


def receptive_box(layer_geom: RFGeom, row, col, image_hw):
    """Input-image box seen by output unit ``(row, col)`` of a layer.

    Args:
      layer_geom: the ``RFGeom`` of that layer (from ``receptive_field``); for
        a conv layer use the conv's own entry (activation before pooling).
      row, col: unit position in that layer's output (ints or int arrays).
      image_hw: ``(H, W)`` of the input image.
    Returns:
      ``(r0, r1, c0, c1)`` half-open (``image[r0:r1, c0:c1]``), clipped to the
      image. Python ints for int inputs, else jnp arrays (jittable).
    """
    H, W = image_hw
    r0 = layer_geom.first[0] + row * layer_geom.jump[0]
    c0 = layer_geom.first[1] + col * layer_geom.jump[1]
    r1, c1 = r0 + layer_geom.size[0], c0 + layer_geom.size[1]
    if all(isinstance(v, (int, np.integer)) for v in (row, col)):
        clip = lambda v, hi: int(min(max(v, 0), hi))
    else:
        clip = lambda v, hi: jnp.clip(v, 0, hi)
    return clip(r0, H), clip(r1, H), clip(c0, W), clip(c1, W)


# --------------------------------------------------------------------------
# top-k bookkeeping
# --------------------------------------------------------------------------
def init_topk(num_filters, k, meta_keys=("image", "row", "col")):
    """Empty running top-k: values ``[F, k]`` = -inf, metadata ``{key: int32 [F, k]}`` = -1."""
    vals = jnp.full((num_filters, k), -jnp.inf, jnp.float32)
    meta = {key: jnp.full((num_filters, k), -1, jnp.int32) for key in meta_keys}
    return vals, meta


def streaming_topk(values_topk, idx_topk, new_values, new_idx, k):
    """Merge a running per-filter top-k with a new batch of per-filter candidates.

    Args:
      values_topk: ``[F, k0]`` running values (``-inf`` for empty slots).
      idx_topk: pytree of ``[F, k0, ...]`` metadata (e.g. image index, row, col).
      new_values: ``[N, F]`` candidates (e.g. per-image max of each filter).
      new_idx: pytree with the same structure as ``idx_topk``; leaves
        ``[N, F, ...]`` or ``[N]`` (per-image, broadcast over filters).
      k: number kept (static).
    Returns:
      ``(values [F, k], idx pytree of [F, k, ...])`` sorted descending.
      Computed with ``lax.top_k`` on ``concat([running, new.T], axis=1)``;
      ties favour the lower concatenation index (running entries first, then
      batch order) as ``lax.top_k`` does.
    """
    N, F = new_values.shape
    cat_v = jnp.concatenate([values_topk, new_values.T.astype(values_topk.dtype)], axis=1)
    top_v, top_i = lax.top_k(cat_v, k)  # [F, k]

    def merge(old, new):
        new = jnp.asarray(new)
        if new.ndim == 1:
            new = jnp.broadcast_to(new[:, None], (N, F))
        new = jnp.swapaxes(new, 0, 1).astype(old.dtype)  # [F, N, ...]
        cat = jnp.concatenate([old, new], axis=1)
        ii = top_i.reshape(top_i.shape + (1,) * (cat.ndim - 2))
        return jnp.take_along_axis(cat, ii, axis=1)

    return top_v, jax.tree_util.tree_map(merge, idx_topk, new_idx)


def max_activation_per_filter(acts, image_indices):
    """Per (image, filter) spatial maximum and its location.

    Args:
      acts: ``[N, H, W, F]`` activation maps.
      image_indices: ``int [N]`` global dataset index of each image.
    Returns:
      ``values [N, F]`` and ``{'image': [N, F], 'row': [N, F], 'col': [N, F]}``
      (int32). Ties: first maximum in row-major order.
    """
    N, H, W, F = acts.shape
    flat = acts.reshape(N, H * W, F)
    pos = jnp.argmax(flat, axis=1).astype(jnp.int32)  # [N, F]
    vals = jnp.max(flat, axis=1)
    img = jnp.broadcast_to(jnp.asarray(image_indices, jnp.int32)[:, None], (N, F))
    return vals, {"image": img, "row": pos // W, "col": pos % W}


def update_topk(state, acts, image_indices, k):
    """``state = (values [F,k], meta)``; fold in a batch ``acts [N,H,W,F]``."""
    v, m = max_activation_per_filter(acts, image_indices)
    return streaming_topk(state[0], state[1], v, m, k)


# --------------------------------------------------------------------------
# backward-projection building blocks
# --------------------------------------------------------------------------
RELU_MODES = ("deconvnet", "guided", "backprop")


def relu_mode(signal, forward_pre_activation, mode="deconvnet"):
    """Pass a top-down signal back through a ReLU.

    Args:
      signal: top-down signal, any shape.
      forward_pre_activation: the ReLU's forward *input* (same shape); only
        its sign is used (``> 0`` equals "forward output > 0"). May be
        ``None`` for ``'deconvnet'``.
      mode: ``'deconvnet'`` -> ``relu(signal)`` (Zeiler & Fergus);
        ``'backprop'`` -> ``signal * (forward > 0)`` (the gradient);
        ``'guided'`` -> ``signal * (signal > 0) * (forward > 0)``
        (guided backprop, Springenberg et al.).
    """
    if mode == "deconvnet":
        return jnp.maximum(signal, 0)
    if forward_pre_activation is None:
        raise ValueError(f"mode {mode!r} needs the forward pre-activation")
    fwd = forward_pre_activation > 0
    if mode == "backprop":
        return jnp.where(fwd, signal, 0)
    if mode == "guided":
        return jnp.where(fwd & (signal > 0), signal, 0)
    raise ValueError(f"unknown relu mode {mode!r}; expected one of {RELU_MODES}")


def bn_inference_scale(gamma, var, eps=1e-5):
    """Per-channel inference scale ``gamma / sqrt(var + eps)`` (flax default eps)."""
    return gamma / jnp.sqrt(var + eps)


def bn_transpose(signal, scale, mode="transpose"):
    """Pass a signal back through inference batch norm ``y = x * scale + shift``.

    Args:
      signal: ``[..., C]``.
      scale: ``[C]`` = ``gamma / sqrt(var + eps)`` (see ``bn_inference_scale``).
      mode: ``'transpose'`` multiplies by ``scale`` (adjoint of the linear
        part = gradient); ``'inverse'`` divides by it. The shift is dropped.
    """
    if mode == "transpose":
        return signal * scale
    if mode == "inverse":
        return signal / scale
    raise ValueError(f"unknown bn mode {mode!r}; expected 'transpose' or 'inverse'")


def isolate_activation(acts, filter_idx, row=None, col=None):
    """Starting signal of a deconv projection: keep one activation, zero the rest.

    Args:
      acts: ``[H, W, F]`` feature maps of one image (vmap for batches).
      filter_idx: filter to keep (int / traced int).
      row, col: position to keep; ``None`` -> the filter map's argmax
        (first in row-major order).
    Returns:
      ``[H, W, F]`` with only ``acts[row, col, filter_idx]`` non-zero.
    """
    H, W, F = acts.shape
    fmap = acts[:, :, filter_idx]
    if row is None or col is None:
        p = jnp.argmax(fmap.reshape(-1))
        row, col = p // W, p % W
    mask = ((jnp.arange(H)[:, None, None] == row) & (jnp.arange(W)[None, :, None] == col)
            & (jnp.arange(F)[None, None, :] == filter_idx))
    return jnp.where(mask, acts, 0)


@flax.struct.dataclass
class ConvStep:
    """Forward convolution with ``kernel``, ``stride``, ``padding`` (+bias, ignored);
    back: ``conv2d_transpose``. ``input_shape``: forward input ``(B,H,W,C)``/``(H,W)``."""
    kernel: jax.Array
    input_shape: tuple = flax.struct.field(pytree_node=False)
    stride: Any = flax.struct.field(pytree_node=False, default=1)
    padding: Any = flax.struct.field(pytree_node=False, default="SAME")


@flax.struct.dataclass
class PoolStep:
    """Forward max pool with ``switches``; back: ``unpool``."""
    switches: jax.Array
    input_shape: tuple = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class ReluStep:
    """Forward ReLU; ``pre_activation`` = its forward input (may be None for deconvnet)."""
    pre_activation: Any = None


@flax.struct.dataclass
class BatchNormStep:
    """Forward inference BN ``x * scale + shift``; ``scale`` ``[C]``."""
    scale: jax.Array


def deconv_project(signal, steps: Sequence[Any], relu="deconvnet", bn="transpose"):
    """Project a top-layer signal back to input space through a recorded stack.

    Args:
      signal: signal at the output of the last step (e.g. from
        ``isolate_activation`` with a batch axis added), ``[B, ...]``.
      steps: the forward layers **in forward order** (``ConvStep``,
        ``PoolStep``, ``ReluStep``, ``BatchNormStep``); they are applied in
        reverse. The steps are pytrees (geometry static), so they can be
        passed through ``jax.jit``.
      relu: ``'deconvnet'`` | ``'guided'`` | ``'backprop'`` (see ``relu_mode``).
      bn: ``'transpose'`` | ``'inverse'`` (see ``bn_transpose``).
    Returns:
      Signal in the input space of the first step. With ``relu='backprop'``
      and ``bn='transpose'`` this is exactly the VJP of the (bias-agnostic)
      forward stack, i.e. the input gradient (for tie-free max pools).
    """
    if relu not in RELU_MODES:
        raise ValueError(f"unknown relu mode {relu!r}")
    for step in reversed(list(steps)):
        if isinstance(step, ConvStep):
            signal = conv2d_transpose(signal, step.kernel, step.input_shape,
                                      step.stride, step.padding)
        elif isinstance(step, PoolStep):
            signal = unpool(signal, step.switches, step.input_shape)
        elif isinstance(step, ReluStep):
            signal = relu_mode(signal, step.pre_activation, relu)
        elif isinstance(step, BatchNormStep):
            signal = bn_transpose(signal, step.scale, bn)
        else:
            raise TypeError(f"unknown step type {type(step).__name__}")
    return signal
