"""`--task all` (every task in order, then the report) and `--task report`, for any registry of tasks.

--out is the results root (default `results`): one subfolder per task, then report.html and REPORT.md, and
run_all.json (each task's status, time and command). Each task is started exactly as `python run.py <its
argv>` would start it, and records that argv as its command, so every result says how to remake it alone.
What each task gets is derived from the tasks' declarations (`common.cli.Task`): its own settings in the
chain (`all_args`), `--quick` when it takes it, then every flag the user gave `--task all` that the task
takes (minus its `all_skips`), in the user's order, so the user's flags win.

A task that fails is reported and the chain goes on (tasks that need its output are skipped), so one
failure does not throw away hours of other results; the report lists what is missing, and the exit code
is that of the first failure (2 for bad input).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback

from common import cli, outputs, report
from common import data as data_lib
from common.errors import TrainingDiverged, UserError

RUN_ALL_JSON = report.RUN_ALL_JSON
CHAIN = ("all", "report", "export")  # not links of the chain: the tasks of this module, and export


def chain(registry: cli.Registry) -> list[str]:
    """The experiment tasks, in the registry's order."""
    return [name for name in registry.names if name not in CHAIN]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of every task of the chain (the first task's help wins where two declare one flag)."""
    parser.conflict_handler = "resolve"
    parser.add_argument("--quick", action="store_true", help="every task from its config's shrunk preset")
    for name in reversed(chain(parser.registry)):
        parser.registry.get(name).add_arguments(parser)


def _options(parser: argparse.ArgumentParser) -> dict[str, int]:
    """{option string: number of value tokens it takes}."""
    return {s: (0 if a.nargs == 0 else 1) for a in parser._actions for s in a.option_strings}  # noqa: SLF001


def forwarded(user_argv: list[str], all_options: dict[str, int], task_options: dict[str, int],
              skips: tuple[str, ...]) -> list[str]:
    """The tokens of the user's `--task all` flags that the task takes, in order (--quick is task_argv's)."""
    out, i = [], 0
    while i < len(user_argv):
        name = user_argv[i].split("=", 1)[0]
        width = 1 + (0 if "=" in user_argv[i] else all_options.get(name, 0))
        if name in task_options and name not in skips and name not in ("--task", "--out", "--quick"):
            out += user_argv[i:i + width]
        i += width
    return out


def task_argv(registry: cli.Registry, name: str, root: str, quick: bool = False,
              user_argv: list[str] = ()) -> list[str]:
    """The argv (after `run.py`) that runs task `name` into `<root>/<name>` as part of the chain."""
    task = registry.get(name)
    own = _options(cli.build_parser(registry, name))
    argv = ["--task", name, "--out", os.path.join(root, name)] + task.all_args(quick, root)
    if quick and "--quick" in own:
        argv.append("--quick")
    return argv + forwarded(list(user_argv), _options(cli.build_parser(registry, "all")), own, task.all_skips)


def task_command(registry: cli.Registry, name: str, root: str) -> str:
    """The command that makes task `name`'s part of the report under `root` (the full settings)."""
    return "python run.py " + shlex.join(task_argv(registry, name, root))


def run_chained(registry: cli.Registry, argv: list[str]) -> tuple[int, str]:
    """Runs one task as `python run.py argv` would; returns (exit code, '' or why it failed)."""
    try:
        args = cli.parse_args(registry, argv)
        return cli.guarded_run(registry.get(args.task), args), ""
    except (UserError, TrainingDiverged) as e:
        return e.exit_code, str(e)
    except SystemExit as e:  # a flag the task rejected
        return int(e.code or 2), "its flags were rejected"
    except Exception as e:  # a bug in one task: show it, keep the other tasks' results coming
        traceback.print_exc()
        return 1, f"{e.__class__.__name__}: {e}"


def run(args) -> int:
    registry, root = args.registry, args.out
    for source in (getattr(args, "data_dir", None), getattr(args, "mnist", None)):
        if source:
            data_lib.check_source(source)  # a wrong folder or file fails now, not after the first tasks
    os.makedirs(root, exist_ok=True)
    user_argv = shlex.split(args.command)[1:]
    t_start, records, failed = time.perf_counter(), [], {}
    for name in chain(registry):
        argv = task_argv(registry, name, root, args.quick, user_argv)
        record = {"task": name, "command": shlex.join(["python", "run.py"] + argv)}
        needs = [n for n in registry.get(name).needs if n in failed]
        if needs:
            record.update(status=f"skipped: {needs[0]} failed", seconds=None)
        else:
            print(f"\n=== {name}: {record['command']}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            code, why = run_chained(registry, argv)
            record.update(status="ok" if code == 0 else f"failed ({why})", seconds=time.perf_counter() - t0)
            if code:
                failed[name] = code
                print(f"=== {name} failed: {why}", file=sys.stderr, flush=True)
        records.append(record)
        _write_summary(root, args.command, records, time.perf_counter() - t_start)
    code, why = run_chained(registry, ["--task", "report", "--out", root])
    if code:
        failed["report"] = code
        print(f"=== report failed: {why}", file=sys.stderr)
    for r in records:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f} s"
        print(f"{r['task']:<10} {seconds:>7}  {r['status']}", file=sys.stdout)
    print(f"all: {time.perf_counter() - t_start:.0f} s; report in {os.path.join(root, report.HTML_NAME)}")
    return next(iter(failed.values()), 0)


def _write_summary(root: str, command: str, records: list[dict], wall: float) -> None:
    outputs.write_json(os.path.join(root, RUN_ALL_JSON), {
        "command": command, "tasks": records, "wall_seconds": wall,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": outputs.environment_info()})


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """`--task report` takes only --out (the results root)."""


def run_report(args) -> int:
    """Gathers every task's section under the results root into report.html and REPORT.md."""
    registry = args.registry
    sections = [registry.get(n).report for n in chain(registry) if registry.get(n).report is not None]
    return report.run(args, sections, lambda name: task_command(registry, name, args.out),
                      title=registry.title, reference=registry.reference)


ALL = cli.Task("all", "run every task in order, then the report (--quick for a shrunk version)",
               add_arguments, run, default_out="results")
REPORT = cli.Task("report", "gather every result into report.html and REPORT.md", add_report_arguments,
                  run_report, default_out="results")
