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

The chain is one unit: every task writes into `<root>.partial/<task>` (its recorded command still names
`<root>/<task>`), and only when the chain has ended are the finished task folders moved to `<root>/<task>`
(each replacing only an earlier result of the same task: `common.runtime.outputs.place`), run_all.json written and
the report made. A rerun after a kill or Ctrl-C keeps each task that had finished in `<root>.partial` with the
same command on the same data files (names, sizes, modification times: `data_signature`) instead of running
it again. Nothing else in the root is touched (the report moves a REPORT.md or report.html it did not write
aside first: `report.write_page`), so a root may hold a user's own files.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import sys
import time
import traceback

from common import cli, report
from common import data as data_lib
from common.core.errors import TrainingDiverged, UserError
from common.runtime import interrupt, locks, outputs

RUN_ALL_JSON = report.RUN_ALL_JSON
CHAIN = ("all", "report", "export")  # not links of the chain: the tasks of this module, and export


def experiments(registry: cli.Registry) -> list[str]:
    """The experiment tasks, in the registry's order (each may have a section of the report)."""
    return [name for name in registry.names if name not in CHAIN]


def chain(registry: cli.Registry) -> list[str]:
    """The experiment tasks `--task all` runs, in the registry's order."""
    return [name for name in experiments(registry) if registry.get(name).in_all]


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


def run_chained(registry: cli.Registry, argv: list[str], command: list[str] | None = None) -> tuple[int, str]:
    """Runs one task as `python run.py argv` would, recording `run.py command` (default: argv) as its
    command; returns (exit code, '' or why it failed)."""
    try:
        args = cli.parse_args(registry, argv)
        if command is not None:
            args.command = shlex.join(["run.py"] + list(command))
        return cli.guarded_run(registry.get(args.task), args), ""
    except (UserError, TrainingDiverged) as e:
        return e.exit_code, str(e)
    except SystemExit as e:  # a flag the task rejected
        return int(e.code or 2), "its flags were rejected"
    except Exception as e:  # a bug in one task: show it, keep the other tasks' results coming
        traceback.print_exc()
        return 1, f"{e.__class__.__name__}: {e}"


def data_signature(args) -> str:
    """A checksum of the names, sizes and modification times of every file under the data folders (or the
    dataset files) the flags (or $TFDS_DATA_DIR) name: a rerun keeps a finished task only when its data files
    are unchanged."""
    h = hashlib.blake2b(digest_size=12)
    for top in (getattr(args, "data_dir", None), getattr(args, "mnist", None),
                getattr(args, "tfds_data_dir", None) or os.environ.get("TFDS_DATA_DIR")):
        for path in _data_files(top):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                h.update(f"{os.path.relpath(path, top)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _data_files(top: str | None) -> list[str]:
    """`top` itself when it is a file (a dataset .npz), else every file under it, in a fixed order."""
    if not top:
        return []
    if os.path.isfile(top):
        return [top]
    found = []
    for base, dirs, files in os.walk(top):
        dirs.sort()
        found += [os.path.join(base, name) for name in sorted(files)]
    return found


def _kept(partial: str, signature: str) -> dict[str, dict]:
    """{task: record} of the tasks an interrupted run finished in `partial`, with the data it saw."""
    info = outputs.read_json(os.path.join(partial, RUN_ALL_JSON)) or {}
    if info.get("data_signature") != signature:
        return {}
    return {r["task"]: r for r in info.get("tasks", []) if r.get("status", "").startswith("ok")
            and outputs.read_marker(os.path.join(partial, r["task"]))}


def _run_tasks(args, root: str, partial: str, signature: str) -> tuple[list[dict], dict[str, int]]:
    """Runs (or keeps) every task of the chain into `partial`; returns (records, {failed task: exit code})."""
    registry, user_argv = args.registry, shlex.split(args.command)[1:]
    kept, t_start, records, failed = _kept(partial, signature), time.perf_counter(), [], {}
    for name in chain(registry):
        final_argv = task_argv(registry, name, root, args.quick, user_argv)
        record = {"task": name, "command": shlex.join(["python", "run.py"] + final_argv)}
        needs = [n for n in registry.get(name).needs if n in failed]
        earlier = kept.get(name)
        if needs:
            record.update(status=f"skipped: {needs[0]} failed", seconds=None)
        elif earlier and earlier["command"] == record["command"]:
            record.update(status="ok (kept from the interrupted run)", seconds=earlier.get("seconds"))
            print(f"\n=== {name}: kept, finished by an interrupted run of the same command", file=sys.stderr)
        else:
            print(f"\n=== {name}: {record['command']}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            code, why = run_chained(registry, task_argv(registry, name, partial, args.quick, user_argv),
                                    final_argv)
            record.update(status="ok" if code == 0 else f"failed ({why})", seconds=time.perf_counter() - t0)
            if code:
                failed[name] = code
                print(f"=== {name} failed: {why}", file=sys.stderr, flush=True)
        records.append(record)
        _write_summary(partial, args.command, records, time.perf_counter() - t_start, signature)
    return records, failed


def _move_results(partial: str, root: str) -> None:
    """Moves every finished result in `partial` to `root` (refused ones stay, with the reason); then removes
    `partial` when nothing else is left there."""
    for name in sorted(os.listdir(partial)):
        marker = outputs.read_marker(os.path.join(partial, name))
        if marker and marker.get("kind") == "result":
            try:
                outputs.place(os.path.join(partial, name), os.path.join(root, name), marker.get("task"))
            except UserError as e:
                print(f"=== {e}", file=sys.stderr)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(partial, RUN_ALL_JSON))
    outputs.strip_temporaries(partial)
    left = sorted(set(os.listdir(partial)) - {outputs.PARTIAL_MARKER})
    if left:  # its marker stays, so that the next run knows the folder as ours
        print(f"=== kept in {partial}: {', '.join(left[:5])} (unfinished work)", file=sys.stderr)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(partial, outputs.PARTIAL_MARKER))
        os.rmdir(partial)


