"""The command line, built from the tasks' own declarations.

A task is a `Task`: its name, one line of help, the flags it takes (`add_arguments(parser)`) and
`run(args) -> exit code`. The entry point (`run.py`) names the tasks in a registry {name: "module:ATTR"};
they are imported when needed, so this library imports no experiment. `main` parses `--task` first, builds
the parser of that task alone (so a flag it does not take is one line and exit 2), sets `args.out`
(default `results/<task>`) and `args.command` (the command line, recorded in each result) and runs it.

Flags left unset stay None, so the experiment's config dataclass keeps its defaults (the report's values):
the CLI only overrides fields, it never holds a second copy of a hyperparameter.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib
import math
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from common.core.config import field_names
from common.core.errors import TrainingDiverged, UserError
from common.runtime import compile_cache, distributed, host_memory, interrupt, locks


@dataclasses.dataclass(frozen=True)
class Task:
    """What `run.py --task NAME` runs, as its package declares it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    needs: tuple[str, ...] = ()  # tasks whose output it reads (`--task all` skips it when one failed)
    # Its own settings in `--task all`: (quick, results root) -> argv.
    all_args: Callable[[bool, str], list[str]] = lambda quick, root: []
    all_skips: tuple[str, ...] = ()  # flags it takes alone but not from `--task all`
    report: Any = None  # its section of the report (a common.report.Section), if it has one
    default_out: str | None = None  # default: results/<name>
    # What --out is: "result" (replaced whole, only when it is this task's earlier result), "root" (a folder of
    # task results; the task checks its members), "report" (files written into an existing folder) or "file"
    # (one file the task writes atomically: nothing to claim).
    out_kind: str = "result"
    in_all: bool = True  # False: not run by `--task all` (hours beyond the assignment); its report section shows
    # when its results are under the root


