"""Output folders that are replaced only when a run completes, and the small files every run writes.

A run works in `<out>.partial/`; per-epoch resume state lives there too, so a killed run restarted with the
same `--out` continues from its last complete epoch. On success the folder is moved into place in one rename;
a crash or a bad input leaves any earlier `<out>` untouched.
"""
from __future__ import annotations

import csv
import json
import importlib.metadata
import os
import platform
import shutil
from typing import Any, Iterable

import jax

from common.checkpoint import _jsonable as jsonable  # noqa: F401
from common.checkpoint import atomic_write_json


class RunDir:
    def __init__(self, out: str):
        self.final = os.path.abspath(out.rstrip("/") or out)
        self.work = self.final + ".partial"

    def open(self, keep_partial: bool = True) -> str:
        """Creates the working folder; keeps an existing one (for resuming) unless told not to."""
        if os.path.isdir(self.work) and not keep_partial:
            shutil.rmtree(self.work)
        os.makedirs(self.work, exist_ok=True)
        return self.work

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def commit(self) -> str:
        """Moves the finished working folder to its final place, replacing an earlier result."""
        old = self.final + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(self.final):
            os.replace(self.final, old)
        os.replace(self.work, self.final)
        if os.path.exists(old):
            shutil.rmtree(old)
        return self.final


def write_csv(path: str, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    atomic_write_json(path, obj)


def read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None when it is absent or unreadable (an earlier result that cannot be
    read is treated as missing, not as fatal)."""
    try:
        with open(path) as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def environment_info() -> dict[str, Any]:
    """Library versions and the machine, recorded beside every result."""
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "chex", "numpy", "tensorflow-cpu", "tensorflow",
                "tensorflow-datasets"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "jax_backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
    }
