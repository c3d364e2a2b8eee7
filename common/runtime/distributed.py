"""Joining a multi-process JAX job (several hosts, or several processes on one) with JAX's own runtime.

Every process runs the same command with its own `--process-id`; `jax.distributed.initialize` connects them
through the coordinator (process 0's HOST:PORT), after which `jax.devices()` lists every process's devices and
one jitted step runs over all of them (see `common.core.step`). Each process reads the whole (small) dataset
and builds only its own shards of each global batch; process 0 alone writes results (`is_writer`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time

from common.core.errors import UserError

DEFAULT_TIMEOUT = 60  # seconds to wait for the coordinator and every peer before giving up
# The exit code of a process whose peer died mid-run (BSD's EX_TEMPFAIL: the same commands, rerun, resume).
PEER_DIED = 75
PEER_DIED_MESSAGE = "another process of this run died; rerun all the commands to resume"
# What JAX's errors say when a collective or the coordination service lost a process.
_joined = False  # set once this process has joined a multi-process job
_PEER_WORDS = ("gloo", "heartbeat", "unavailable", "connection", "socket", "read error", "nccl", "coordination",
               "peer", "barrier", "deadline_exceeded")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("several processes (jax.distributed; see docs/multihost.md)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same for every process")
    g.add_argument("--num-processes", type=int, metavar="N", help="how many processes take part")
    g.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 .. N-1")
    g.add_argument("--distributed", choices=("auto",),
                   help="auto: let JAX detect the cluster (SLURM, Open MPI, Cloud TPU) and its addresses")
    g.add_argument("--distributed-timeout", type=int, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for the coordinator and every peer (default {DEFAULT_TIMEOUT})")


def requested(args) -> bool:
    return bool(args.distributed or args.coordinator or args.num_processes or args.process_id is not None)


def _check(args) -> None:
    if args.distributed:
        return
    missing = [f for f, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                              ("--process-id", args.process_id)) if v is None]
    if missing:
        raise UserError(f"a multi-process run needs --coordinator, --num-processes and --process-id; "
                        f"{', '.join(missing)} missing (or give --distributed auto on a cluster)")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {args.coordinator!r}")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise UserError(f"--process-id must be in 0..{args.num_processes - 1} for --num-processes "
                        f"{args.num_processes}, got {args.process_id}")
    if args.distributed_timeout < 1:
        raise UserError(f"--distributed-timeout must be at least 1 second, got {args.distributed_timeout}")


def initialize(args) -> None:
    """Joins the job the flags describe (nothing when none is asked for); one UserError when it cannot.

    Must run before anything touches a JAX backend. On a CPU it selects gloo, the collectives that work
    across processes. A coordinator that never answers or a peer that never comes ends after the timeout.
    """
    if not requested(args):
        return
    _check(args)
    if args.coordinator:
        host, port = args.coordinator.rsplit(":", 1)
        rendezvous(host, int(port), args.num_processes, args.process_id, args.distributed_timeout)
    import jax  # here, not at the top: the CLI imports this module before its Ctrl-C handler is in place

    # The CPU backend's collectives across processes (gradient all-reduce); GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {} if args.distributed else {"coordinator_address": args.coordinator,
                                          "num_processes": args.num_processes, "process_id": args.process_id}
    try:
        # The heartbeat timeout bounds how long a process waits for a peer that died mid-run.
        jax.distributed.initialize(initialization_timeout=args.distributed_timeout,
                                   heartbeat_timeout_seconds=args.distributed_timeout, **kwargs)
        global _joined
        _joined = jax.process_count() > 1
    except Exception as e:  # connection refused, timeout, a cluster JAX cannot detect: all one line
        what = f"coordinator {args.coordinator}" if args.coordinator else "the cluster"
        raise UserError(f"cannot join the distributed job through {what} within {args.distributed_timeout} s "
                        f"({e.__class__.__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None


def rendezvous(host: str, port: int, n: int, pid: int, timeout: float) -> None:
    """Checks that all n processes are there, on the coordinator's port, before JAX's runtime starts.

    XLA ends a process that cannot reach its coordinator or peers with an abort (no Python exception), so
    this plain-socket meeting comes first: process 0 listens until every other process has said who it is,
    then answers "go" and frees the port for JAX's coordinator. A missing peer, a coordinator that never
    answers, or two processes with one id become one UserError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    if pid == 0:
        _host_rendezvous(port, n, deadline, timeout)
        return
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"the coordinator {host}:{port} (process 0) did not answer within {timeout:g} s; "
                                "start process 0 with the same --coordinator") from None
            time.sleep(0.2)
    conn.sendall(f"{pid} {n}\n".encode())
    conn.settimeout(max(0.1, deadline - time.monotonic()) + 5)
    reader = conn.makefile("rb")
    try:
        answer = reader.readline().decode(errors="replace").strip()
    except OSError:
        answer = ""
    if answer != "go":
        conn.close()
        raise UserError(answer or f"the other processes did not all join within {timeout:g} s")
    _watch(conn, reader)


