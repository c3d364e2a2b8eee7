"""`python -m benchmarks.lenet_profile [--steps 20] [--parts]`: where the LeNet5 train step's time goes on this backend.

Two views, both printed as Markdown tables:
  * the step (default): the training call exactly as `common.run.fit` compiles and calls it
    (`common.core.step.compile_program`'s `train` for one model, batch 50, one step per call, the batch gathered
    from the uint8 training split on the device, via `benchmarks.harness.prepare`) under `jax.profiler`, each
    XLA thunk's time summed over the traced steps and attributed to a layer and a direction (forward, backward,
    optimizer) by the op names XLA keeps in the optimized HLO;
  * `--parts`: each piece jitted alone (conv1, conv2 and their gradients, batch norm, pooling, fc1, the optimizer
    update), their timing windows interleaved; wall time and process CPU time, so that on a shared machine the
    CPU time still tells the work apart from the waiting.

The thunk times are wall times of the thread that ran each thunk: on a loaded machine they include the time that
thread was descheduled. Only the shares compare between machines, and only numbers from one run compare.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec as P

from benchmarks.harness import prepare, setup
from common import data as data_lib
from common.core import step as step_lib
from common.core.state import make_optimizer
from common.runtime import xla_cpu
from lenet.config import LeNetConfig
from lenet.model import LeNet5, create_model, max_pool_2x2
from lenet.train import penalty_fn

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(")
_CALLS, _OP_NAME = re.compile(r"calls=%([\w.\-]+)"), re.compile(r'op_name="([^"]*)"')
_LAYERS = ("conv1", "bn1", "conv2", "bn2", "fc1", "Dropout_0", "fc2")


def layer_of(op_name: str) -> str:
    """'jit(steps)/jvp(LeNet5)/bn2/sub' -> 'bn2 forward', '.../transpose(jvp(LeNet5))/bn2/...' -> 'bn2 backward'.

    The pooling and the ReLUs have no layer name of their own (functions, not modules): their ops are 'pool, relu'.
    The training call's own gather of the batch from the device-resident uint8 split ('jit(train)/gather', with
    the conversion to float XLA fuses into it) is 'batch gather, to_float'. Other ops outside the model (the
    optimizer, the loss, the metrics) are 'optimizer, loss, metrics'."""
    if "LeNet5" not in op_name:  # the step's own ops: the batch gather, optax, the loss, the metrics
        return "batch gather, to_float" if op_name == "jit(train)/gather" else "optimizer, loss, metrics"
    direction = "backward" if "transpose(" in op_name else "forward"
    layer = next((p for p in op_name.split("/") if p in _LAYERS), "pool, relu")
    return f"{layer} {direction}"


def _label(ops: list[tuple[str, str, str | None]], features: tuple[int, ...]) -> str:
    """The label of one thunk from its instructions' (shape, opcode, op_name): named after its convolution or dot
    when it has one (XLA fuses the elementwise ops around them), else after its first op name."""
    for shape, opcode, op_name in ops:
        if opcode == "convolution":
            if op_name is None:  # XLA's rewritten kernel gradient keeps no metadata: its output [in, h, w, out]
                out = int(shape.split("[")[1].split("]")[0].split(",")[-1])
                return f"conv{features.index(out) + 1} kernel gradient"
            layer = layer_of(op_name).split()[0]
            return f"{layer} input gradient" if "transpose(" in op_name else f"{layer} forward"
        if opcode == "dot" and op_name and "LeNet5" in op_name:
            layer = layer_of(op_name).split()[0]
            return f"{layer} forward" if "transpose(" not in op_name else f"{layer} gradient {shape.split('{')[0]}"
    op_name = next((o for _, _, o in reversed(ops) if o), None)  # the root's, or the nearest before it
    return layer_of(op_name) if op_name else "layout copies (no op name)"


def op_layers(hlo_text: str, features: tuple[int, ...] = tuple(LeNetConfig().features)) -> dict[str, str]:
    """Top-level instruction name -> label (see `_label`), from the optimized HLO text."""
    computations, current, entry = collections.defaultdict(list), None, []
    for line in hlo_text.splitlines():
        if line and not line[0].isspace() and "{" in line:
            current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            continue
        m = _INSTRUCTION.match(line)
        if m:
            calls, op_name = (g.group(1) if g else None for g in (_CALLS.search(line), _OP_NAME.search(line)))
            computations[current].append((m.group(2), m.group(3), op_name))
            entry.append((m.group(1), calls, (m.group(2), m.group(3), op_name)))
    return {name: _label(computations.get(calls, []) + [own], features) for name, calls, own in entry}


def thunk_times(trace_dir: str, n_steps: int) -> dict[str, float]:
    """Thunk name -> milliseconds per step, summed over the XLA:CPU threads of the newest trace in `trace_dir`."""
    from jax._src.lib import _profile_data  # the reader jax ships for its own xplane files

    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    totals = collections.Counter()
    for plane in _profile_data.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if line.name.startswith("tf_XLA"):
                for event in line.events:
                    if not event.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
                        totals[event.name] += event.duration_ns / 1e6 / n_steps
    return dict(totals)


def profile_step(n_steps: int = 20) -> tuple[dict[str, float], dict[str, str], float]:
    """(thunk -> ms/step, thunk -> layer, wall ms/step while traced) for the report configuration's step."""
    config = LeNetConfig()
    b = config.train.batch_size
    program, state, key, split = prepare(create_model(config), step_lib.make_train_step(penalty_fn(config)), 1, b,
                                         (28, 28, 1), 1, eval_batch=b, seed=config.train.seed)
    order = data_lib.epoch_order(split.size, b, config.train.seed, 1)  # [steps, b]
    idx = [step_lib.put(order[i % len(order)][None, None], program.mesh, P(None, "model", "data"))
           for i in range(8)]  # [k=1, N=1, b] each, as the loop sends them

    def train(state, totals, i):
        return program.train(state, idx[i % 8], key, totals, split.images, split.labels)

    totals = program.zeros(state)
    layers = op_layers(program.train.lower(state, idx[0], key, totals, split.images, split.labels).compile()
                       .as_text())
    for i in range(5):  # compile and warm up
        state, totals = train(state, totals, i)
    jax.block_until_ready(totals)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            t0 = time.perf_counter()
            for i in range(n_steps):
                state, totals = train(state, totals, i)
            jax.block_until_ready(totals)
            wall = (time.perf_counter() - t0) / n_steps * 1e3
        return thunk_times(trace_dir, n_steps), layers, wall


