"""`python -m benchmarks.lenet_ab [--variants plain,im2col,...] [--rounds 11]`: whole LeNet5 train steps of other
formulations and XLA:CPU options, A/B in one process, their timing windows interleaved.

Each variant is the report configuration's training call as `common.run.fit` runs it
(`common.core.step.compile_program`'s `train` for one model, batch 50, one step per call, the batch gathered from
the uint8 split on the device, the state donated or not as training does; built by `benchmarks.harness.prepare`),
compiled on its own, with the model's convolutions replaced while it is traced (`nn.Conv`'s `conv_general_dilated`
argument) or with XLA compiler options (`Lowered.compile(compiler_options=...)`). Round after round every variant
times one window of `--steps` steps, the order rotated, so that a busy spell of a shared machine falls on all of
them; the table has the median wall time per step, its ratio to the first variant, and the process CPU time per step
(all threads), which a loaded machine inflates far less than the wall time. These formulations were tried for issue
26; the one kept is 'plain' against 'xla-defaults': Eigen's multi-threaded convolutions and no donation on a CPU
(common/runtime/xla_cpu.py, docs/performance.md); the code stays so that the measurement can be rerun.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import time
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from benchmarks.harness import prepare, setup
from common import data as data_lib
from common.core import step as step_lib
from common.runtime import xla_cpu
from lenet import model as lenet_model
from lenet.config import LeNetConfig
from lenet.model import create_model, max_pool_2x2
from lenet.train import penalty_fn

_DN = ("NHWC", "HWIO", "NHWC")


def patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """'SAME' im2col: [b, h, w, c] -> [b, h, w, kh * kw * c], ordered (row, column, channel) as an HWIO kernel."""
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    return jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=-1)


def im2col_conv(x, kernel, *args, **kwargs):
    """Convolution as patches @ kernel; autodiff gives dk = patches^T @ g and dx as a sum of shifted slices."""
    kh, kw, _, features = kernel.shape
    p = patches(x, kh, kw)
    return (p.reshape(-1, p.shape[-1]) @ kernel.reshape(-1, features)).reshape(x.shape[:3] + (features,))


def im2col_one_channel(x, kernel, *args, **kwargs):
    """`im2col_conv` for convolutions of one input channel (LeNet5's conv1), lax's own for the others."""
    if kernel.shape[2] == 1:
        return im2col_conv(x, kernel)
    return lax.conv_general_dilated(x, kernel, *args, **{"dimension_numbers": _DN, **kwargs})


@jax.custom_vjp
def _conv_dk_matmul(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DN)


def _dk_fwd(x, kernel):
    return _conv_dk_matmul(x, kernel), (x, kernel)


def _dk_bwd(residuals, g):
    """dx by XLA's own transpose of the convolution, dk as one matmul of the patches."""
    x, kernel = residuals
    kh, kw, c, features = kernel.shape
    _, vjp_x = jax.vjp(lambda x: lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DN), x)
    dk = patches(x, kh, kw).reshape(-1, kh * kw * c).T @ g.reshape(-1, features)
    return vjp_x(g)[0], dk.reshape(kernel.shape)


_conv_dk_matmul.defvjp(_dk_fwd, _dk_bwd)