class Registry:
    """Tasks by name, imported on first use from "package.module:ATTRIBUTE" paths, in the order given.

    A value may also be ("package.module:ATTRIBUTE", "its one line of help"): then `run.py --help` lists the
    tasks without importing them (a task module imports jax, scipy and matplotlib: seconds of start-up)."""

    def __init__(self, paths: dict[str, str | tuple[str, str]], title: str = "Results", reference: str = ""):
        self.paths = {name: v if isinstance(v, str) else v[0] for name, v in paths.items()}
        self._helps = {name: v[1] for name, v in paths.items() if not isinstance(v, str)}
        self.title = title  # of the report that gathers the tasks' sections
        self.reference = reference  # the document the report's numbers are set beside

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str) -> Task:
        module, attr = self.paths[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def help(self, name: str) -> str:
        """The task's one line of help: the registry's copy when it has one, else the task's own."""
        return self._helps.get(name) or self.get(name).help


# ----------------------------------------------------------------------------------------- flag types


def _number(cast, ok, expected: str, must: str):
    """An argparse type: `cast(text)`, rejected with one line unless it is finite and `ok(value)`."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not (finite and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer", "a positive integer")


def auto_or_positive_int(text: str):
    """'auto', or a positive integer."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)
nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0", ">= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number", "a finite positive number")
nonneg_float = _number(float, lambda v: v >= 0, "a number >= 0", "a finite number >= 0")
# jax.random.PRNGKey takes the seed as uint32 (without jax_enable_x64): 2**32 would silently give seed 0's key.
MAX_SEED = 2**32 - 1
seed_int = _number(int, lambda v: 0 <= v <= MAX_SEED, "an integer", f"an integer in 0..{MAX_SEED} (the range "
                   "jax.random.PRNGKey takes)")
MANY_SEEDS = 16  # --seeds above this gets a warning: memory and compile time grow with the number of models


def comma_list(item_type, allowed=None):
    """An argparse type: a comma-separated list of `item_type`, each in `allowed` when given."""

    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected one value or a comma-separated list")
        values = [item_type(t) for t in items]
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown value {bad[0]!r}; choose from {', '.join(allowed)}")
        return tuple(values)

    return parse


def scalar_or_list(item_type):
    """One value, or a tuple of several (a hyperparameter swept as a vmapped model axis)."""

    def parse(text: str):
        values = comma_list(item_type)(text)
        return values[0] if len(values) == 1 else values

    return parse


# ---------------------------------------------------------------------------------- shared flag groups


TRAINING_FLAGS = ("--quick", "--epochs", "--batch-size", "--lr", "--seed", "--seeds", "--steps-per-call", "--limit")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every task that trains a classifier (fields of `common.core.config.TrainConfig`, `limit`)."""
    g = parser.add_argument_group("training (defaults: the report's values)")
    g.add_argument("--quick", action="store_true",
                   help="start from the config's shrunk preset (minutes on a laptop; not the report's numbers)")
    g.add_argument("--epochs", type=positive_int)
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--lr", type=scalar_or_list(positive_float),
                   help="learning rate, or a comma list (e.g. 1e-4,1.7e-4,3e-4) trained at once with jax.vmap")
    g.add_argument("--seed", type=seed_int, help=f"seed of initialisation, dropout and batch order (0..{MAX_SEED})")
    g.add_argument("--seeds", type=positive_int, help="train N seeds (seed, seed+1, ...) at once with jax.vmap")
    g.add_argument("--steps-per-call", type=auto_or_positive_int,
                   help="training steps per compiled call, run as one lax.scan; auto (default): a whole epoch "
                        "in chunks on a GPU/TPU, on a CPU 1 for LeNet5 and 50 for the recurrent nets")
    g.add_argument("--limit", type=positive_int, help="train on the first N training examples (smoke runs)")


def add_data_arguments(parser: argparse.ArgumentParser, image_folder: str, image_mode: bool = True) -> None:
    """Where the data come from: an image folder (`image_folder` says which) or a TFDS data folder."""
    d = parser.add_argument_group("data")
    d.add_argument("--data-dir", help=f"image folder in the course layout PATH/{{Train,Test}}/<label>/*.png "
                   f"({image_folder}), or a dataset file FILE.npz (--task export), instead of the TFDS dataset")
    d.add_argument("--tfds-data-dir", help="TFDS data folder (default: $TFDS_DATA_DIR)")
    from common.data import cache as data_cache  # here: the data package imports numpy, which `--help` need not

    data_cache.add_arguments(d)
    if image_mode:
        d.add_argument("--image-mode", choices=("gray28", "rgb32"),
                       help="gray28: 28x28 grayscale as the course did (default); rgb32: CIFAR10's 32x32 colour")


def config_from_args(config, args: argparse.Namespace, **overrides):
    """`config` (an instance: the defaults, or its quick() preset) overridden by every flag the user set
    whose name is a field of it, then by `overrides`."""
    names = field_names(config)
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config.replace(**values)


# ------------------------------------------------------------------------------------------- parsing


class _OneLineParser(argparse.ArgumentParser):
    """Flag errors as one line and a hint, not the whole usage."""

    hint = "run.py --help"

    def error(self, message: str):
        self.exit(2, f"run.py: error: {message} (see {self.hint})\n")


# XLA's GPU kernels may sum in a different order from run to run (atomics in scatters and reductions): this flag
# makes them deterministic. Read when jax starts its backend, so it is set before (`deterministic_gpu_ops`).
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


def deterministic_gpu_ops(args: argparse.Namespace) -> None:
    """--deterministic: XLA_FLAGS gains DETERMINISTIC_XLA_FLAG (metrics.json records XLA_FLAGS with the command's
    environment: common.runtime.outputs.COMMAND_ENV)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if getattr(args, "deterministic", False) and DETERMINISTIC_XLA_FLAG not in flags.split():
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_XLA_FLAG}".strip()


