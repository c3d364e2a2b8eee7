"""Keeps freed host memory in the process, so that XLA:CPU's per-step buffers are not page-faulted in every step.

XLA:CPU allocates each step's temporaries (activations, gradients, optimizer updates) with `malloc` and frees them
when the step ends. glibc serves large blocks with `mmap` and gives them back with `munmap`, and trims the top of
its heap once enough is free, so the next step faults the same memory in again, page by page. Measured on the
2-core CI machine, one LeNet5 training step took about 10,000 minor page faults and half a core of kernel time
(35 ms a step); with the two thresholds below raised it takes none (23 ms a step). The recurrent nets gain too.

The cost: the process keeps its peak heap until it exits, which a training run reaches in its first step anyway.

What it does not reach: a block that XLA's worker threads allocate comes from their own arenas, whose heaps are at
most 64 MiB, so a larger one (the restacked state of several LeNet5 models: fc1's kernel is 12.8 MB a model) is still
mapped and faulted in every step. glibc's `MALLOC_ARENA_MAX=1`, set by the user, sends every thread to the main
arena: LeNet5 sweeps train 1.2-1.5x faster with it, the recurrent nets about 12% slower, so it is not set here
(docs/performance.md, "Models trained together"); a user's setting is kept.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int

# A user who sets glibc's own variables keeps them.
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_applied = False


def retain_freed_memory() -> bool:
    """Tells glibc's malloc to reuse freed blocks instead of returning them to the OS; idempotent.

    Returns whether the setting is in force: False off Linux/glibc, when the user set glibc's MALLOC_*_THRESHOLD_
    variables, or when ELEC576_DEFAULT_MALLOC=1 asks for glibc's defaults (to measure what this changes).
    """
    global _applied
    if _applied:
        return True
    if (not sys.platform.startswith("linux") or os.environ.get("ELEC576_DEFAULT_MALLOC") == "1"
            or any(v in os.environ for v in _USER_VARIABLES)):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, _LARGEST))
    return _applied
