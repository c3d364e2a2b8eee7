"""Output folders that are replaced only by a finished result of this project, and the files every run writes.

A run works in `<out>.partial/`; per-epoch resume state lives there too, so a killed run restarted with the same
`--out` continues from its last complete epoch. On success `commit` writes a marker (`.elec576-result.json`:
task, config, finish time and the list of files the run wrote) and moves the folder into place. What is at
`--out` already is replaced only when it is such a result of the same task (`refusal` says why anything else
is refused, before any work): the old result is renamed to `<out>.replaced-<time>`, the new one renamed
into place, then the old folder's files that its marker lists are deleted; anything else in it (a user's notes)
stays there and a note says so. A crash, a bad input or Ctrl-C leaves any earlier `<out>` untouched. `--out` is
resolved through symlinks (the result is written where the link points); a mount point is refused. The folder
is claimed (`common.runtime.locks`) from `open` to `commit`, and `commit` refuses once Ctrl-C was pressed. A
`<out>.partial` the project did not make is refused (`partial_refusal`); what a kill during a commit left (a
finished `.partial`, a half-discarded `.replaced-*`) is finished by the next run (`finish_commit`,
`finish_replacing`); what must leave a working folder goes out of every one, once (`set_aside`).

Every file is written through `atomic_write_bytes` (a temporary name, fsync, one rename, fsync of the folder):
a reader never sees half a file, the temporary file is removed on every error path, and a full disk or an
unwritable folder is one UserError. Temporary files left by a killed process are stripped at commit.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from common.core.errors import UserError
from common.runtime import distributed, interrupt, locks, xla_cpu

METRICS_JSON = "metrics.json"  # what every training run writes into its output folder
HISTORY_CSV = "history.csv"  # beside it: one row per epoch (and model) (common.run.results)
MARKER = ".elec576-result.json"  # written by `commit`: this folder is a finished result of this project
PARTIAL = locks.PARTIAL_SUFFIX  # a folder's working name until it is committed: <out>.partial
PARTIAL_MARKER = ".elec576-partial.json"  # written by `open`: this `.partial` folder is a working folder of ours
PROJECT = "elec576-jax"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where run.py is
TMP_TAG = ".tmp-"  # temporary files are `<name>.tmp-<pid>`
_WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted"}


def committed_path(path: str) -> str:
    """`path` as it will be once every folder on it is committed: '/r.partial/lenet.partial/x' -> '/r/lenet/x'."""
    return os.sep.join(p.removesuffix(PARTIAL) if p.endswith(PARTIAL) else p
                       for p in os.path.abspath(path).split(os.sep))


def write_error(path: str, e: OSError) -> Exception:
    """The UserError a user can act on (disk full, read-only, permission) for a failed write, else `e`."""
    if e.errno not in _WRITE_ERRORS:
        return e
    hint = "; free some space and rerun the same command (it resumes)" if e.errno in (errno.ENOSPC, errno.EDQUOT) \
        else "; choose another --out"
    return UserError(f"cannot write {path}: {_WRITE_ERRORS[e.errno]}{hint}")


def fsync_dir(folder: str) -> None:
    """Makes a rename in `folder` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str, payload: bytes) -> None:
    """Writes `payload` to a temporary name beside `path`, syncs it, renames it over `path` and syncs the folder.
    On any error (a full disk, Ctrl-C's second press) the temporary file is removed; a full disk or an
    unwritable folder is one UserError."""
    tmp = f"{path}{TMP_TAG}{os.getpid()}"  # the pid keeps two processes writing the same file apart
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


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


# ------------------------------------------------------------------------------ what a folder holds


def read_marker(folder: str) -> dict | None:
    """The result marker of `folder` (written by `commit`, or `mark_root`), or None when it has none."""
    marker = read_json(os.path.join(folder, MARKER))
    return marker if marker and marker.get("project") == PROJECT else None