def run(args) -> int:
    registry, root = args.registry, args.out
    for source in (getattr(args, "data_dir", None), getattr(args, "mnist", None)):
        if source:
            data_lib.check_source(source)  # a wrong folder or file fails now, not after the first tasks
    for name in chain(registry):  # a folder that is not that task's earlier result: refused before any work
        outputs.check_replaceable(os.path.join(root, name), name)
    partial = locks.resolve(root) + locks.PARTIAL_SUFFIX
    os.makedirs(partial, exist_ok=True)
    outputs.atomic_write_json(os.path.join(partial, outputs.PARTIAL_MARKER), {"project": outputs.PROJECT})
    t_start, signature = time.perf_counter(), data_signature(args)
    records, failed = _run_tasks(args, root, partial, signature)
    interrupt.check()  # Ctrl-C during the last task: nothing was moved yet
    os.makedirs(root, exist_ok=True)
    _move_results(partial, root)
    outputs.mark_root(root, args.command)
    _write_summary(root, args.command, records, time.perf_counter() - t_start, signature)
    try:
        code, why = run_chained(registry, ["--task", "report", "--out", root])
    except KeyboardInterrupt:  # the results are in place already: say so, and how to make the report
        print(f"interrupted before the report; the results are in {root}: make it with `python run.py --task "
              f"report --out {root}`", file=sys.stderr)
        return interrupt.EXIT_CODE
    if code:
        failed["report"] = code
        print(f"=== report failed: {why}", file=sys.stderr)
    for r in records:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f} s"
        print(f"{r['task']:<10} {seconds:>7}  {r['status']}", file=sys.stdout)
    print(f"all: {time.perf_counter() - t_start:.0f} s; report in {os.path.join(root, report.HTML_NAME)}")
    return next(iter(failed.values()), 0)


def _write_summary(root: str, command: str, records: list[dict], wall: float, signature: str) -> None:
    outputs.atomic_write_json(os.path.join(root, RUN_ALL_JSON), {
        "command": command, "tasks": records, "wall_seconds": wall, "data_signature": signature,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "environment": outputs.environment_info()})


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """`--task report` takes only --out (the results root)."""


def run_report(args) -> int:
    """Gathers every task's section under the results root into report.html and REPORT.md."""
    registry = args.registry
    # A task `--task all` does not run (`in_all=False`) has its section only when its results are under the root.
    tasks = [registry.get(n) for n in experiments(registry)]
    sections = [t.report for t in tasks
                if t.report is not None and (t.in_all or report.is_present(args.out, t.report))]
    return report.run(args, sections, lambda name: task_command(registry, name, args.out),
                      title=registry.title, reference=registry.reference)


ALL = cli.Task("all", "run every task in order, then the report (--quick for a shrunk version)",
               add_arguments, run, default_out="results", out_kind="root")
REPORT = cli.Task("report", "gather every result into report.html and REPORT.md", add_report_arguments,
                  run_report, default_out="results", out_kind="report")
