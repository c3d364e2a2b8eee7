"""Lines of production code per floor at a git revision (tests, benchmarks, tools and docs aside).

    python tools/floor_lines.py [REV ...]      (default: HEAD; e.g. `f8423d5 HEAD` for before and after)

Prints, per revision, the lines (every line of each .py file) of: the science (models and numerics; the
experiments), the pure training core, and the machinery above them (runtime, data sources, the run's folder, the
report and figures, the CLI), with each group's share. The groups follow docs/architecture.md; files of the
layout before the floors (common/train/, common/*.py) are placed where their modules went.
"""
from __future__ import annotations

import fnmatch
import subprocess
import sys

GROUPS = (  # (group, floor, patterns), first match wins
    ("science", "models and numerics", ["lenet/model.py", "lenet/config.py", "recurrent/cells.py",
                                        "recurrent/model.py", "recurrent/optimized.py", "recurrent/config.py",
                                        "deconv/ops.py", "deconv/network.py", "deconv/occlusion.py",
                                        "lenet/__init__.py", "recurrent/__init__.py", "deconv/__init__.py",
                                        "common/core/stats.py", "common/stats.py", "common/core/history.py",
                                        "common/train/history.py"]),
    ("science", "experiments", ["lenet/train.py", "lenet/visualize.py", "lenet/ablation.py", "recurrent/train.py",
                                "recurrent/compare.py", "deconv/experiment.py"]),
    ("core", "training core", ["common/core/*", "common/train/state.py", "common/train/step.py",
                               "common/train/loop.py", "common/train/batches.py", "common/config.py",
                               "common/errors.py"]),
    ("machinery", "report and figures", ["common/report/*", "common/report.py", "common/document.py",
                                         "common/plotting.py", "common/tensorboard.py", "common/provenance.py",
                                         "*/report.py", "*/*_report.py", "*/*plots.py", "deconv/figures.py"]),
    ("machinery", "CLI", ["run.py", "*/task.py", "common/cli/*", "common/cli.py", "common/run_all.py",
                          "common/export_task.py"]),
    ("machinery", "data sources and caches", ["common/data/*", "common/data.py", "common/image_folder.py",
                                              "common/dataset_file.py", "common/data_cache.py"]),
    ("machinery", "a run's folder", ["common/run/*", "common/train/*", "common/fit.py"]),
    ("machinery", "runtime (files, process, XLA knobs)", ["common/*", "lenet/checkpoint.py"]),
)
PACKAGES = ("common/", "lenet/", "recurrent/", "deconv/")


def files(rev: str) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], capture_output=True, text=True, check=True)
    return [f for f in out.stdout.split() if f.endswith(".py") and (f.startswith(PACKAGES) or f == "run.py")]


def lines(rev: str, path: str) -> int:
    text = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
    return len(text.splitlines())


def group_of(path: str) -> tuple[str, str]:
    for group, floor, patterns in GROUPS:
        if any(fnmatch.fnmatch(path, p) for p in patterns):
            return group, floor
    raise SystemExit(f"no floor for {path}: add it to GROUPS")


def main(revs: list[str]) -> None:
    for rev in revs or ["HEAD"]:
        counts: dict[tuple[str, str], int] = {}
        for path in files(rev):
            key = group_of(path)
            counts[key] = counts.get(key, 0) + lines(rev, path)
        total = sum(counts.values())
        label = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True).stdout.strip()
        print(f"{rev} ({label}): {total:,} production lines")
        for group in ("science", "core", "machinery"):
            part = {f: n for (g, f), n in counts.items() if g == group}
            print(f"  {group:10s} {sum(part.values()):6,}  {100 * sum(part.values()) / total:4.1f}%")
            for floor, n in sorted(part.items(), key=lambda kv: -kv[1]):
                print(f"    {floor:38s} {n:6,}")


if __name__ == "__main__":
    main(sys.argv[1:])
