"""Tests for deconv/ops.py (the numerical core of the deconvnet)."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deconv import ops
from lenet.model import max_pool_2x2

PADDINGS = ["SAME", "VALID", ((1, 2), (0, 1))]


def _rng(seed=0):
    return np.random.default_rng(seed)


def gather_at_switches(x, switches):
    """The linear part of max pooling (the reference `ops.unpool` is the adjoint of): ``x [B, H, W, C]`` at the
    flat positions ``switches [B, Ho, Wo, C]`` -> ``[B, Ho, Wo, C]``."""
    B, H, W, C = x.shape
    _, Ho, Wo, _ = switches.shape
    return jnp.take_along_axis(x.reshape(B, H * W, C), switches.reshape(B, Ho * Wo, C), axis=1).reshape(switches.shape)


def conv2d(x, kernel, stride=1, padding="SAME"):
    """The forward convolution (NHWC, HWIO, no bias) that `ops.conv2d_transpose` is the adjoint of."""
    strides = (stride, stride) if isinstance(stride, int) else tuple(stride)
    pads = ops.resolve_padding(padding, x.shape[1:3], kernel.shape[:2], strides)
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


# ---------------------------------------------------------------------------
# pooling / switches
# ---------------------------------------------------------------------------
def _np_pool_reference(x, window, strides, padding):
    """Slow numpy reference: first maximum in row-major window order."""
    B, H, W, C = x.shape
    (kh, kw), (sh, sw) = window, strides
    (pt, pb), (pl, pr) = ops.resolve_padding(padding, (H, W), window, strides)
    Ho, Wo = (H + pt + pb - kh) // sh + 1, (W + pl + pr - kw) // sw + 1
    vals = np.zeros((B, Ho, Wo, C), x.dtype)
    sws = np.zeros((B, Ho, Wo, C), np.int64)
    for b, i, j, c in itertools.product(range(B), range(Ho), range(Wo), range(C)):
        best, pos = -np.inf, None
        for a in range(kh):
            for d in range(kw):
                r, q = i * sh + a - pt, j * sw + d - pl
                if 0 <= r < H and 0 <= q < W and (pos is None or x[b, r, q, c] > best):
                    best, pos = x[b, r, q, c], r * W + q
        vals[b, i, j, c], sws[b, i, j, c] = best, pos
    return vals, sws


def test_unpool_2x2_with_ties_hand_made():
    x = np.array([[1, 5, 0, 0],
                  [5, 2, 0, 0],     # tie 5/5 -> first in row-major order (0,1); all-zero tie -> (0,2)
                  [3, 3, 7, 1],
                  [3, 9, 7, 7]], np.float32)[None, :, :, None]
    pooled, sw = ops.max_pool_with_switches(jnp.asarray(x))
    np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 0], [9, 7]])
    np.testing.assert_array_equal(sw[0, :, :, 0], [[0 * 4 + 1, 0 * 4 + 2], [3 * 4 + 1, 2 * 4 + 2]])
    up = ops.unpool(pooled, sw, x.shape)
    expect = np.zeros((4, 4), np.float32)
    expect[0, 1], expect[0, 2], expect[3, 1], expect[2, 2] = 5, 0, 9, 7
    np.testing.assert_array_equal(up[0, :, :, 0], expect)
    r, c = np.divmod(np.asarray(sw), 4)
    np.testing.assert_array_equal(r[0, :, :, 0], [[0, 0], [3, 2]])
    np.testing.assert_array_equal(c[0, :, :, 0], [[1, 2], [1, 2]])


def test_pooling_drops_rows_and_columns_that_fill_no_window():
    x = jnp.asarray(_rng(6).normal(size=(1, 5, 7, 2)).astype(np.float32))
    pooled, sw = ops.max_pool_with_switches(x, 2)
    assert pooled.shape == sw.shape == (1, 2, 3, 2)
    assert int(np.asarray(sw).max()) < 4 * 7  # never row 4 or column 6
    with pytest.raises(ValueError, match="empty"):
        ops.max_pool_with_switches(x, (6, 2))


@pytest.mark.parametrize("window", [(2, 2), 2, (3, 3), (2, 3), (3, 1)])
def test_max_pool_with_switches_matches_flax_and_reference(window):
    rng = _rng(1)
    # small integers -> many ties, exercising the first-maximum rule
    x = rng.integers(-3, 4, size=(2, 7, 9, 3)).astype(np.float32)
    pooled, sw = ops.max_pool_with_switches(jnp.asarray(x), window)
    window = (window, window) if isinstance(window, int) else window
    ref = nn.max_pool(jnp.asarray(x), window, window, "VALID")
    np.testing.assert_array_equal(pooled, ref)
    v_ref, s_ref = _np_pool_reference(x, window, window, "VALID")
    np.testing.assert_array_equal(pooled, v_ref)
    np.testing.assert_array_equal(sw, s_ref)
    np.testing.assert_array_equal(gather_at_switches(jnp.asarray(x), sw), pooled)
    assert sw.dtype == jnp.int32


@pytest.mark.slow
def test_max_pool_2x2_fast_path_and_jit_vmap():
    x = jnp.asarray(_rng(2).normal(size=(3, 9, 8, 4)).astype(np.float32))
    pooled, sw = jax.jit(ops.max_pool_with_switches)(x)  # 9 rows: VALID drops the last one
    np.testing.assert_array_equal(pooled, nn.max_pool(x, (2, 2), (2, 2)))
    # LeNet5's own reshape + max pool (even sizes only) gives the same values
    np.testing.assert_array_equal(max_pool_2x2(x[:, :8]), pooled)
    # vmap over an extra leading axis
    xs = jnp.stack([x, -x])
    f = lambda a: ops.max_pool_with_switches(a, (3, 2))
    pv, sv = jax.jit(jax.vmap(f))(xs)
    for t in range(2):
        p1, s1 = f(xs[t])
        np.testing.assert_array_equal(pv[t], p1)
        np.testing.assert_array_equal(sv[t], s1)
    up = jax.vmap(lambda p, s: ops.unpool(p, s, x.shape))(pv, sv)
    np.testing.assert_array_equal(up[0], ops.unpool(*f(x), x.shape))


@pytest.mark.parametrize("window", [(2, 2), (3, 3), (3, 2)])
def test_unpool_is_vjp_of_gather_at_switches(window):
    rng = _rng(3)
    x = jnp.asarray(rng.integers(-2, 3, size=(2, 8, 7, 3)).astype(np.float32))
    pooled, sw = ops.max_pool_with_switches(x, window)
    y = jnp.asarray(rng.normal(size=pooled.shape).astype(np.float32))
    _, vjp = jax.vjp(lambda a: gather_at_switches(a, sw), x)
    (g,) = vjp(y)
    np.testing.assert_allclose(ops.unpool(y, sw, x.shape), g, rtol=1e-6, atol=1e-6)
    # adjoint identity too
    lhs = jnp.vdot(gather_at_switches(x, sw), y)
    rhs = jnp.vdot(x, ops.unpool(y, sw, x.shape))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


@pytest.mark.slow
def test_unpool_matches_maxpool_gradient_without_ties():
    x = jnp.asarray(_rng(4).normal(size=(2, 9, 9, 2)).astype(np.float32))
    for window in [(2, 2), (3, 3)]:
        pooled, sw = ops.max_pool_with_switches(x, window)
        y = jnp.asarray(_rng(5).normal(size=pooled.shape).astype(np.float32))
        _, vjp = jax.vjp(lambda a: nn.max_pool(a, window, window, "VALID"), x)
        np.testing.assert_allclose(ops.unpool(y, sw, x.shape), vjp(y)[0], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# convolution adjoint
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", PADDINGS, ids=["SAME", "VALID", "explicit"])
@pytest.mark.parametrize("ksize", [(3, 3), (5, 4)])
def test_conv2d_transpose_is_adjoint_and_vjp(stride, padding, ksize):
    rng = _rng(10 + stride)
    x = jnp.asarray(rng.normal(size=(2, 11, 10, 3)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=ksize + (3, 4)).astype(np.float32))
    fwd = lambda a: conv2d(a, k, stride, padding)
    out = fwd(x)
    y = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    xt = jax.jit(ops.conv2d_transpose, static_argnums=(2, 3, 4))(y, k, x.shape, stride, padding)
    assert xt.shape == x.shape
    lhs = float(np.vdot(np.asarray(out, np.float64), np.asarray(y, np.float64)))
    rhs = float(np.vdot(np.asarray(x, np.float64), np.asarray(xt, np.float64)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-3)
    _, vjp = jax.vjp(fwd, x)
    np.testing.assert_allclose(xt, vjp(y)[0], rtol=1e-4, atol=1e-4)


def test_reference_conv2d_matches_flax_conv():
    rng = _rng(20)
    x = jnp.asarray(rng.normal(size=(2, 12, 12, 3)).astype(np.float32))
    for stride, padding in [(1, "SAME"), (2, "SAME"), (3, "VALID"), (2, ((1, 2), (0, 1)))]:
        conv = nn.Conv(5, (3, 3), strides=stride, padding=padding, use_bias=False)
        params = conv.init(jax.random.PRNGKey(0), x)
        np.testing.assert_allclose(conv2d(x, params["params"]["kernel"], stride, padding),
                                   conv.apply(params, x), rtol=1e-5, atol=1e-5)


def test_conv2d_transpose_rejects_wrong_shape():
    k = jnp.zeros((3, 3, 1, 1))
    with pytest.raises(ValueError):
        ops.conv2d_transpose(jnp.zeros((1, 5, 4, 1)), k, (1, 9, 9, 1), 2, "VALID")


# ---------------------------------------------------------------------------
# receptive fields
# ---------------------------------------------------------------------------
#: The report's LeNet5: conv1 5x5 SAME, pool 2/2, conv2 5x5 SAME, pool 2/2.
LENET5_GEOMETRY = (
    ops.LayerGeom(5, 1, "SAME", "conv1"),
    ops.LayerGeom(2, 2, "VALID", "pool1"),
    ops.LayerGeom(5, 1, "SAME", "conv2"),
    ops.LayerGeom(2, 2, "VALID", "pool2"),
)


def test_receptive_field_lenet5_hand_calculation():
    geo = ops.receptive_field(LENET5_GEOMETRY, input_size=28)
    conv1, pool1, conv2, pool2 = geo
    assert conv1.size == (5, 5) and conv1.jump == (1, 1) and conv1.first == (-2, -2)
    assert pool1.size == (6, 6) and pool1.jump == (2, 2) and pool1.first == (-2, -2)
    assert conv2.size == (14, 14) and conv2.jump == (2, 2) and conv2.first == (-6, -6)
    assert pool2.size == (16, 16) and pool2.jump == (4, 4) and pool2.first == (-6, -6)
    assert [g.out_size for g in geo] == [(28, 28), (14, 14), (14, 14), (7, 7)]
    assert conv2.start == (0.5, 0.5)
    # tuples without input size give the same size/jump/first
    plain = ops.receptive_field([(5, 1, "SAME"), (2, 2), (5, 1, "SAME"), (2, 2)])
    assert [(g.size, g.jump, g.first) for g in plain] == [(g.size, g.jump, g.first) for g in geo]
    # boxes
    assert ops.receptive_box(conv1, 0, 0, (28, 28)) == (0, 3, 0, 3)
    assert ops.receptive_box(conv1, 10, 20, (28, 28)) == (8, 13, 18, 23)
    assert ops.receptive_box(conv2, 5, 6, (28, 28)) == (4, 18, 6, 20)
    assert ops.receptive_box(conv2, 13, 0, (28, 28)) == (20, 28, 0, 8)


def _lenet_probe_net(rng, pool):
    k1 = jnp.asarray(rng.uniform(0.1, 1.0, size=(5, 5, 1, 2)).astype(np.float32))
    k2 = jnp.asarray(rng.uniform(0.1, 1.0, size=(5, 5, 2, 3)).astype(np.float32))

    def conv1(x):
        return conv2d(x, k1, 1, "SAME")

    def conv2(x):
        return conv2d(pool(jnp.tanh(conv1(x))), k2, 1, "SAME")

    return conv1, conv2


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_receptive_field_matches_autodiff_probe(layer):
    H = W = 28
    rng = _rng(30)
    avg = lambda a: nn.avg_pool(a, (2, 2), (2, 2))
    mx = lambda a: nn.max_pool(a, (2, 2), (2, 2))
    geo = {g.name: g for g in ops.receptive_field(LENET5_GEOMETRY, (H, W))}[layer]
    nets = {"avg": _lenet_probe_net(rng, avg), "max": _lenet_probe_net(rng, mx)}
    x = jnp.asarray(rng.normal(size=(1, H, W, 1)).astype(np.float32))
    out_hw = geo.out_size
    positions = [(0, 0), (out_hw[0] - 1, out_hw[1] - 1), (out_hw[0] // 2, 3), (1, out_hw[1] - 2)]
    for kind, (c1, c2) in nets.items():
        f = c1 if layer == "conv1" else c2

        @jax.jit
        def support(x, r, c):
            g = jax.grad(lambda a: f(a)[0, r, c, 1])(x)
            return g[0, :, :, 0] != 0

        for r, c in positions:
            s = np.asarray(support(x, r, c))
            r0, r1, c0, c1_ = ops.receptive_box(geo, r, c, (H, W))
            box = np.zeros((H, W), bool)
            box[r0:r1, c0:c1_] = True
            if kind == "avg":   # linear-ish positive net: support is exactly the box
                np.testing.assert_array_equal(s, box)
            else:               # max pool routes gradient to one cell: support inside the box
                assert s.any() and not (s & ~box).any()


# ---------------------------------------------------------------------------
# top-k
# ---------------------------------------------------------------------------
def test_streaming_topk_equals_brute_force():
    rng = _rng(40)
    F, k, H, W = 6, 5, 7, 8
    batches = [rng.normal(size=(n, H, W, F)).astype(np.float32) for n in (4, 7, 1, 9)]
    state = ops.init_topk(F, k)
    upd = jax.jit(ops.update_topk, static_argnums=(3,))
    start = 0
    for b in batches:
        state = upd(state, jnp.asarray(b), jnp.arange(start, start + len(b)), k)
        start += len(b)
    vals, meta = state

    allacts = np.concatenate(batches)               # [N, H, W, F]
    N = allacts.shape[0]
    flat = allacts.reshape(N, H * W, F)
    per_img = flat.max(axis=1)                       # [N, F]
    pos = flat.argmax(axis=1)
    for f in range(F):
        order = np.argsort(-per_img[:, f], kind="stable")[:k]
        np.testing.assert_array_equal(vals[f], per_img[order, f])
        np.testing.assert_array_equal(meta["image"][f], order)
        np.testing.assert_array_equal(meta["row"][f], pos[order, f] // W)
        np.testing.assert_array_equal(meta["col"][f], pos[order, f] % W)
        for j in range(k):
            assert allacts[meta["image"][f, j], meta["row"][f, j], meta["col"][f, j], f] == vals[f, j]


def test_streaming_topk_generic_metadata_and_fewer_candidates_than_k():
    vals0 = jnp.full((2, 4), -jnp.inf)
    idx0 = {"image": jnp.full((2, 4), -1, jnp.int32)}
    new = jnp.array([[3.0, 1.0], [5.0, 0.5]])          # [N=2, F=2]
    v, m = ops.streaming_topk(vals0, idx0, new, {"image": jnp.array([10, 11])}, 4)
    np.testing.assert_array_equal(v[:, :2], [[5, 3], [1, 0.5]])
    np.testing.assert_array_equal(m["image"][:, :2], [[11, 10], [10, 11]])
    assert np.all(np.isneginf(np.asarray(v[:, 2:]))) and np.all(np.asarray(m["image"][:, 2:]) == -1)


def test_max_activation_per_filter():
    acts = np.zeros((2, 3, 4, 2), np.float32)
    acts[0, 1, 2, 0] = 4
    acts[0, 2, 3, 0] = 4      # tie: first in row-major order wins -> (1, 2)
    acts[1, 2, 1, 1] = 7
    v, m = ops.max_activation_per_filter(jnp.asarray(acts), jnp.array([5, 9]))
    np.testing.assert_array_equal(v, [[4, 0], [0, 7]])
    np.testing.assert_array_equal(m["image"], [[5, 5], [9, 9]])
    np.testing.assert_array_equal(m["row"], [[1, 0], [0, 2]])
    np.testing.assert_array_equal(m["col"], [[2, 0], [0, 1]])


# ---------------------------------------------------------------------------
# projection building blocks
# ---------------------------------------------------------------------------
def test_relu_modes_and_bn_transpose():
    s = jnp.array([-2.0, -1.0, 1.0, 2.0])
    f = jnp.array([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_array_equal(ops.relu_mode(s, f, "deconvnet"), [0, 0, 1, 2])
    np.testing.assert_array_equal(ops.relu_mode(s, None, "deconvnet"), [0, 0, 1, 2])
    np.testing.assert_array_equal(ops.relu_mode(s, f, "backprop"), [-2, 0, 0, 2])
    np.testing.assert_array_equal(ops.relu_mode(s, f, "guided"), [0, 0, 0, 2])
    with pytest.raises(ValueError):
        ops.relu_mode(s, f, "nope")
    sig = jnp.ones((1, 2, 2, 3))
    scale = ops.bn_inference_scale(jnp.array([1.0, 2.0, 4.0]), jnp.array([3.0, 1.0, 0.0]), eps=1.0)
    np.testing.assert_allclose(scale, [0.5, 2 / np.sqrt(2), 4.0])
    np.testing.assert_allclose(ops.bn_transpose(sig, scale)[0, 0, 0], scale)
    np.testing.assert_allclose(ops.bn_transpose(sig, scale, "inverse")[0, 0, 0], 1 / scale)


def test_isolate_activation():
    a = jnp.asarray(_rng(50).normal(size=(4, 5, 3)).astype(np.float32))
    out = ops.isolate_activation(a, 1)
    p = int(np.argmax(np.asarray(a[:, :, 1])))
    assert np.count_nonzero(np.asarray(out)) == 1
    assert out[p // 5, p % 5, 1] == a[p // 5, p % 5, 1]
    out2 = jax.jit(ops.isolate_activation)(a, 2, 3, 4)
    assert np.count_nonzero(np.asarray(out2)) == 1 and out2[3, 4, 2] == a[3, 4, 2]


def _small_net(rng):
    k1 = jnp.asarray(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))
    k2 = jnp.asarray(rng.normal(size=(3, 3, 4, 5)).astype(np.float32))
    b1 = jnp.asarray(rng.normal(size=(4,)).astype(np.float32))
    scale = jnp.asarray(rng.uniform(0.5, 2.0, size=(5,)).astype(np.float32))
    shift = jnp.asarray(rng.normal(size=(5,)).astype(np.float32))

    def forward(x):
        h1 = conv2d(x, k1, 1, "SAME") + b1
        a1 = jax.nn.relu(h1)
        p1 = nn.max_pool(a1, (2, 2), (2, 2))
        h2 = conv2d(p1, k2, 2, ((1, 2), (0, 1))) * scale + shift
        return jax.nn.relu(h2)

    def record(x):
        h1 = conv2d(x, k1, 1, "SAME") + b1
        a1 = jax.nn.relu(h1)
        p1, sw = ops.max_pool_with_switches(a1, (2, 2))
        h2 = conv2d(p1, k2, 2, ((1, 2), (0, 1))) * scale + shift
        a2 = jax.nn.relu(h2)
        steps = [ops.ConvStep(k1, x.shape, 1, "SAME"), ops.ReluStep(h1),
                 ops.PoolStep(sw, a1.shape),
                 ops.ConvStep(k2, p1.shape, 2, ((1, 2), (0, 1))), ops.BatchNormStep(scale),
                 ops.ReluStep(h2)]
        return a2, steps

    return forward, record


@pytest.mark.slow
def test_deconv_project_backprop_mode_equals_vjp():
    rng = _rng(60)
    forward, record = _small_net(rng)
    x = jnp.asarray(rng.normal(size=(2, 8, 7, 2)).astype(np.float32))
    out, steps = record(x)
    np.testing.assert_allclose(out, forward(x), rtol=1e-5, atol=1e-5)
    y = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))
    proj = jax.jit(ops.deconv_project, static_argnames=("relu", "bn"))(y, steps, relu="backprop")
    _, vjp = jax.vjp(forward, x)
    np.testing.assert_allclose(proj, vjp(y)[0], rtol=1e-4, atol=1e-4)

    # deconvnet / guided modes run, have the input shape, and differ from backprop
    d = ops.deconv_project(y, steps, relu="deconvnet")
    g = ops.deconv_project(y, steps, relu="guided", bn="inverse")
    assert d.shape == g.shape == x.shape
    assert not np.allclose(d, proj)


def test_deconv_project_guided_equals_manual_composition():
    rng = _rng(61)
    k = jnp.asarray(rng.normal(size=(3, 3, 1, 2)).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 1)).astype(np.float32))
    h = conv2d(x, k)
    a = jax.nn.relu(h)
    p, sw = ops.max_pool_with_switches(a)
    steps = [ops.ConvStep(k, x.shape), ops.ReluStep(h), ops.PoolStep(sw, a.shape)]
    sig = ops.isolate_activation(p[0], 1)[None]
    for mode in ops.RELU_MODES:
        manual = ops.conv2d_transpose(ops.relu_mode(ops.unpool(sig, sw, a.shape), h, mode), k, x.shape)
        np.testing.assert_allclose(ops.deconv_project(sig, steps, relu=mode), manual, rtol=1e-6)
