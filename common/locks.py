"""One run per output folder: an advisory lock beside it, taken before any work and held until the run ends.

`claim(out)` checks that `out` can be a result folder (not a file, not below a file, writable) and takes
`fcntl.flock` on `<out>.lock`, which holds the owner's pid for the message a second run gets. The kernel drops
a flock when its process dies (Ctrl-C, SIGKILL, a crash), so a lock file left behind by a killed run or a power
loss locks nothing: the next run takes it over and resumes from `<out>.partial` as usual.

Claims are re-entrant within one process (the CLI claims `--out`, then the task's RunDir claims it again), and
a nested result folder (compare's `<out>.partial/lenet`, a sweep's `<out>/lstm_h16`) locks its own file, so a
run never waits on itself.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

from common.errors import UserError

LOCK_SUFFIX = ".lock"

# lock path -> [file descriptor, claim depth, folders this claim created (removed again if left empty)]
_held: dict[str, list] = {}


def check_out(out: str) -> str:
    """The absolute result folder of `--out out`; one-line UserError when it cannot be one (before any work)."""
    final = os.path.abspath(out.rstrip("/") or out)
    for path in (final, final + ".partial"):
        if os.path.lexists(path) and not os.path.isdir(path):
            raise UserError(f"--out {out}: {path} is an existing file, not a folder; give a folder path "
                            "(the file is left as it is)")
    ancestor = os.path.dirname(final)
    while not os.path.exists(ancestor):  # exists() is False for a path below a file, too
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"--out {out} lies below {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write into {ancestor} (permission denied); choose another --out")
    return final


def acquire(out: str) -> str:
    """Claims result folder `out` for this process (re-entrant); returns the lock's path for `release`."""
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
    _held[path] = [fd, 1, created]
    return path


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
    fd, _, created = entry
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still locked, so no other run locks the file being removed
    os.close(fd)
    _remove_empty(created)


def held() -> set[str]:
    """The lock paths this process holds."""
    return set(_held)


@contextlib.contextmanager
def claim(out: str) -> Iterator[str]:
    """`acquire(out)` for the block; on leaving, also releases every claim made inside it and not released
    (a task that failed half-way), so an in-process caller never keeps a folder locked."""
    before = held()
    path = acquire(out)
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