def step_table(times: dict[str, float], layers: dict[str, str], wall: float) -> str:
    by_layer, top = collections.Counter(), collections.defaultdict(list)
    for name, ms in times.items():
        layer = layers.get(name, "runtime (not an HLO instruction)")
        by_layer[layer] += ms
        top[layer].append((ms, name))
    total = sum(by_layer.values())
    lines = [f"traced step: {wall:.1f} ms wall; thunks {total:.1f} ms (both threads summed)", "",
             "| layer, direction | ms/step | share | largest thunks (ms) |", "|---|---|---|---|"]
    for layer, ms in by_layer.most_common():
        biggest = ", ".join(f"{n} {t:.1f}" for t, n in sorted(top[layer], reverse=True)[:3])
        lines.append(f"| {layer} | {ms:.2f} | {ms / total:.0%} | {biggest} |")
    return "\n".join(lines)


def _conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _batch_norm(x):
    """Flax's training-mode statistics (mean and mean of squares, one pass) and the normalisation."""
    mean, mean2 = x.mean((0, 1, 2)), jnp.square(x).mean((0, 1, 2))
    return (x - mean) * lax.rsqrt(mean2 - jnp.square(mean) + LeNet5.BN_EPSILON)


def _nadam_update(params, grads, opt_state):
    updates, opt_state = make_optimizer(1.7e-4).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def parts(batch: int = 50) -> dict[str, tuple]:
    """name -> (function, *arguments, GFLOP) of each piece of the step, shapes as in the report configuration."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32))

    x1, k1, g1 = r(batch, 28, 28, 1), r(5, 5, 1, 32), r(batch, 28, 28, 32)
    x2, k2, g2 = r(batch, 14, 14, 32), r(5, 5, 32, 64), r(batch, 14, 14, 64)
    h, w1, gh = r(batch, 3136), r(3136, 1024), r(batch, 1024)
    params = create_model(LeNetConfig()).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False)["params"]
    opt_state = make_optimizer(1.7e-4).init(params)
    conv1, conv2 = 2 * batch * 28 * 28 * 25 * 32 / 1e9, 2 * batch * 14 * 14 * 25 * 32 * 64 / 1e9
    fc1 = 2 * batch * 3136 * 1024 / 1e9
    return {
        "conv1 forward": (_conv, x1, k1, conv1),
        "conv1 kernel gradient": (lambda x, g: jax.vjp(lambda k: _conv(x, k), k1)[1](g)[0], x1, g1, conv1),
        "conv2 forward": (_conv, x2, k2, conv2),
        "conv2 input gradient": (lambda k, g: jax.vjp(lambda x: _conv(x, k), x2)[1](g)[0], k2, g2, conv2),
        "conv2 kernel gradient": (lambda x, g: jax.vjp(lambda k: _conv(x, k), k2)[1](g)[0], x2, g2, conv2),
        "batch norm 1 forward+backward": (lambda x, g: jax.vjp(_batch_norm, x)[1](g)[0], g1, g1, 0),
        "batch norm 2 forward+backward": (lambda x, g: jax.vjp(_batch_norm, x)[1](g)[0], g2, g2, 0),
        "pool 1 forward+backward": (lambda x, g: jax.vjp(max_pool_2x2, x)[1](g)[0], g1, x2, 0),
        "fc1 forward (50x3136 @ 3136x1024)": (lambda a, b: a @ b, h, w1, fc1),
        "fc1 input gradient": (lambda g, b: g @ b.T, gh, w1, fc1),
        "fc1 kernel gradient": (lambda a, g: a.T @ g, h, gh, fc1),
        "nadam update, all parameters": (_nadam_update, params, params, opt_state, 0),
        "matmul 4096^3 (the practical peak)": (lambda a, b: a @ b, r(4096, 4096), r(4096, 4096), 2 * 4096**3 / 1e9),
    }


def time_parts(pieces: dict[str, tuple], rounds: int = 7, calls: int = 5) -> dict[str, tuple[float, float]]:
    """name -> (median wall ms, median CPU ms) per call, the pieces' windows interleaved round by round."""
    options = xla_cpu.compiler_options()  # as training compiles (xla_cpu.py)
    jitted = {name: (jax.jit(f, **xla_cpu.jit_kwargs(options)), args[:-1]) for name, (f, *args) in pieces.items()}
    for f, args in jitted.values():
        jax.block_until_ready(f(*args))
    wall, cpu = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(rounds):
        for name, (f, args) in jitted.items():
            n = 1 if "4096" in name else calls
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                out = f(*args)
            jax.block_until_ready(out)
            wall[name].append((time.perf_counter() - t0) / n * 1e3)
            cpu[name].append((time.process_time() - c0) / n * 1e3)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in pieces}


