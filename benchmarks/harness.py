"""Timing harness for the training steps: steady-state images/sec, first-step (compile) time, peak memory."""
from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import numpy as np

from common import host_memory, parallel


def peak_memory_mb() -> dict[str, float]:
    """Peak host RSS, and the accelerator's peak bytes in use where the backend reports it."""
    out = {"peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def time_train_steps(steps, state, batches, rng, *, images_per_step: int, steps_per_call: int = 1,
                     windows: int = 5, steps_per_window: int = 20):
    """Times `steps.train` (a `common.parallel.Steps`) running `steps_per_call` steps per call: one call
    first (compile + run), then warm-up, then `windows` timed windows of about `steps_per_window` steps.
    Returns (result, last state); the step donates its state, so callers continue with the returned one.

    `batches` is a list of host batches cycled through and stacked per call on the host, as the training
    loop does, so input transfer is part of the measured step.
    """
    calls_per_window = max(1, steps_per_window // steps_per_call)

    def stacked(call):
        return parallel.stack_batches([batches[(call * steps_per_call + i) % len(batches)]
                                       for i in range(steps_per_call)])

    t0 = time.perf_counter()
    totals = steps.zeros(state, stacked(0), rng)
    state, totals = steps.train(state, stacked(0), rng, totals)
    jax.block_until_ready(totals)
    first = time.perf_counter() - t0
    for c in range(max(1, 3 // steps_per_call)):  # warm-up
        state, totals = steps.train(state, stacked(c + 1), rng, totals)
    jax.block_until_ready(totals)
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for c in range(calls_per_window):
            state, totals = steps.train(state, stacked(w * calls_per_window + c), rng, totals)
        jax.block_until_ready(totals)
        rates.append(calls_per_window * steps_per_call * images_per_step / (time.perf_counter() - t0))
    return {"train_images_per_sec": statistics.median(rates), "first_call_seconds": first,
            "steps_per_call": steps_per_call, "windows": [round(r, 1) for r in rates]}, state


def time_eval_step(eval_fn, state, batch, *, images_per_step: int, windows: int = 5, steps_per_window: int = 10):
    jax.block_until_ready(eval_fn(state, batch))
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps_per_window):
            out = eval_fn(state, batch)
        jax.block_until_ready(out)
        rates.append(steps_per_window * images_per_step / (time.perf_counter() - t0))
    return {"eval_images_per_sec": statistics.median(rates)}


def random_batches(n: int, batch_size: int, image_shape, seed: int = 0, leading=()):
    rng = np.random.default_rng(seed)
    return [{"image": rng.random(leading + (batch_size,) + tuple(image_shape), dtype=np.float32),
             "label": rng.integers(0, 10, leading + (batch_size,)).astype(np.int32)} for _ in range(n)]


def setup() -> None:
    """What the training entry point does before it trains (see common/host_memory.py)."""
    host_memory.retain_freed_memory()


def emit(record: dict) -> None:
    device = jax.devices()[0]
    record = {**record, "backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
              "malloc": "retain freed" if host_memory.retain_freed_memory() else "default",
              **peak_memory_mb()}
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)
