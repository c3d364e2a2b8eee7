"""Output folders that are replaced only when a run completes, and the small files every run writes.

A run works in `<out>.partial/`; per-epoch resume state lives there too, so a killed run restarted with the
same `--out` continues from its last complete epoch. On success the folder is moved into place in one rename;
a crash or a bad input leaves any earlier `<out>` untouched. The folder is claimed (`common.locks`: a flock on
`<out>.lock`) from `open` to `commit`, so a second run into the same `--out` is refused instead of sharing the
working folder, and `commit` refuses once Ctrl-C was pressed (`common.interrupt`).

Every file is written through `atomic_write_bytes` (a temporary name, fsync, one rename), so a reader never
sees half a file and a crash never leaves one behind; the text, JSON and CSV writers here are built on it.
"""
from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from common import distributed, interrupt, locks
from common.errors import UserError

METRICS_JSON = "metrics.json"  # what every training run writes into its output folder


def atomic_write_bytes(path: str, payload: bytes) -> None:
    """Writes `payload` to a temporary name beside `path`, syncs it, then renames it over `path`."""
    tmp = f"{path}.tmp-{os.getpid()}"  # the pid keeps two processes writing the same file apart
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    """`text` as UTF-8, atomically (see atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
    """`obj` as indented JSON, atomically; numpy and JAX values are converted by `jsonable`."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=jsonable) + "\n")


def jsonable(x):
    """The `default=` of json.dumps: numpy scalars -> Python numbers, arrays -> nested lists, tuples -> lists."""
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


class RunDir:
    """A result folder written as `<out>.partial/` and moved into place by `commit`, claimed (common.locks)
    from `open` until `commit` or `release`, so two runs never share one working folder.

    In a multi-process run only process 0 claims and writes there; the others write into a scratch folder of
    their own, deleted at the end, and read what they need to resume from the shared `<out>.partial/` (a
    shared filesystem is assumed).
    """

    def __init__(self, out: str):
        self.final = os.path.abspath(out.rstrip("/") or out)
        self.shared = self.final + ".partial"
        self.writer = distributed.is_writer()
        self.work = self.shared if self.writer else tempfile.mkdtemp(prefix=f"process{jax.process_index()}-")
        self._lock: str | None = None

    def open(self, keep_partial: bool = True) -> str:
        """Claims the folder, then creates the working folder; keeps an existing one (for resuming) unless
        told not to."""
        if self._lock is None and self.writer:
            self._lock = locks.acquire(self.final)
        if os.path.isdir(self.work) and not keep_partial:
            shutil.rmtree(self.work)
        try:
            os.makedirs(self.work, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.work} ({e.strerror})") from None
        return self.work

    def path(self, *parts: str) -> str:
        """Where this process writes."""
        return os.path.join(self.work, *parts)

    def shared_path(self, *parts: str) -> str:
        """Where process 0 wrote (what every process resumes from)."""
        return os.path.join(self.shared, *parts)

    def commit(self) -> str:
        """Moves the finished working folder to its final place, replacing an earlier result; refused once
        Ctrl-C was pressed (the earlier result stays)."""
        interrupt.check()
        if not self.writer:
            shutil.rmtree(self.work, ignore_errors=True)
            return self.final
        if os.path.lexists(self.final) and not os.path.isdir(self.final):
            raise UserError(f"{self.final} is a file, not a folder; the result stays in {self.work}")
        old = self.final + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(self.final):
            os.replace(self.final, old)
        os.replace(self.work, self.final)
        if os.path.exists(old):
            shutil.rmtree(old)
        self.release()
        return self.final

    def release(self) -> None:
        """Gives up this folder's claim (idempotent)."""
        if self._lock is not None:
            locks.release(self._lock)
            self._lock = None


def write_csv(path: str, rows: Iterable[dict[str, Any]]) -> None:
    """`rows` as CSV with the union of their keys as columns (first-seen order), atomically."""
    rows = list(rows)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


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


COMMAND_ENV = ("TFDS_DATA_DIR", "JAX_PLATFORMS", "XLA_FLAGS")  # environment variables a result depends on


def git_state(cwd: str | None = None) -> dict[str, Any]:
    """{'commit': HEAD, 'dirty': uncommitted changes?} of the checkout holding this code; None values when it
    is not a git checkout (or git is absent)."""
    here = cwd or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def cpu_info() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ('model name', 'cpu family', 'flags', ...; {} where there
    is no such file)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_model() -> str | None:
    """/proc/cpuinfo's 'model name' (the platform's processor string, or None, where there is none)."""
    return cpu_info().get("model name") or platform.processor() or None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages now (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def environment_info() -> dict[str, Any]:
    """Library versions, the machine, the code's git commit and the environment variables the command ran
    under, recorded beside every result."""
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
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "jax_backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "git": git_state(),
        "command_env": {k: os.environ[k] for k in COMMAND_ENV if os.environ.get(k)},
    }
