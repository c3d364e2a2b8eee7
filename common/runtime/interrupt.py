"""Ctrl-C that always ends a run cleanly: exit 130, earlier results untouched.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be, including
inside JAX's garbage-collection callback (which swallows it: "Exception ignored in _xla_gc_callback", and the
run goes on) or half-way through XLA set-up (a segfault at exit). `install` replaces it with a handler that
only sets a flag; the training loop and `RunDir.commit` call `check`, which raises KeyboardInterrupt from
Python code at a safe point. A second Ctrl-C quits at once (os._exit(130)), still without touching results:
they are only ever replaced by one rename at commit.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

EXIT_CODE = 130
_requested = False


def _handler(signum, frame) -> None:
    global _requested
    if _requested:
        os._exit(EXIT_CODE)  # a second Ctrl-C: the user does not want to wait for the next safe point
    _requested = True
    print("\ninterrupt received; stopping at the next safe point (Ctrl-C again to quit at once)",
          file=sys.stderr, flush=True)


def install() -> Callable[[], None]:
    """Installs the flag-setting handler (main thread only); returns a function that restores the old one."""
    global _requested
    _requested = False
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, _handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def requested() -> bool:
    """True once Ctrl-C has been pressed since `install`."""
    return _requested


def check() -> None:
    """Raises KeyboardInterrupt when Ctrl-C has been pressed: call it between units of work."""
    if _requested:
        raise KeyboardInterrupt