def nchw_conv(x, kernel, strides, padding, **kwargs):
    """The same convolution asked for in NCHW / OIHW (XLA's layout assignment may undo the transposes)."""
    y = lax.conv_general_dilated(jnp.transpose(x, (0, 3, 1, 2)), jnp.transpose(kernel, (3, 2, 0, 1)), strides,
                                 padding, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jnp.transpose(y, (0, 2, 3, 1))


def _pool_with_gradient(route, doc: str):
    """`lenet.model.max_pool_2x2`'s values with another backward: `route(hits, g)` turns the four window
    positions' tie masks `hits[i][j]` ([b, h/2, w/2, c] bools) into the gradient each position receives."""

    @jax.custom_vjp
    def pool(x):
        return max_pool_2x2(x)

    def fwd(x):
        y = max_pool_2x2(x)
        return y, (x, y)

    def bwd(res, g):
        x, y = res
        b, h, w, c = x.shape
        xr = x.reshape(b, h // 2, 2, w // 2, 2, c)
        parts = route([[xr[:, :, i, :, j] == y for j in range(2)] for i in range(2)], g)
        rows = [jnp.stack(parts[i], axis=3) for i in range(2)]  # [b, h/2, w/2, 2, c]
        return (jnp.stack(rows, axis=2).reshape(b, h, w, c),)

    pool.defvjp(fwd, bwd)
    pool.__doc__ = doc
    return pool


def _to_first_maximum(hits, g):
    taken, parts = jnp.zeros(g.shape, bool), [[None, None], [None, None]]
    for i in range(2):
        for j in range(2):
            parts[i][j] = jnp.where(hits[i][j] & ~taken, g, 0.0)
            taken = taken | hits[i][j]
    return parts


def _split_among_ties(hits, g):
    share = g / sum(hit.astype(g.dtype) for row in hits for hit in row)
    return [[jnp.where(hit, share, 0.0) for hit in row] for row in hits]


pool_first_max = _pool_with_gradient(_to_first_maximum, """The model's pool whose gradient goes to the first
    maximum of each window only (ties are ReLU zeros, whose gradient the ReLU discards), so that no tie count is
    divided by; tried for issue 26.""")
pool_split_slices = _pool_with_gradient(_split_among_ties, """The model's pool with jnp.max's own gradient (split
    equally among ties) written with slices, without a reduction, so that XLA:CPU does not fuse the layer below's
    gradient into a YNNPACK reduction; tried for issue 26.""")


def _ynn(*types: str) -> dict:
    """The XLA option that lists what XLA:CPU hands to YNNPACK (the rest: XLA's own / Eigen kernels)."""
    return {xla_cpu.YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in types)}


class Variant(NamedTuple):
    impl: Any = None  # a conv_general_dilated replacement, a name in MODEL_PATCHES, or None
    options: dict | None = None  # XLA compiler options, added to those training compiles with
    xla_defaults: bool = False  # built as with ELEC576_XLA_CPU_DEFAULTS=1: XLA's own choices, state donated


# 'plain' is the training call as it is: on a CPU with two or more cores Eigen's convolutions, YNNPACK's dots
# and reductions, and the state not donated into a one-step call (common/runtime/xla_cpu.py).
VARIANTS = {
    "plain": Variant(),
    "xla-defaults": Variant(xla_defaults=True),  # before issue 26: YNNPACK convolutions, donated state
    "ynn-conv": Variant(options=xla_cpu.YNNPACK_CONVOLUTIONS),  # convolutions on YNNPACK (one thread)
    "donated": Variant(options=xla_cpu.EIGEN_CONVOLUTIONS, xla_defaults=True),  # Eigen, state donated
    "im2col": Variant(im2col_conv, xla_cpu.YNNPACK_CONVOLUTIONS, True),
    "custom-vjp-dk-matmul": Variant(lambda x, k, *a, **kw: _conv_dk_matmul(x, k), xla_cpu.YNNPACK_CONVOLUTIONS,
                                    True),
    "nchw": Variant(nchw_conv),
    "im2col-conv1": Variant(im2col_one_channel),  # conv1 (one channel) as patches @ kernel, conv2 as it is
    "pool-first-max": Variant("pool"),
    "pool-split-slices": Variant("pool-split"),
    "eigen-dot": Variant(options=_ynn("REDUCE")),  # Eigen's dots too
    "no-ynn": Variant(options=_ynn()),
    "ynn-dot-only": Variant(options=_ynn("INDIVIDUAL_DOT")),
    "dot-fusions": Variant(options=_ynn("DOT", "REDUCE")),
    "ynn-dot-fusions-eltwise": Variant(options=_ynn("DOT", "ELTWISE")),
    "copy-region-analysis": Variant(options=xla_cpu.EIGEN_CONVOLUTIONS | {
        "xla_cpu_copy_insertion_use_region_analysis": True}, xla_defaults=True),
    "xnnpack": Variant(options={"xla_cpu_use_xnnpack": True}),
    "xnn-graph-greedy": Variant(options={"xla_cpu_experimental_xnn_graph_fusion_mode": "XNN_GRAPH_FUSION_MODE_GREEDY"}),
    "concurrency-scheduler": Variant(options={"xla_cpu_enable_concurrency_optimized_scheduler": True}),
    "single-thread-eigen": Variant(options={"xla_cpu_multi_thread_eigen": False}),
    "fast-min-max": Variant(options={"xla_cpu_enable_fast_min_max": True}),  # NaN semantics of max only
}


# Variant.impl names for replacements of the model's own functions while it is traced.
MODEL_PATCHES = {"pool": ("max_pool_2x2", lambda: pool_first_max),
                 "pool-split": ("max_pool_2x2", lambda: pool_split_slices)}


@contextlib.contextmanager
def convolutions(impl):
    """While tracing, every `nn.Conv` uses `impl` as its `conv_general_dilated` (None: Flax's own), or `impl`
    names one of MODEL_PATCHES."""
    original = nn.Conv
    name, replacement = MODEL_PATCHES.get(impl, (None, None)) if isinstance(impl, str) else (None, None)
    kept = getattr(lenet_model, name) if name else None
    if name:
        setattr(lenet_model, name, replacement())
    elif impl is not None:
        nn.Conv = functools.partial(original, conv_general_dilated=impl)
    try:
        yield
    finally:
        nn.Conv = original
        if name:
            setattr(lenet_model, name, kept)


@contextlib.contextmanager
def xla_cpu_defaults(on: bool):
    """While the program is built, ELEC576_XLA_CPU_DEFAULTS=1 when `on` (common/runtime/xla_cpu.py)."""
    old = os.environ.get(xla_cpu.DEFAULTS_VARIABLE)
    if on:
        os.environ[xla_cpu.DEFAULTS_VARIABLE] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(xla_cpu.DEFAULTS_VARIABLE, None)
        else:
            os.environ[xla_cpu.DEFAULTS_VARIABLE] = old


def compiled_step(name: str, config: LeNetConfig):
    """The variant's training call, compiled, and its arguments: (train, totals, state, key, split, indices), where
    `train(state, idx, key, totals, images, labels) -> (state, totals)` and `indices` are 8 calls' [1, 1, b]
    device index arrays."""
    impl, options, xla_defaults = VARIANTS[name]
    b = config.train.batch_size
    with convolutions(impl), xla_cpu_defaults(xla_defaults):  # the program traces the model here, in lower()
        program, state, key, split = prepare(create_model(config), step_lib.make_train_step(penalty_fn(config)), 1,
                                             b, (28, 28, 1), 1, eval_batch=b, seed=config.train.seed)
        order = data_lib.epoch_order(split.size, b, config.train.seed, 1)
        indices = [step_lib.put(order[i][None, None], program.mesh, P(None, "model", "data")) for i in range(8)]
        totals = program.zeros(state)
        lowered = program.train.lower(state, indices[0], key, totals, split.images, split.labels)
    return lowered.compile(compiler_options=options), totals, state, key, split, indices


def run(names: list[str], rounds: int, steps: int) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (wall ms per step of each window, CPU ms per step of each window)."""
    config = LeNetConfig()
    runs = {}
    for name in names:
        train, totals, state, key, split, indices = compiled_step(name, config)

        def call(v, i, train=train, key=key, split=split, indices=indices):
            return train(v["state"], indices[i % len(indices)], key, v["totals"], split.images, split.labels)

        runs[name] = {"call": call, "state": state, "totals": totals, "wall": [], "cpu": []}
        for i in range(3):  # warm-up
            runs[name]["state"], runs[name]["totals"] = call(runs[name], i)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            v = runs[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                v["state"], v["totals"] = v["call"](v, i)
            jax.block_until_ready(v["totals"])
            v["wall"].append((time.perf_counter() - t0) / steps * 1e3)
            v["cpu"].append((time.process_time() - c0) / steps * 1e3)
    return {name: (v["wall"], v["cpu"]) for name, v in runs.items()}


def table(times: dict[str, tuple[list[float], list[float]]], batch_size: int = 50) -> str:
    first = next(iter(times))
    wall0, cpu0 = (statistics.median(t) for t in times[first])
    lines = [f"| variant | wall ms/step | img/s | {first} / variant (wall) | CPU ms/step | {first} / variant (CPU) |",
             "|---|---|---|---|---|---|"]
    for name, (wall, cpu) in times.items():
        w, c = statistics.median(wall), statistics.median(cpu)
        rate = batch_size * 1e3 / w
        lines.append(f"| {name} | {w:.1f} | {rate:,.0f} | {wall0 / w:.2f}x | {c:.1f} | {cpu0 / c:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="xla-defaults,plain",
                        help=f"comma list, the first is the reference: {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    setup()
    print(f"# load average before: {os.getloadavg()[0]:.2f}", flush=True)
    times = run(names, args.rounds, args.steps)
    print(table(times))
    print(f"# load average after: {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.steps} steps, medians")


if __name__ == "__main__":
    main()