def _base_parser(registry: Registry, add_help: bool) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="run.py", add_help=add_help,
                                     description="ELEC 576 Assignment 2 in JAX/Flax.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=registry.names, metavar="TASK",
                        help="one of: " + ", ".join(registry.names) + " (run.py --task TASK --help: its flags)")
    parser.add_argument("--out", help="output folder (default: results/<task>)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--deterministic", action="store_true",
                        help=f"same seed, same numbers on a GPU too: adds {DETERMINISTIC_XLA_FLAG} to XLA_FLAGS "
                             "(slower; a CPU is deterministic without it)")
    distributed.add_arguments(parser)
    parser.registry = registry  # for the tasks whose flags are other tasks' (`--task all`)
    return parser


def build_parser(registry: Registry, task: str) -> argparse.ArgumentParser:
    """The parser of one task: the common flags and the task's own."""
    spec = registry.get(task)
    parser = _base_parser(registry, add_help=True)
    parser.description = f"run.py --task {task}: {spec.help}"
    parser.hint = f"run.py --task {task} --help"
    spec.add_arguments(parser)
    return parser


def parse_args(registry: Registry, argv: list[str]) -> argparse.Namespace:
    """--task first, then that task's own parser; unknown flags are one line and exit 2."""
    known, _ = _base_parser(registry, add_help=False).parse_known_args(argv)
    parser = build_parser(registry, known.task)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"{unknown[0]} is not a flag of --task {known.task}")
    _check_seeds(parser, args)
    args.out = args.out or registry.get(args.task).default_out or os.path.join("results", args.task)
    args.command = shlex.join(["run.py"] + list(argv))
    args.registry = registry
    return args


