"""How the jitted training and evaluation programs are compiled on a CPU: two choices, each measured.

1. Convolutions on XLA's multi-threaded Eigen kernels. jaxlib 0.10 hands convolutions, dots and reductions to
   YNNPACK (`ynn_fusion` thunks); its dots and reductions use every core, but its convolutions run on one
   thread: on the 2-core CI machine (quiet) conv2's forward took 10.0 ms of wall and 10.0 ms of CPU time with
   YNNPACK and 5.4 ms wall / 10.8 ms CPU with Eigen. YNNPACK keeps the dots and reductions. On one core the
   single-threaded YNNPACK convolution is the cheaper one (about 8% less CPU time), so it is kept there.
   Programs without convolutions (the recurrent nets) compile to the same optimized HLO either way (checked for
   the RNN, LSTM and GRU steps).
2. No donation of the state into a one-step call. Donated, the parameters and both Nadam moments are updated
   in place, and since the update's three elementwise passes over fc1's 3.2M weights each read old values
   after another has written new ones, XLA copies them first (51 copies in LeNet5's step, 3 of them 12.8 MB);
   not donated, the new state goes to fresh buffers (16 copies, none of fc1's size), which the retained heap
   (common/runtime/host_memory.py) hands back without page faults. A scanned call (k > 1 steps, the recurrent nets)
   updates its carry in place inside the loop anyway and keeps the donation (slightly faster measured).

Measured together (`python -m benchmarks.lenet_ab --variants xla-defaults,plain`, docs/performance.md), LeNet5's
training step on the 2-core machine: about 1.4x XLA's defaults in wall time. Both kernels compute the
convolution to float rounding (tests/test_golden.py holds both to the golden numbers); donation changes no
number. A seed's numbers are the same from run to run on one machine.

`ELEC576_XLA_CPU_DEFAULTS=1` keeps XLA's defaults for both (to measure what this changes). A jaxlib without
the YNNPACK option (older or newer ones may name it differently) gets its own convolution defaults.
"""
from __future__ import annotations

import functools
import os

import jax

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
# YNNPACK for dots and reductions only: jaxlib 0.10's default less its INDIVIDUAL_CONVOLUTION.
EIGEN_CONVOLUTIONS = {YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
# XLA's default in jaxlib 0.10, spelled out (the benchmarks' reference).
YNNPACK_CONVOLUTIONS = {YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in
                                                  ("INDIVIDUAL_DOT", "INDIVIDUAL_CONVOLUTION", "REDUCE"))}
DEFAULTS_VARIABLE = "ELEC576_XLA_CPU_DEFAULTS"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _defaults_asked(backend: str | None) -> bool:
    return (backend or jax.default_backend()) != "cpu" or os.environ.get(DEFAULTS_VARIABLE) == "1"


@functools.cache
def supports(options: tuple) -> bool:
    """Whether this jaxlib's CPU compiler accepts `options` (a sorted tuple of items): one tiny compile."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 - jaxlib raises JaxRuntimeError / ValueError for an unknown option
        return False


def compiler_options(backend: str | None = None) -> dict | None:
    """The options for `jax.jit(..., compiler_options=...)` of a training or evaluation program on `backend`
    (default: jax's): Eigen convolutions on a CPU with two or more usable cores, else None (XLA's defaults)."""
    if _defaults_asked(backend) or usable_cores() < 2:
        return None
    return dict(EIGEN_CONVOLUTIONS) if supports(tuple(sorted(EIGEN_CONVOLUTIONS.items()))) else None


def jit_kwargs(options: dict | None) -> dict:
    """`jax.jit` keyword arguments for `options`: none when there are none (a jax without `compiler_options`
    then never sees the keyword)."""
    return {"compiler_options": options} if options else {}


def program_options(steps_per_call: int, backend: str | None = None) -> dict:
    """`common.core.step.compile_program`'s keyword arguments for this machine: its compiler options and
    whether a training call donates its state."""
    return {"compiler_options": compiler_options(backend), "donate_state": donate_state(steps_per_call, backend)}


def donate_state(steps_per_call: int, backend: str | None = None) -> bool:
    """Whether a training call donates its state: always on an accelerator and for scanned calls, not for a
    one-step call on a CPU (see 2. above)."""
    return _defaults_asked(backend) or steps_per_call > 1