def _host_rendezvous(port: int, n: int, deadline: float, timeout: float) -> None:
    """Process 0's side of `rendezvous`: wait for processes 1..n-1, then tell each one to go on."""
    peers: dict[int, socket.socket] = {}
    try:
        with socket.create_server(("", port)) as server:
            while len(peers) < n - 1:
                server.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    conn, _ = server.accept()
                    conn.settimeout(5)
                    reader = conn.makefile("rb")
                    pid, count = (int(v) for v in reader.readline().split())
                except (OSError, ValueError):
                    if time.monotonic() > deadline:
                        raise UserError(f"only {len(peers)} of the {n - 1} other processes joined within "
                                        f"{timeout:g} s (missing: process {_missing(peers, n)})") from None
                    continue
                problem = (f"process {pid} says --num-processes {count}, process 0 {n}" if count != n else
                           f"two processes have --process-id {pid}" if pid in peers or not 0 < pid < n else "")
                if problem:
                    conn.sendall(f"{problem}\n".encode())
                    raise UserError(problem)
                peers[pid] = conn, reader
        for conn, _ in peers.values():
            conn.sendall(b"go\n")
    except OSError as e:
        _close(peers)
        raise UserError(f"cannot listen on the coordinator's port {port}: {e.strerror or e}") from None
    except BaseException:
        _close(peers)
        raise
    for conn, reader in peers.values():
        _watch(conn, reader)


def _close(peers: dict) -> None:
    for conn, _ in peers.values():
        conn.close()


_watched: list = []  # the rendezvous connections kept open for the whole run (see `_watch`)


def _watch(conn: socket.socket, reader) -> None:
    """Keeps the rendezvous connection to a peer open and watches it from a thread: when the peer's process
    ends without having said "bye" (`finish`), it died (the kernel closes its sockets even on SIGKILL), and
    this process ends at once with `peer_died`, whatever it was doing: in a collective, compiling, loading data
    or writing. JAX's own notice of a dead process is an abort with a C++ stack dump after the heartbeat
    timeout, and a collective's error comes only when one is under way."""
    conn.settimeout(None)
    _watched.append(conn)

    def wait() -> None:
        try:
            said = reader.readline()
        except (OSError, ValueError):
            said = b""
        if said.strip() != b"bye":
            peer_died()

    threading.Thread(target=wait, name="peer-watch", daemon=True).start()


def finish() -> None:
    """Tells every watched peer that this process ends of its own accord (success or a reported error), so
    that its end is not taken for a death; call once, as the run ends."""
    while _watched:
        with contextlib.suppress(OSError):
            _watched.pop().sendall(b"bye\n")


def _missing(peers: dict, n: int) -> str:
    return ", ".join(str(i) for i in range(1, n) if i not in peers)


def is_writer() -> bool:
    """Only process 0 writes results, figures, history and checkpoints."""
    import jax

    return jax.process_index() == 0


def peer_failure(e: BaseException) -> bool:
    """Whether `e`, raised in a multi-process run, says that another process of it is gone (a collective's
    connection broken, the coordination service's heartbeat missed)."""
    if not _joined or not isinstance(e, (RuntimeError, OSError)):
        return False
    return any(w in str(e).lower() for w in _PEER_WORDS)


def peer_died(*_) -> None:
    """Ends this process now with one line and exit code PEER_DIED. Exiting normally would run JAX's shutdown
    (atexit), whose barrier waits for the dead process and then aborts with a C++ stack dump."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, f"error: {PEER_DIED_MESSAGE}\n".encode())
    os._exit(PEER_DIED)