def _check_seeds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--seed S --seeds N trains seeds S..S+N-1: all must be valid seeds; many of them get a warning."""
    seed, seeds = getattr(args, "seed", None), getattr(args, "seeds", None)
    if seeds and (seed or 0) + seeds - 1 > MAX_SEED:
        parser.error(f"--seed {seed or 0} --seeds {seeds} reaches seed {(seed or 0) + seeds - 1}, above {MAX_SEED}")
    if seeds and seeds > MANY_SEEDS:
        print(f"warning: --seeds {seeds} trains {seeds} models at once: memory, compile time and the time one "
              "training call takes (Ctrl-C waits for it) all grow with the number of models; try a few first",
              file=sys.stderr)


class _QuietStdout:
    """sys.stdout that swallows BrokenPipeError (`run.py ... | head -1`): the run goes on and finishes its
    results; what it prints after the reader left goes to /dev/null."""

    def __init__(self, stream):
        self._stream, self.broken = stream, False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._break()

    def _break(self) -> None:
        self.broken = True
        try:  # so that the interpreter's own flush at exit finds a sink, not the closed pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def safe_stdio() -> None:
    """Output never fails a run. A closed stdin, stdout or stderr (`run.py ... >&-`) is opened on /dev/null,
    so no file the run opens takes its number (C++ logging would write into it); an ASCII-only one
    (PYTHONIOENCODING=ascii, LANG=C) writes other characters as backslash escapes instead of failing."""
    for fd, name, mode in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        stream = getattr(sys, name)
        if stream is None:  # Python found the descriptor closed at start-up
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False, errors="backslashreplace"))
        elif fd:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def main(registry: Registry | dict, argv: list[str] | None = None) -> int:
    """Runs one task as the command line says; returns the exit code (2: bad input, 130: interrupted)."""
    registry = registry if isinstance(registry, Registry) else Registry(registry)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv in ([], ["-h"], ["--help"]):
        _print_tasks(registry)
        return 0 if argv else 2
    restore = interrupt.install()  # first: Ctrl-C while the task's imports load is handled like any other
    safe_stdio()
    stdout, sys.stdout = sys.stdout, _QuietStdout(sys.stdout)
    try:
        args = parse_args(registry, argv)
        deterministic_gpu_ops(args)  # before anything starts a JAX backend
        host_memory.retain_freed_memory()
        compile_cache.enable()  # reruns and sweep members reuse compiles (ELEC576_JAX_CACHE=off: none)
        return run_task(registry.get(args.task), args)
    finally:
        sys.stdout = stdout
        restore()


def run_task(task: Task, args: argparse.Namespace) -> int:
    """`task.run(args)` with the errors a user can cause turned into one line and an exit code."""
    try:
        distributed.initialize(args)  # before anything touches a JAX backend; nothing unless asked for
        check_backend()
        code = guarded_run(task, args)
        if interrupt.requested():  # Ctrl-C after the last safe point: still 130, but the results are whole
            print("interrupted after the results were written", file=sys.stderr)
            return interrupt.EXIT_CODE
        return code
    except (UserError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except OSError as e:
        if distributed.peer_failure(e):
            distributed.peer_died()
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from common.runtime import outputs  # here, like jax: this module loads before the Ctrl-C handler is in place

        print(f"error: {outputs.write_error(e.filename or 'a file', e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if distributed.peer_failure(e):  # one line and PEER_DIED, never JAX's abort at exit
            distributed.peer_died()
        raise
    finally:
        distributed.finish()  # the other processes of a multi-process run: this one ends of its own accord


def check_backend() -> None:
    """A JAX_PLATFORMS naming a backend this machine lacks (gpu, cuda on a CPU machine) is one UserError."""
    wanted = os.environ.get("JAX_PLATFORMS", "").strip()
    if not wanted:
        return
    import jax  # here: `run.py` loads this module before the Ctrl-C handler is installed, and jax takes seconds

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as e:  # jax raises AssertionError('') for "cuda" without a GPU
        reason = str(e).split(" (set JAX_PLATFORMS")[0] or "no such device"
        raise UserError(f"JAX_PLATFORMS={wanted}: that backend cannot start on this machine ({reason}); unset "
                        "JAX_PLATFORMS or set it to cpu") from None


def guarded_run(task: Task, args: argparse.Namespace) -> int:
    """`task.run(args)` holding `args.out` (checked: a folder this task may replace, writable; then locked
    against other runs, nested folders included) throughout, so a bad or busy --out is one line before any
    data are loaded."""
    from common import data
    from common.runtime import outputs  # import jax and numpy: not at the top (see check_backend)

    interrupt.check()
    data.check_out_outside_data(args.out, getattr(args, "data_dir", None), getattr(args, "mnist", None))
    if task.out_kind == "result":
        outputs.check_replaceable(args.out, task.name)
    elif task.out_kind == "report":
        if os.path.isdir(args.out) and not os.access(args.out, os.W_OK | os.X_OK):
            raise UserError(f"--out {args.out}: cannot write into it (permission denied or read-only); the "
                            "report needs to write report.html and REPORT.md there")
        return int(task.run(args) or 0)  # it only adds two files: no claim, so it runs beside training runs
    elif task.out_kind == "file":
        return int(task.run(args) or 0)
    if not distributed.is_writer():  # process 0 holds the lock of a multi-process run's --out
        return int(task.run(args) or 0)
    outputs.check_partial(args.out)  # a <out>.partial the project did not make: refused, never adopted
    with locks.claim(args.out, task.name, getattr(args, "command", None)):
        done = outputs.finish_commit(locks.resolve(args.out), task.name)
        if done and done.get("command") == getattr(args, "command", None):
            print(f"{args.out}: the result of this same command, finished by the run that was killed while "
                  "moving it into place; nothing to train again", file=sys.stderr)
            return 0
        return int(task.run(args) or 0)


def _interrupted() -> int:
    print("interrupted; nothing under --out was replaced (rerun the same command to resume training from the last "
          "complete epoch)", file=sys.stderr)
    return interrupt.EXIT_CODE


def _print_tasks(registry: Registry) -> None:
    print("usage: run.py --task TASK [flags]   (run.py --task TASK --help lists its flags)\n\ntasks:")
    for name in registry.names:
        print(f"  {name:<10} {registry.help(name)}")
