"""`python run.py --task all [--quick]`: every task in order into subfolders of --out, then the report.

--out is the results root (default `results`): lenet/, visualize/, deconv/, rnn/, compare/, then
report.html and REPORT.md, and run_all.json (each task's status, time and command). Each task is started
exactly as `python run.py <its argv>` would start it (one code path: the CLI's parser and the task's run),
and records that argv as its command, so every result says how to remake it on its own.

--quick shrinks the settings so the whole chain finishes in minutes on a laptop CPU. Flags given to
`--task all` are handed on after the quick settings, so they win (`--epochs 1 --limit 200` shrinks further).
--data-dir (the CIFAR10 image folder) goes to the CIFAR10 tasks only; --tfds-data-dir is a root for every
TFDS dataset (MNIST included), so it goes to all of them.

A task that fails is reported and the chain goes on (tasks that need its output are skipped), so one
failure does not throw away hours of other results; the report lists what is missing, and the exit code
is that of the first failure (2 for bad input).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import sys
import time
import traceback

from common import data as data_lib
from common import outputs
from common.cli import TASKS, build_parser
from common.errors import TrainingDiverged, UserError

ORDER = ("lenet", "visualize", "deconv", "rnn", "compare")
CIFAR_TASKS = ("lenet", "visualize", "deconv")
TRAINING_TASKS = ("lenet", "rnn", "compare")
NEEDS_LENET = ("visualize", "deconv")  # they read the checkpoint `--task lenet` wrote
RUN_ALL_JSON = "run_all.json"

# The report's configuration of each task (the tasks' own defaults, plus the sweep and the BN comparison).
FULL = {
    "lenet": [],
    "visualize": ["--compare-batchnorm"],
    "deconv": [],
    "rnn": ["--cell", "rnn,lstm,gru", "--hidden", "16,32,64,128"],
    "compare": [],
}
# Shrunk so that the chain ends in a few minutes on a 2-core CPU; numbers are not comparable with the report.
QUICK = {
    "lenet": ["--epochs", "2", "--limit", "1000"],
    "visualize": ["--compare-batchnorm"],
    "deconv": [],
    "rnn": ["--cell", "rnn,lstm,gru", "--hidden", "64,128", "--epochs", "1", "--limit", "2000"],
    "compare": ["--epochs", "2", "--limit", "2000"],
}

# Flags of `--task all` handed on to the tasks that use them: namespace attribute -> (option, tasks).
FORWARD = {
    "epochs": ("--epochs", TRAINING_TASKS),
    "batch_size": ("--batch-size", TRAINING_TASKS),
    "lr": ("--lr", TRAINING_TASKS),
    "seed": ("--seed", TRAINING_TASKS),
    "seeds": ("--seeds", ("lenet", "rnn")),  # compare trains one model per net
    "limit": ("--limit", TRAINING_TASKS),
    "use_batchnorm": ("--no-batchnorm", ("lenet",)),
    "progress": ("--no-progress", ORDER),
    "data_dir": ("--data-dir", CIFAR_TASKS),
    "tfds_data_dir": ("--tfds-data-dir", ORDER),
    "image_mode": ("--image-mode", ("lenet",)),
    "cell": ("--cell", ("rnn",)),
    "hidden": ("--hidden", ("rnn",)),
    "layer": ("--layer", ("deconv",)),
    "filters": ("--filters", ("deconv",)),
    "top_k": ("--top-k", ("deconv",)),
    "split": ("--split", ("deconv",)),
    "mode": ("--mode", ("deconv",)),
}
# Flags whose default is not None: handed on only when they differ from it.
FLAG_DEFAULTS = {"progress": True}


def forwarded_flags(task: str, args) -> list[str]:
    """The options the user gave `--task all` that `task` takes, as argv."""
    argv = []
    for attr, (option, tasks) in FORWARD.items():
        value = getattr(args, attr, None)
        if task not in tasks or value is None or value == FLAG_DEFAULTS.get(attr):
            continue
        if task == "compare" and attr == "lr" and isinstance(value, tuple):
            continue  # a list of rates trains several models at once; compare sets one model against one
        if isinstance(value, bool):  # store_const / store_false switches: the option alone
            argv.append(option)
        elif isinstance(value, (tuple, list)):
            argv += [option, ",".join(map(str, value))]
        else:
            argv += [option, str(value)]
    return argv


def task_argv(task: str, root: str, quick: bool = False, args=None) -> list[str]:
    """The argv (after `run.py`) that runs `task` into `<root>/<task>`: settings, then the user's flags."""
    argv = ["--task", task, "--out", os.path.join(root, task)]
    if task in NEEDS_LENET:
        argv += ["--checkpoint", os.path.join(root, "lenet")]
    argv += (QUICK if quick else FULL)[task]
    if args is not None:
        argv += forwarded_flags(task, args)
        if task == "visualize" and args.use_batchnorm is False:
            # The main net already has no batch norm, so there is nothing to compare it with.
            argv.remove("--compare-batchnorm")
    return argv