def _legacy_task(folder: str) -> str | None:
    """The task of a result written before markers existed (its metrics.json names it), else None."""
    metrics = read_json(os.path.join(folder, METRICS_JSON))
    return metrics.get("task") if metrics and isinstance(metrics.get("task"), str) else None


def _our_results_inside(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if os.path.isdir(os.path.join(folder, n)) and
            (read_marker(os.path.join(folder, n)) or _legacy_task(os.path.join(folder, n)))]


def refusal(out: str, task: str | None) -> str | None:
    """Why `--out out` must not be replaced by a result of `task` (None: it is absent, empty, or a finished
    result of `task` written by this project, so replacing it loses nothing of anyone else's)."""
    final = locks.resolve(out)
    if not os.path.isdir(final) or not (names := sorted(os.listdir(final))):
        return None
    marker = read_marker(final)
    if marker and marker.get("kind") == "result" and (task is None or marker.get("task") in (task, None)):
        return None
    if marker is None and task is not None and _legacy_task(final) == task:
        return None
    head = f"--out {out} is not replaced"
    if marker and marker.get("kind") == "root":
        return f"{head}: it is a results root (one folder per task, made by --task all); give {out}/{task} instead"
    if marker and marker.get("kind") == "result":
        return f"{head}: it holds a {marker.get('task')} result, not a {task} one; choose another --out"
    ours = _our_results_inside(final, names)
    if ours:
        return (f"{head}: it is a folder of results ({', '.join(n + '/' for n in ours[:3])}...), not one "
                f"{task} result; give {os.path.join(out, task or 'NAME')} or a new folder")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"{head}: it is not a finished result of this project (no {MARKER}; it holds {shown}); nothing "
            "there is touched: give a new or empty folder, or move that one away")


def check_replaceable(out: str, task: str | None) -> None:
    """One-line UserError (before any work) unless `refusal(out, task)` is None."""
    why = refusal(out, task)
    if why:
        raise UserError(why)


def mark_root(root: str, command: str | None) -> None:
    """Marks `root` as a results root (one folder per task; `--task all`), never a result to replace whole."""
    atomic_write_json(os.path.join(root, MARKER), {"project": PROJECT, "kind": "root", "command": command,
                                                   "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")})


