"""Timing harness for the training steps: steady-state images/sec, first-step (compile) time, peak memory."""
from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from common import data as data_lib
from common.core import step as step_lib
from common.core.state import ModelSpec, init_states
from common.runtime import host_memory, xla_cpu


def peak_memory_mb() -> dict[str, float]:
    """Peak host RSS, and the accelerator's peak bytes in use where the backend reports it."""
    out = {"peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def prepare(model, train_step, n_models: int, batch_size: int, image_shape, steps_per_call: int, *,
            eval_batch: int, seed: int = 0, n_examples: int = 2000):
    """What `common.run.fit` builds before its first step: the mesh, the compiled program, the stacked states
    and keys on the devices, and a random uint8 training split put there once. Returns (program, state, keys,
    split)."""
    mesh = step_lib.make_mesh(n_models, batch_size)
    eval_batch = step_lib.eval_batch_for(eval_batch, mesh)
    program = step_lib.compile_program(train_step, n_models, mesh, batch_shape=(batch_size,) + tuple(image_shape),
                                       eval_batch=eval_batch, steps_per_call=steps_per_call,
                                       **xla_cpu.program_options(steps_per_call))  # as training compiles
    specs = [ModelSpec(seed + i, 1e-3) for i in range(n_models)]
    state, keys = init_states(model, (1,) + tuple(image_shape), specs)
    state, keys = step_lib.put((state, keys), mesh, P("model"))
    rng = np.random.default_rng(seed)
    split = data_lib.Split(rng.integers(0, 256, (n_examples,) + tuple(image_shape)).astype(np.uint8),
                           rng.integers(0, 10, n_examples).astype(np.int32))
    return program, state, keys, step_lib.put_split(split, mesh, eval_batch)


def time_train_steps(program, state, split, rng, *, images_per_step: int, windows: int = 5,
                     steps_per_window: int = 20):
    """Times `program.train` as the training loop calls it (indices sent per call, batches gathered on the
    device): one call first (compile + run), then warm-up, then `windows` timed windows of about
    `steps_per_window` steps. Returns (result, last state): the step may donate its state
    (`common.runtime.xla_cpu.donate_state`), so callers continue with the returned one."""
    k = program.steps_per_call
    n_models = rng.shape[0]
    calls_per_window = max(1, steps_per_window // k)
    order = np.stack([data_lib.epoch_order(split.size, images_per_step // n_models, s, 1) for s in range(n_models)], 1)

    def call(c):
        idx = np.stack([order[(c * k + i) % len(order)] for i in range(k)])
        return step_lib.put(idx, program.mesh, P(None, "model", "data"))

    t0 = time.perf_counter()
    totals = program.zeros(state)
    state, totals = program.train(state, call(0), rng, totals, split.images, split.labels)
    jax.block_until_ready(totals)
    first = time.perf_counter() - t0
    for c in range(max(1, 3 // k)):  # warm-up
        state, totals = program.train(state, call(c + 1), rng, totals, split.images, split.labels)
    jax.block_until_ready(totals)
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for c in range(calls_per_window):
            state, totals = program.train(state, call(w * calls_per_window + c), rng, totals, split.images,
                                          split.labels)
        jax.block_until_ready(totals)
        rates.append(calls_per_window * k * images_per_step / (time.perf_counter() - t0))
    return {"train_images_per_sec": statistics.median(rates), "first_call_seconds": first,
            "steps_per_call": k, "windows": [round(r, 1) for r in rates]}, state


def time_evaluation(program, state, split, *, windows: int = 5):
    """Evaluation images/s (all models') of one call over the whole split, as the loop evaluates."""
    n_models = jax.tree_util.tree_leaves(state.params)[0].shape[0]
    jax.block_until_ready(program.evaluate(state, split))
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        jax.block_until_ready(program.evaluate(state, split))
        rates.append(split.size * n_models / (time.perf_counter() - t0))
    return {"eval_images_per_sec": statistics.median(rates)}


def random_batches(n: int, batch_size: int, image_shape, seed: int = 0, leading=()):
    rng = np.random.default_rng(seed)
    return [{"image": rng.random(leading + (batch_size,) + tuple(image_shape), dtype=np.float32),
             "label": rng.integers(0, 10, leading + (batch_size,)).astype(np.int32)} for _ in range(n)]


def setup() -> None:
    """What the training entry point does before it trains (see common/runtime/host_memory.py)."""
    host_memory.retain_freed_memory()


def emit(record: dict) -> None:
    device = jax.devices()[0]
    record = {**record, "backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
              "malloc": "retain freed" if host_memory.retain_freed_memory() else "default",
              "cpu_convolutions": ("eigen" if xla_cpu.compiler_options() else "xla default")
              if jax.default_backend() == "cpu" else None,
              **peak_memory_mb()}
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)