@contextlib.contextmanager
def recorded_argv(argv: list[str]):
    """Sets sys.argv while a task runs, so its metrics.json records the command that remakes it alone."""
    saved = sys.argv
    sys.argv = ["run.py"] + argv
    try:
        yield
    finally:
        sys.argv = saved


def run_task(task: str, argv: list[str]) -> tuple[int, str]:
    """Runs one task as `python run.py argv` would; returns (exit code, '' or why it failed)."""
    module_name, _ = TASKS[task]
    args = build_parser().parse_args(argv)
    try:
        module = importlib.import_module(module_name)
        with recorded_argv(argv):
            return int(module.run(args) or 0), ""
    except ModuleNotFoundError as e:
        if e.name and (module_name + ".").startswith(e.name + "."):
            return 1, f"the task's module {module_name} is not in this checkout"
        traceback.print_exc()
        return 1, f"{e.__class__.__name__}: {e}"
    except (UserError, TrainingDiverged) as e:
        return e.exit_code, str(e)
    except Exception as e:  # a bug in one task: show it, keep the other tasks' results coming
        traceback.print_exc()
        return 1, f"{e.__class__.__name__}: {e}"


def run(args) -> int:
    root = args.out or "results"
    if args.data_dir:
        data_lib.validate_image_folder(args.data_dir)  # a wrong folder fails now, not after the first tasks
    os.makedirs(root, exist_ok=True)
    command = shlex.join(["run.py"] + sys.argv[1:])
    t_start, records, failed = time.perf_counter(), [], {}
    for task in ORDER:
        argv = task_argv(task, root, args.quick, args)
        record = {"task": task, "command": shlex.join(["python", "run.py"] + argv)}
        needs = "lenet" if task in NEEDS_LENET else None
        if needs in failed:
            record.update(status=f"skipped: {needs} failed", seconds=None)
        else:
            print(f"\n=== {task}: {record['command']}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            code, why = run_task(task, argv)
            record.update(status="ok" if code == 0 else f"failed ({why})", seconds=time.perf_counter() - t0)
            if code:
                failed[task] = code
                print(f"=== {task} failed: {why}", file=sys.stderr, flush=True)
        records.append(record)
        _write_summary(root, command, records, time.perf_counter() - t_start)

    report_argv = ["--task", "report", "--out", root]
    code, why = run_task("report", report_argv)
    if code:
        failed["report"] = code
        print(f"=== report failed: {why}", file=sys.stderr)
    for r in records:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f} s"
        print(f"{r['task']:<10} {seconds:>7}  {r['status']}", file=sys.stdout)
    print(f"all: {time.perf_counter() - t_start:.0f} s; report in {os.path.join(root, 'report.html')}")
    return next(iter(failed.values()), 0)


def _write_summary(root: str, command: str, records: list[dict], wall: float) -> None:
    outputs.write_json(os.path.join(root, RUN_ALL_JSON), {
        "command": command, "tasks": records, "wall_seconds": wall,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": outputs.environment_info()})