def _files(folder: str) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it."""
    return sorted(os.path.relpath(os.path.join(base, n), folder) for base, _, names in os.walk(folder) for n in names)


def strip_temporaries(folder: str) -> None:
    """Removes the temporary files a killed writer left (`*.tmp-<pid>`) and stale lock files under `folder`."""
    for rel in _files(folder):
        path = os.path.join(folder, rel)
        name = os.path.basename(rel)
        stale_lock = name.endswith(locks.LOCK_SUFFIX) and path not in locks.held() and not locks.is_locked(path)
        if TMP_TAG in name or stale_lock:
            with contextlib.suppress(OSError):
                os.remove(path)


def unused_name(base: str) -> str:
    """`base`, or `base-2`, `base-3`, ...: the first name nothing exists at (for folders renamed aside)."""
    name, n = base, 1
    while os.path.lexists(name):
        n += 1
        name = f"{base}-{n}"
    return name


def place(work: str, final: str, task: str | None) -> None:
    """Renames finished folder `work` to `final`. An earlier result of `task` there is renamed aside first,
    then only the files its marker lists are deleted (see `_discard`); anything else there is refused."""
    if os.path.lexists(final) and not os.path.isdir(final):
        raise UserError(f"{final} is a file, not a folder; the result stays in {work}")
    if os.path.ismount(final):
        raise UserError(f"{final} is a mount point, which cannot be replaced; the result stays in {work}")
    why = refusal(final, task)
    if why:
        raise UserError(f"{why}; the result stays in {work}")
    aside = None
    if os.path.isdir(final) and os.listdir(final):
        aside = unused_name(f"{final}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(final, aside)
    elif os.path.isdir(final):
        os.rmdir(final)
    try:
        os.replace(work, final)
    except OSError:
        if aside:
            os.replace(aside, final)  # put the earlier result back
        raise
    fsync_dir(os.path.dirname(final))
    if aside:
        try:
            _discard(aside, final)
        except OSError as e:  # the new result is in place; the old one just stays where it was put
            print(f"note: replaced {final}; the earlier result stays in {aside} ({e.strerror})", file=sys.stderr)
            return
    finish_replacing(final)  # what a killed earlier replacement left


def _discard(aside: str, final: str) -> None:
    """Deletes the files of the replaced result `aside` that its marker lists (ours), then its empty folders;
    whatever else is there stays, with a note."""
    marker = read_marker(aside)
    ours = set(marker.get("files", [])) if marker else set()
    for rel in _files(aside):
        if rel in ours:
            os.remove(os.path.join(aside, rel))
    if marker:  # last: a kill before this leaves a folder still known as ours, finished by the next run
        os.remove(os.path.join(aside, MARKER))
    for base, _, _ in sorted(os.walk(aside), key=lambda w: -len(w[0])):  # deepest first
        with contextlib.suppress(OSError):
            os.rmdir(base)
    if os.path.exists(aside):
        what = "files this project did not write" if marker else "earlier result (written before result markers)"
        print(f"note: replaced {final}; its {what} are kept in {aside}", file=sys.stderr)


def _has_files(folder: str) -> bool:
    return any(names for _, _, names in os.walk(folder))


def finish_replacing(final: str) -> None:
    """Completes what a killed `place` left beside `final` once `final` holds a result of ours again: each
    `<final>.replaced-*` folder still carrying its marker has its listed files deleted (`_discard`: anything
    else stays, with a note), and one with no file left in it (an empty husk) is removed."""
    if not (read_marker(final) or {}).get("kind") == "result":
        return  # an earlier result set aside may be the only one there is: leave it
    parent = os.path.dirname(final)
    ours = re.compile(re.escape(os.path.basename(final)) + r"\.replaced-\d{8}-\d{6}(-\d+)?")  # `place`'s names only
    try:
        names = sorted(n for n in os.listdir(parent) if ours.fullmatch(n))
    except OSError:
        return
    for name in names:
        aside = os.path.join(parent, name)
        if os.path.islink(aside) or not os.path.isdir(aside):
            continue
        with contextlib.suppress(OSError):
            if read_marker(aside):
                _discard(aside, final)
            elif not _has_files(aside):
                shutil.rmtree(aside)


def finish_commit(final: str, task: str | None) -> dict | None:
    """When a run was killed during its commit (`<final>.partial` holds a finished result of `task`: its
    marker is written just before `place`), moves that result into place now and finishes discarding the
    earlier one; returns the placed result's marker (None when there was nothing to finish). One process
    only: in a multi-process run the other processes read that folder."""
    work = final + PARTIAL
    marker = read_marker(work)
    if jax.process_count() > 1 or not marker or marker.get("kind") != "result" or \
            (task is not None and marker.get("task") not in (task, None)):
        return None
    strip_temporaries(work)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(work, PARTIAL_MARKER))  # killed between the two markers (see `commit`)
    place(work, final, marker.get("task"))
    print(f"note: the run that made {final} was killed while moving its finished result into place; it is "
          "there now", file=sys.stderr)
    return marker


def partial_refusal(out: str) -> str | None:
    """Why `<out>.partial` must not be used as this run's working folder: it exists and holds something, but
    neither the marker `RunDir.open` writes nor a finished result's, nor only a killed writer's temporary
    files, so this project did not make it (None: it may be used)."""
    work = locks.resolve(out) + PARTIAL
    if not os.path.isdir(work) or is_ours(work):
        return None
    names = sorted(os.listdir(work))
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"--out {out}: {work} exists but was not made by this project (no {PARTIAL_MARKER}; it holds "
            f"{shown}); nothing there is touched: move it away or choose another --out")


def is_ours(work: str) -> bool:
    """Whether working folder `work` was made by this project: its marker, a finished result's marker, or
    nothing but temporary files (a run killed while it wrote the marker); an empty folder counts too."""
    marker = read_json(os.path.join(work, PARTIAL_MARKER))
    if (marker and marker.get("project") == PROJECT) or read_marker(work):
        return True
    return all(TMP_TAG in n and os.path.isfile(os.path.join(work, n)) and not os.path.islink(os.path.join(work, n))
               for n in os.listdir(work))


def check_partial(out: str) -> None:
    """One-line UserError (before any work) when `partial_refusal(out)` says why."""
    why = partial_refusal(out)
    if why:
        raise UserError(why)


_ASIDE: dict[str, str] = {}  # outermost working folder -> the folder this process sets things aside into


def working_root(path: str) -> str | None:
    """The outermost working folder of this project (`*.partial` with its marker) that is or holds `path`."""
    found, folder = None, os.path.abspath(path)
    while True:
        if folder.endswith(PARTIAL) and os.path.isfile(os.path.join(folder, PARTIAL_MARKER)):
            found = folder
        if os.path.dirname(folder) == folder:
            return found
        folder = os.path.dirname(folder)


def copy_result(src: str, dst: str) -> None:
    """A finished result folder `src` copied to `dst` (a member kept by a sweep that does not name it) through a
    temporary name, so a kill never leaves half a copy; files are hard links where the filesystem allows (every
    file is replaced whole, never edited, so sharing is safe)."""
    tmp = f"{dst}{TMP_TAG}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True, copy_function=_link_or_copy)
    os.replace(tmp, dst)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def set_aside(path: str) -> str:
    """Moves `path` (a working folder, or something inside one) out of every working folder, so that no result
    ever carries it and nothing in it is lost; returns where it went: `<W>.other-<time>` for a working folder
    W itself, `<W>.other-<time>/<path inside W>` for what is inside the outermost one (a sweep member's
    `.partial`, `--task all`'s tasks). One run sets aside into one folder."""
    path = os.path.abspath(path)
    root = working_root(os.path.dirname(path))
    if root is None:
        target = unused_name(f"{path}.other-{time.strftime('%Y%m%d-%H%M%S')}")
    else:
        base = _ASIDE.get(root)
        if base is None or not os.path.isdir(base):
            base = _ASIDE[root] = unused_name(f"{root}.other-{time.strftime('%Y%m%d-%H%M%S')}")
        target = unused_name(os.path.join(base, os.path.relpath(path, root)))
        os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(path, target)
    return target


def member_entries(members: Iterable[str]) -> set[str]:
    """What a sweep member may leave in the sweep's working folder: its folder, its `.partial` and its lock."""
    return {m + s for m in members for s in ("", PARTIAL, locks.LOCK_SUFFIX)}


def set_aside_strays(run: RunDir, names: Iterable[str], why: str) -> None:
    """Moves the entries `names` of a sweep's working folder out of it (`set_aside`: nothing is deleted but the
    temporary copies a kill cut short), with one note saying `why` they had to go."""
    moved = []
    for name in names:
        path = run.path(name)
        if TMP_TAG in name:  # ours, cut short by a kill
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        else:
            moved.append(set_aside(path))
    if moved:
        print(f"note: {', '.join(os.path.basename(m) for m in moved[:3])} ({why}) moved aside to "
              f"{os.path.dirname(moved[0])}", file=sys.stderr)


class RunDir:
    """A result folder written as `<out>.partial/` and moved into place by `commit`, claimed (common.runtime.locks)
    from `open` until `commit` or `release`, so two runs never share one working folder.

    `task` and `config` go into the marker `commit` writes, with the command (from the CLI's claim: see
    `locks.claim_info`; when `task` is None, the task comes from there too). In a multi-process run only
    process 0 claims and writes there; the others write into a scratch folder of their own, deleted at the
    end, and read what they need to resume from the shared `<out>.partial/` (a shared filesystem is assumed).
    """

    def __init__(self, out: str, *, task: str | None = None, config: Any = None):
        self.final = locks.resolve(out)
        self.shared = self.final + PARTIAL
        self.task, self.config = task, config
        self.writer = distributed.is_writer()
        self.work = self.shared if self.writer else tempfile.mkdtemp(prefix=f"process{jax.process_index()}-")
        self._lock: str | None = None

    def open(self, keep_partial: bool = True) -> str:
        """Claims the folder, then creates the working folder; keeps an existing one of ours (for resuming)
        unless told not to (then it is deleted). One the project did not make (no marker) is refused, or
        with `keep_partial=False` renamed aside; it is never adopted or emptied. A result a killed run had
        finished there is moved into place first (`finish_commit`)."""
        if self._lock is None and self.writer:
            self._lock = locks.acquire(self.final)
        if self.writer:
            finish_commit(self.final, self.task or locks.claim_info(self.final)["task"])
            finish_replacing(self.final)
            if os.path.isdir(self.work) and read_marker(self.work):  # a finished result not put in place
                aside = set_aside(self.work)  # (another task's; or several processes): kept, never mixed in
                print(f"note: {self.work} held a finished result that was not moved into place: moved aside to "
                      f"{aside}", file=sys.stderr)
        if self.writer and os.path.isdir(self.work):
            if not is_ours(self.work):
                if keep_partial:
                    raise UserError(partial_refusal(self.final))
                aside = unused_name(f"{self.work}.other-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(self.work, aside)
                print(f"note: {self.work} was not made by this project: moved aside to {aside}", file=sys.stderr)
            elif not keep_partial:
                shutil.rmtree(self.work)
            else:
                strip_temporaries(self.work)  # a write cut short by a kill (the marker's, too)
        try:
            os.makedirs(self.work, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.work} ({e.strerror})") from None
        if self.writer and not os.path.exists(os.path.join(self.work, PARTIAL_MARKER)):
            atomic_write_json(os.path.join(self.work, PARTIAL_MARKER), {"project": PROJECT, "out": self.final})
        return self.work

    def path(self, *parts: str) -> str:
        """Where this process writes."""
        return os.path.join(self.work, *parts)

    def shared_path(self, *parts: str) -> str:
        """Where process 0 wrote (what every process resumes from)."""
        return os.path.join(self.shared, *parts)

    def commit(self) -> str:
        """Marks the finished working folder as a result and moves it to its final place (see `place`);
        refused once Ctrl-C was pressed (the earlier result stays)."""
        interrupt.check()
        if not self.writer:
            shutil.rmtree(self.work, ignore_errors=True)
            return self.final
        claim = locks.claim_info(self.final)
        task = self.task or claim["task"]
        strip_temporaries(self.work)
        # The result's marker first, then the working folder's goes: at every instant one of them says "ours".
        atomic_write_json(os.path.join(self.work, MARKER), {
            "project": PROJECT, "kind": "result", "task": task, "config": self.config, "command": claim["command"],
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "files": [f for f in _files(self.work) if f not in (MARKER, PARTIAL_MARKER)]})
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.work, PARTIAL_MARKER))
        place(self.work, self.final, task)
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


def read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None when it is absent or unreadable (an earlier result that cannot be
    read is treated as missing, not as fatal). A link, a FIFO or anything but a regular file counts as absent:
    the project writes none, and a results folder someone sent may hold a link to any file of this machine."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        with open(fd) as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


# environment variables a result depends on
COMMAND_ENV = ("TFDS_DATA_DIR", "JAX_PLATFORMS", "XLA_FLAGS", "ELEC576_XLA_CPU_DEFAULTS")


def git_state(cwd: str | None = None) -> dict[str, Any]:
    """{'commit': HEAD, 'dirty': uncommitted changes?} of the checkout holding this code; None values when it
    is not a git checkout (or git is absent)."""
    here = cwd or PROJECT_ROOT

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
        "xla_compiler_options": xla_cpu.compiler_options(),  # what the training programs were compiled with
        "git": git_state(),
        "command_env": {k: os.environ[k] for k in COMMAND_ENV if os.environ.get(k)},
    }
