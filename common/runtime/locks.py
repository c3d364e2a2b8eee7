"""One run per output folder: an advisory lock beside it, taken before any work and held until the run ends.

`claim(out)` checks that `out` can be a result folder (not a file, not below a file, writable) and takes
`fcntl.flock` on `<out>.lock`, which holds the owner's pid for the message a second run gets. The kernel drops
a flock when its process dies (Ctrl-C, SIGKILL, a crash), so a lock file left behind by a killed run or a power
loss locks nothing: the next run takes it over and resumes from `<out>.partial` as usual.

Claims are re-entrant within one process (the CLI claims `--out`, then the task's RunDir claims it again), and
a nested result folder (compare's `<out>.partial/lenet`, a sweep's `<out>.partial/lstm_h16`) locks its own file,
so a run never waits on itself. Claims of other processes exclude nested folders too: a run into `A/B` is refused
while another holds `A` (whose commit would replace `A/B`), and a run into `A` while another holds a folder
inside `A` or `A.partial` (found up to `NESTED_DEPTH` levels down). Each side takes its own lock before it looks
for the other's, so of two runs started together at least one sees the other. Paths are resolved through
symlinks first, so two names of one folder are one claim.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from common.core.errors import UserError

LOCK_SUFFIX = ".lock"
PARTIAL_SUFFIX = ".partial"
NESTED_DEPTH = 4  # how deep below a claimed folder other runs' locks are looked for
NESTED_MAX_ENTRIES = 20000  # and at most this many entries (a huge folder is never a result of ours anyway)

# lock path -> [file descriptor, claim depth, folders this claim created (removed again if left empty),
#              {"task", "command"} the claim is for]
_held: dict[str, list] = {}


def resolve(out: str) -> str:
    """The absolute, symlink-free path of result folder `out` (a link is written through)."""
    return os.path.realpath(out.rstrip("/") or out)


def check_out(out: str) -> str:
    """The absolute result folder of `--out out`; one-line UserError when it cannot be one (before any work)."""
    final = resolve(out)
    if os.path.ismount(final):
        raise UserError(f"--out {out} is a mount point, which a finished run cannot replace; give a folder "
                        f"inside it (e.g. {os.path.join(out, 'result')})")
    for path in (final, final + ".partial"):
        if os.path.lexists(path) and not os.path.isdir(path):
            raise UserError(f"--out {out}: {path} is an existing file, not a folder; give a folder path "
                            "(the file is left as it is)")
    ancestor = os.path.dirname(final)
    while not os.path.exists(ancestor):  # exists() is False for a path below a file, too
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"--out {out} lies below {ancestor}, which is a file, not a folder")
    check_name_lengths(out, final, ancestor)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write into {ancestor} (permission denied); choose another --out")
    return final


# The longest name derived from a result folder's: `<out>.partial.other-YYYYmmdd-HHMMSS-NN` (set aside);
# `<out>.replaced-<time>-NN`, `<out>.partial` and `<out>.lock` are shorter.
DERIVED_SUFFIX = len(".partial.other-20260101-000000-99")
DEEPEST_INSIDE = 200  # what a run writes below its folder, at most (a sweep member's checkpoint's temporary file)


def check_name_lengths(out: str, final: str, ancestor: str) -> None:
    """UserError (before any work) when a name of `--out` is too long for the filesystem, or its own name leaves
    no room for the names derived from it, which would fail only at commit, after the training."""
    try:
        name_max, path_max = os.pathconf(ancestor, "PC_NAME_MAX"), os.pathconf(ancestor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in final.split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise UserError(f"--out {out}: the name {part[:40]}... is {len(os.fsencode(part))} bytes, longer than "
                            f"the {name_max} this filesystem allows; choose a shorter --out")
    size = len(os.fsencode(os.path.basename(final)))
    if size + DERIVED_SUFFIX > name_max:
        raise UserError(f"--out {out}: its name is {size} bytes, and the run also writes "
                        f"{os.path.basename(final)[:20]}...partial.other-<time> beside it: at most "
                        f"{name_max - DERIVED_SUFFIX} bytes fit; choose a shorter --out")
    if len(os.fsencode(final)) + DERIVED_SUFFIX + DEEPEST_INSIDE > path_max:
        raise UserError(f"--out {out}: the path is {len(os.fsencode(final))} bytes, too long for the files the run "
                        f"writes inside it (the limit is {path_max}); choose a shorter --out")


def acquire(out: str, task: str | None = None, command: str | None = None) -> str:
    """Claims result folder `out` for this process (re-entrant), for a result of `task` made by `command`
    (recorded for the folder's marker); returns the lock's path for `release`."""
    final = check_out(out)
    path = final + LOCK_SUFFIX
    if path in _held:
        _held[path][1] += 1
        return path
    created = _makedirs(os.path.dirname(final))
    try:
        fd = _lock_file(path, out)
    except BaseException:
        _remove_empty(created)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _held[path] = [fd, 1, created, {"task": task, "command": command}]
    try:
        _check_nested(final, out)
    except BaseException:
        release(path, completely=True)
        raise
    return path


def claim_info(final: str) -> dict:
    """{'task', 'command'} this process claimed folder `final` for (None values when unknown or not claimed)."""
    entry = _held.get(resolve(final) + LOCK_SUFFIX)
    return dict(entry[3]) if entry else {"task": None, "command": None}


def is_locked(path: str) -> bool:
    """Whether lock file `path` is held by another open file (another run; or this process through another
    descriptor, which `_held` lists)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            return (f.read(200).split() or ["unknown"])[0]
    except OSError:
        return "unknown"


def _check_nested(final: str, out: str) -> None:
    """UserError when another run holds a folder that contains `final`, or one inside it."""
    folder = os.path.dirname(final)
    while folder != os.path.dirname(folder):
        for owner in {folder, folder.removesuffix(PARTIAL_SUFFIX)}:
            lock = owner + LOCK_SUFFIX
            if lock not in _held and is_locked(lock):
                raise UserError(f"--out {out} lies inside {owner}, which another run (pid {_holder(lock)}) is "
                                "writing and will replace; wait for it to end or choose another --out")
        folder = os.path.dirname(folder)
    for lock in _locks_below(final):
        if lock not in _held and is_locked(lock):
            raise UserError(f"--out {out} holds {lock.removesuffix(LOCK_SUFFIX)}, which another run (pid "
                            f"{_holder(lock)}) is writing; wait for it to end or choose another --out")


def _locks_below(final: str) -> Iterator[str]:
    """Lock files inside `final` and `final.partial`, at most NESTED_DEPTH levels down."""
    seen = 0
    for top in (final, final + PARTIAL_SUFFIX):
        for base, dirs, files in os.walk(top):
            seen += len(dirs) + len(files)
            if seen > NESTED_MAX_ENTRIES:
                return
            if base[len(top):].count(os.sep) >= NESTED_DEPTH:
                dirs.clear()
            yield from (os.path.join(base, n) for n in files if n.endswith(LOCK_SUFFIX))


def _lock_file(path: str, out: str) -> int:
    """An open descriptor of `path` holding its exclusive flock; UserError naming the holder when busy."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"--out {out}: cannot create {path} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            pid = holder[0] if holder else "unknown"
            raise UserError(f"{out} is in use by another run (pid {pid}); wait for it to end or choose "
                            "another --out") from None
        # The previous holder unlinks the file as it releases: a lock on an unlinked file guards nothing.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def release(path: str, completely: bool = False) -> None:
    """Undoes one `acquire` (all of them with `completely`); the last one removes the lock file."""
    entry = _held.get(path)
    if entry is None:
        return
    entry[1] = 0 if completely else entry[1] - 1
    if entry[1] > 0:
        return
    del _held[path]
    fd, _, created, _ = entry
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still locked, so no other run locks the file being removed
    os.close(fd)
    _remove_empty(created)


def held() -> set[str]:
    """The lock paths this process holds."""
    return set(_held)


@contextlib.contextmanager
def claim(out: str, task: str | None = None, command: str | None = None) -> Iterator[str]:
    """`acquire(out, task, command)` for the block; on leaving, also releases every claim made inside it and
    not released (a task that failed half-way), so an in-process caller never keeps a folder locked."""
    before = held()
    path = acquire(out, task, command)
    try:
        yield path
    finally:
        for other in held() - before:
            release(other, completely=True)


def _makedirs(folder: str) -> list[str]:
    """os.makedirs, returning the folders it created (deepest last)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for d in reversed(missing):
        os.makedirs(d, exist_ok=True)
    return list(reversed(missing))


def _remove_empty(created: list[str]) -> None:
    """Removes the folders a claim created when nothing was put in them (a run refused before any work)."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(d)