def parts_table(pieces: dict[str, tuple], times: dict[str, tuple[float, float]]) -> str:
    lines = ["| piece | wall ms | CPU ms | GFLOP/s (wall) | GFLOP/s per CPU-second |", "|---|---|---|---|---|"]
    for name, (wall, cpu) in times.items():
        gflop = pieces[name][-1]
        rates = f"{gflop / wall * 1e3:.0f} | {gflop / cpu * 1e3:.0f}" if gflop else "- | -"
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {rates} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="training steps traced")
    parser.add_argument("--parts", action="store_true", help="time the pieces jitted alone instead")
    args = parser.parse_args(argv)
    # Per-thunk trace events; XLA reads its flags when the backend starts, which nothing above has done yet.
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    setup()
    print(f"# {jax.default_backend()}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    if args.parts:
        pieces = parts()
        print(parts_table(pieces, time_parts(pieces)))
    else:
        print(step_table(*profile_step(args.steps)))
        if xla_cpu.compiler_options():
            print("# note: the convolutions run on Eigen's threads (xla_cpu.py), and an Eigen convolution's "
                  "thunk returns when it is launched: those rows (conv1/conv2 forward, kernel gradients) are near 0 "
                  f"here; {xla_cpu.DEFAULTS_VARIABLE}=1 profiles XLA's default step, every layer timed")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
