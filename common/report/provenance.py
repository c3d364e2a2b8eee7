"""How a measured number was made, as the report shows it: settings, machine, command (with the environment it
ran under), and the machine's absolute paths made relative. Pure formatting of metrics.json's fields; the
report (common.report) re-exports these names."""
from __future__ import annotations

import os
import re

from common.report.document import Cell, CellLike


def fmt_acc(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def fmt_seconds(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def fmt_lr(lr) -> str:
    """0.00017, or '0.0001,0.0003' for a vmapped list of rates."""
    rates = lr if isinstance(lr, (list, tuple)) else [lr]
    return ",".join("n/a" if r is None else f"{r:g}" for r in rates)


def machine(env: dict | None) -> str:
    """'CPU: x86_64 Linux, 2 CPUs (Intel Xeon ...), load 1.52 at start; jax 0.4.30; commit 1a2b3c4d (dirty)' or
    'NVIDIA H100 (gpu) on ...' from metrics.json's environment."""
    if not env:
        return "n/a"
    jax_version = env.get("versions", {}).get("jax")
    where = (f"CPU: {env.get('machine')}" if env.get("jax_backend") == "cpu"
             else f"{env.get('device')} ({env.get('jax_backend')}) on {env.get('machine')}")
    if env.get("cpu_model"):
        where += f" ({env['cpu_model']})"
    if env.get("load_average"):
        where += f", load {env['load_average'][0]:.2f} at start"
    git = env.get("git") or {}
    commit = (f"; commit {git['commit'][:10]}" + (" (dirty)" if git.get("dirty") else "")
              if git.get("commit") else "")
    return where + (f"; jax {jax_version}" if jax_version else "") + commit


def settings(metrics: dict, default_epochs: int) -> tuple[str, bool]:
    """('25 epochs, batch 50, lr 0.00017', shrunk?) where shrunk means fewer epochs than `default_epochs` (the
    report's) or a limited training set."""
    c = metrics.get("config", {})
    epochs = metrics.get("epochs", c.get("epochs"))
    text = f"{epochs} epoch{'' if epochs == 1 else 's'}, batch {c.get('batch_size')}, lr {fmt_lr(c.get('lr'))}"
    shrunk = False
    if c.get("limit"):
        text += f", first {c['limit']} training examples"
        shrunk = True
    if (c.get("epochs") or 0) < default_epochs:
        shrunk = True
    if shrunk:
        text += " (shrunk run: not comparable with the assignment)"
    return text, shrunk


def command_line(metrics: dict) -> str:
    """The recorded command with the environment variables it ran under ('JAX_PLATFORMS=cpu python run.py
    ...'); paths are left as recorded (the report makes them relative)."""
    env = (metrics.get("environment") or {}).get("command_env") or {}
    prefix = "".join(f"{k}={v} " for k, v in env.items())
    command = metrics.get("command")
    if not command:
        return "n/a"
    return prefix + ("python " + command if command.startswith("run.py") else command)


def provenance(metrics: dict) -> list[CellLike]:
    """Command, seed(s), machine, wall time, finished-at cells (PROVENANCE_HEADERS) of the run that wrote
    `metrics`."""
    seeds = metrics.get("seeds") or [metrics.get("config", {}).get("seed")]
    return [Cell(f"`{command_line(metrics)}`", "small"), ", ".join(map(str, seeds)),
            Cell(machine(metrics.get("environment")), "small"), fmt_seconds(metrics.get("wall_seconds")),
            Cell(metrics.get("finished_at", "n/a"), "small")]


RESULTS_VAR = "R"  # stands for the results folder in commands when it lies outside the working directory
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy")  # the versions the report shows, with Python's


def versions_text(env: dict | None) -> str:
    """'jax 0.4.30, jaxlib 0.4.30, flax 0.8.5, optax 0.2.3, numpy 1.26.4, Python 3.11.9' from an environment."""
    if not env:
        return "n/a"
    versions = env.get("versions") or {}
    shown = [f"{k} {versions[k]}" for k in VERSIONED if versions.get(k)]
    return ", ".join(shown + ([f"Python {env['python']}"] if env.get("python") else [])) or "n/a"


def inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def results_note(root: str) -> str:
    """How to read the paths of a report on `root` (see `relative_paths`)."""
    where = (f"`{os.path.relpath(os.path.abspath(root))}` stands for this results folder in them"
             if inside(root, os.getcwd()) else
             f"`${RESULTS_VAR}` stands for this results folder in them: set it first, e.g. `{RESULTS_VAR}=results`")
    return ("Commands run from the repository root (where run.py is), with paths relative to it; " + where
            + ". Every other file and figure path is relative to this report's folder.")


def relative_paths(text: str, root: str) -> str:
    """`text` without the machine's absolute paths: the results root becomes its path relative to the working
    directory (the repository root, where the commands run) when it lies inside it, else `$R`; the working
    directory and each folder above it become relative paths ('.', '..', '../..'), so the course's data reads
    `../shared/data/...`; a folder beside an outside results folder, `$R/../name`. A path must end at a
    separator, a space, a quote or the end, so '/tmp/a' is not replaced inside '/tmp/ab'."""
    cwd, absroot = os.getcwd(), os.path.abspath(root)
    anchors = {absroot: os.path.relpath(absroot, cwd) if inside(absroot, cwd) else f"${RESULTS_VAR}"}
    folder = cwd
    while os.path.dirname(folder) != folder:
        anchors.setdefault(folder, os.path.relpath(folder, cwd))
        folder = os.path.dirname(folder)
    if not inside(absroot, cwd) and os.path.dirname(absroot) != os.sep:
        anchors.setdefault(os.path.dirname(absroot), f"${RESULTS_VAR}/..")  # beside the results folder
    for anchor in sorted(anchors, key=len, reverse=True):
        pattern = r"(?<![\w.~/$-])" + re.escape(anchor) + r"(?=[/\s`'\"<),;:]|$)"
        text = re.sub(pattern, lambda m, shown=anchors[anchor]: shown, text)
    return text
