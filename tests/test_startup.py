"""Start-up and packaging: `run.py --help` lists the tasks without importing jax; the console script resolves."""
import configparser
import importlib
import os
import subprocess
import sys
import tomllib

import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("jax", "jaxlib", "numpy", "scipy", "matplotlib", "tensorflow", "flax")


def _imported(stderr: str) -> set[str]:
    """Top-level packages named in `python -X importtime`'s report ("import time: self | cumulative | name")."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_lists_every_task_without_importing_jax():
    done = subprocess.run([sys.executable, "-X", "importtime", "run.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in run.TASKS.names:
        assert f"  {name} " in done.stdout
    imported = _imported(done.stderr)
    assert "common" in imported  # the report is read right: the project's own modules are in it
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_registry_help_lines_are_the_tasks_own():
    for name in run.TASKS.names:
        task = run.TASKS.get(name)
        assert task.name == name
        assert run.TASKS.help(name) == task.help


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg


def test_console_script_is_run_main():
    scripts = dict(line.split("=", 1) for line in
                   _setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines())
    module, attr = scripts["elec576 "].strip().split(":")
    assert getattr(importlib.import_module(module), attr) is run.main
    assert run.main(["--help"]) == 0


def test_pyproject_names_the_project_and_leaves_the_rest_to_setup_cfg():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    cfg = _setup_cfg()
    assert project["name"] == cfg["metadata"]["name"]
    # every field setup.cfg gives must be dynamic, or setuptools ignores it
    assert {"version", "dependencies", "optional-dependencies", "scripts"} <= set(project["dynamic"])
    assert "python_requires" not in cfg["options"]  # one Python range: pyproject's
    assert not [c for c in cfg["metadata"]["classifiers"].splitlines() if c.startswith("License ::")]


def test_deterministic_adds_the_xla_flag_once(monkeypatch):
    from common import cli
    from common.runtime import outputs

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    args = cli.parse_args(cli.Registry({"export": "common.cli.export_task:EXPORT"}),
                          ["--task", "export", "--deterministic", "--out", "x.npz"])
    cli.deterministic_gpu_ops(args)
    cli.deterministic_gpu_ops(args)
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {cli.DETERMINISTIC_XLA_FLAG}"
    assert "XLA_FLAGS" in outputs.COMMAND_ENV  # so metrics.json's environment records it
    args.deterministic = False
    monkeypatch.delenv("XLA_FLAGS")
    cli.deterministic_gpu_ops(args)
    assert "XLA_FLAGS" not in os.environ
