"""Nothing lost (issue 21): `--out` is replaced only by this task's finished result, never a user's folder;
files are written atomically (figures and the kernel history too), a full disk is one line, temporary files are
never left or committed; nested folders lock each other; sweeps and `--task all` commit as one unit and keep
their finished members on a rerun; the minor cases (seed range, JAX_PLATFORMS, a read-only report folder, many
seeds, a closed stdout) are one line or a warning.

Most cases call the library (RunDir, place, refusal, locks) or `run.main` in this process and end before any
training; the few that train or start `run.py` are marked slow.
"""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from common import cli
from common.core.errors import UserError
from common.report import plotting
from common.runtime import interrupt, locks, outputs
from tests.conftest import write_image_folder
from tests.test_bad_inputs import ENV, ROOT, TINY, assert_one_line_refusal, digest, earlier_result, run_main


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "G", n_train_per_class=4, n_test_per_class=1)


def finished(folder, task="lenet", files=("metrics.json",)) -> str:
    """A finished result of `task` made through RunDir (so it carries the marker commit writes)."""
    run = outputs.RunDir(str(folder), task=task, config={"x": 1})
    run.open()
    for name in files:
        os.makedirs(os.path.dirname(run.path(name)), exist_ok=True)
        outputs.atomic_write_text(run.path(name), name)
    return run.commit()


# ------------------------------------------------------------------------- what --out may replace


def test_refusal_says_which_folders_a_task_may_replace(tmp_path):
    assert outputs.refusal(str(tmp_path / "absent"), "lenet") is None
    (tmp_path / "empty").mkdir()
    assert outputs.refusal(str(tmp_path / "empty"), "lenet") is None
    ours = finished(tmp_path / "ours")
    assert outputs.refusal(ours, "lenet") is None
    assert "holds a lenet result, not a rnn one" in outputs.refusal(ours, "rnn")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert "not a finished result of this project" in outputs.refusal(str(tmp_path / "mine"), "lenet")
    root = tmp_path / "root"
    finished(root / "rnn", task="rnn")
    assert "a folder of results (rnn/" in outputs.refusal(str(root), "lenet")
    outputs.mark_root(str(root), "run.py --task all")
    assert "results root" in outputs.refusal(str(root), "lenet")
    legacy = tmp_path / "legacy"  # written before markers: its metrics.json names the task
    legacy.mkdir()
    (legacy / "metrics.json").write_text('{"task": "lenet"}')
    assert outputs.refusal(str(legacy), "lenet") is None and outputs.refusal(str(legacy), "rnn")


def test_out_dot_inside_a_repository_is_refused_and_nothing_is_touched(tmp_path, capsys, course, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "a.py").write_text("keep\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    before = digest(repo)
    monkeypatch.chdir(repo)
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", "."])
    assert_one_line_refusal(code, err, 2, ["--out . is not replaced", "not a finished result", ".git"])
    assert digest(repo) == before and sorted(os.listdir(tmp_path)) == ["repo"]


def test_a_results_root_is_not_a_task_result(tmp_path, capsys, course):
    root = tmp_path / "root"
    (root / "rnn").mkdir(parents=True)
    (root / "rnn" / "metrics.json").write_text('{"task": "rnn"}')
    (root / "notes.txt").write_text("mine")
    before = digest(root)
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", str(root)])
    assert_one_line_refusal(code, err, 2, ["is not replaced", "folder of results (rnn/"])
    assert digest(root) == before


def test_deconv_never_writes_over_the_checkpoint_it_reads(tmp_path, capsys):
    ck = finished(tmp_path / "R" / "V", files=("metrics.json", "checkpoint/run.json"))
    before = digest(ck)
    code, err = run_main(capsys, ["--task", "deconv", "--checkpoint", ck, "--out", ck])
    assert_one_line_refusal(code, err, 2, ["holds a lenet result, not a deconv one"])
    assert digest(ck) == before


def test_no_checkpoint_hint_never_suggests_writing_into_a_data_folder(tmp_path, capsys, course):
    code, err = run_main(capsys, ["--task", "deconv", "--checkpoint", course, "--out", str(tmp_path / "d")])
    assert_one_line_refusal(code, err, 2, ["Make one with", "--out results/lenet` and pass `--checkpoint"])
    assert f"--out {course}" not in err
    code, err = run_main(capsys, ["--task", "deconv", "--checkpoint", str(tmp_path / "new"), "--out",
                                  str(tmp_path / "d")])
    assert f"--task lenet --out {tmp_path / 'new'}`" in err  # a fresh folder: that one


# ------------------------------------------------------------------------------- replacing a result


def test_replacing_deletes_only_the_files_the_old_result_wrote(tmp_path, capsys):
    out = finished(tmp_path / "r", files=("metrics.json", "sub/fig.png"))
    (tmp_path / "r" / "NOTES.txt").write_text("mine")  # the user's, inside the old result
    old = tmp_path / "r.old"  # the user's own backup, by the name the project used to take
    old.mkdir()
    (old / "NOTES.txt").write_text("backup")
    finished(tmp_path / "r", files=("metrics.json",))
    assert sorted(os.listdir(out)) == [outputs.MARKER, "metrics.json"]
    aside = [n for n in os.listdir(tmp_path) if ".replaced-" in n]
    assert len(aside) == 1 and os.listdir(tmp_path / aside[0]) == ["NOTES.txt"]
    assert "kept in" in capsys.readouterr().err
    assert (old / "NOTES.txt").read_text() == "backup"
    finished(tmp_path / "r")  # an old result with nothing of the user's in it leaves no folder behind
    assert len([n for n in os.listdir(tmp_path) if ".replaced-" in n]) == 1


def test_commit_records_the_files_and_strips_temporaries(tmp_path):
    run = outputs.RunDir(str(tmp_path / "r"), task="lenet", config={"epochs": 1})
    run.open()
    outputs.atomic_write_text(run.path("metrics.json"), "{}")
    open(run.path("resume_state.msgpack.tmp-4242"), "wb").write(b"half")  # a killed writer's
    final = run.commit()
    marker = outputs.read_marker(final)
    assert marker["task"] == "lenet" and marker["config"] == {"epochs": 1} and marker["files"] == ["metrics.json"]
    assert sorted(os.listdir(final)) == [outputs.MARKER, "metrics.json"]


def test_the_task_the_cli_claimed_reaches_the_marker(tmp_path):
    out = str(tmp_path / "v")
    with locks.claim(out, "visualize", "run.py --task visualize"):
        run = outputs.RunDir(out)  # as lenet/visualize.py makes it: no task given
        run.open()
        run.commit()
    marker = outputs.read_marker(out)
    assert marker["task"] == "visualize" and marker["command"] == "run.py --task visualize"


def test_a_symlinked_out_is_written_through(tmp_path):
    target = tmp_path / "elsewhere" / "lenet"
    finished(target)
    link = tmp_path / "R" / "lenet"
    link.parent.mkdir()
    link.symlink_to(target)
    for _ in range(2):  # the second run replaces the first through the link, too
        finished(link, files=("metrics.json", "history.csv"))
    assert link.is_symlink() and sorted(os.listdir(target)) == [outputs.MARKER, "history.csv", "metrics.json"]


def test_a_mount_point_out_is_refused_up_front(tmp_path, capsys, course, monkeypatch):
    mount = str(tmp_path / "M" / "lenet")
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: p == mount or real(p))
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", mount])
    assert_one_line_refusal(code, err, 2, ["is a mount point", "give a folder inside it"])
    assert not os.path.exists(mount + ".partial")
    work = finished(tmp_path / "w")
    with pytest.raises(UserError, match="mount point"):
        outputs.place(work, mount, "lenet")


# ------------------------------------------------------------------------------------- atomic writes


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, course, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = str(tmp_path / "r")
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", out])
    assert_one_line_refusal(code, err, 2, ["no space left on the device", "rerun the same command"])
    strays = [f for base, _, files in os.walk(tmp_path) for f in files if outputs.TMP_TAG in f]
    assert strays == []


def test_atomic_write_removes_its_temporary_file_on_any_error(tmp_path, monkeypatch):
    path = str(tmp_path / "f.bin")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        outputs.atomic_write_bytes(path, b"x" * 1000)
    assert os.listdir(tmp_path) == []


def test_renames_are_followed_by_a_sync_of_the_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(outputs, "fsync_dir", synced.append)
    outputs.atomic_write_text(str(tmp_path / "a.txt"), "a")
    assert synced == [str(tmp_path)]
    run = outputs.RunDir(str(tmp_path / "r"))
    run.open()
    run.commit()
    assert synced[-1] == str(tmp_path)  # after the folder's rename into place


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    written = []
    real = outputs.atomic_write_bytes
    monkeypatch.setattr(outputs, "atomic_write_bytes", lambda p, b: (written.append(p), real(p, b)))
    fig, ax = plotting.plt.subplots()
    ax.plot([0, 1])
    path = plotting.save(fig, str(tmp_path / "f.png"))
    assert written == [path] and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    fig, _ = plotting.plt.subplots()
    with pytest.raises(ValueError):  # a format matplotlib lacks: nothing is written at all
        plotting.save(fig, str(tmp_path / "g.nosuchformat"))
    assert sorted(os.listdir(tmp_path)) == ["f.png"]


def test_a_truncated_kernel_history_does_not_block_the_run(tmp_path, capsys):
    from lenet.train import FILTER_HISTORY, _save_conv1_kernels

    path = tmp_path / FILTER_HISTORY
    state = types.SimpleNamespace(params={"conv1": {"kernel": np.ones((5, 5, 1, 32), np.float32)}})
    _save_conv1_kernels({1, 2}, str(tmp_path), 1, state)
    path.write_bytes(path.read_bytes()[:100])  # a kill or a full disk, before atomic writes
    _save_conv1_kernels({1, 2}, str(tmp_path), 2, state)
    assert "unreadable" in capsys.readouterr().err
    with np.load(path) as f:
        assert f.files == ["epoch_2"]
    assert sorted(os.listdir(tmp_path)) == [FILTER_HISTORY]


# --------------------------------------------------------------------------------------------- locks


def hold(out):
    """Another process holding `out`'s claim (killed by the caller)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from common import locks; "
                               "locks.acquire(sys.argv[1]); print('held', flush=True); time.sleep(60)", out],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("held, wanted, words", [("A", "A/B", "lies inside"), ("A/B", "A", "holds"),
                                                 ("A.partial/x", "A", "holds")])
def test_nested_folders_exclude_each_other(tmp_path, held, wanted, words):
    holder = hold(str(tmp_path / held))
    try:
        with pytest.raises(UserError, match=f"{words}.*another run \\(pid {holder.pid}\\)"):
            locks.acquire(str(tmp_path / wanted))
        assert locks.held() == set()
    finally:
        holder.kill()
        holder.wait()
    path = locks.acquire(str(tmp_path / wanted))  # the holder is gone: free again
    locks.release(path)


# --------------------------------------------------------------------------- sweeps and --task all


def test_all_commits_as_a_unit_and_keeps_finished_tasks_on_a_rerun(tmp_path, capsys, monkeypatch):
    ran, stop = [], {"rnn"}

    def fake(task):
        def run(args):
            ran.append(task)
            if task in stop:
                interrupt._requested = True  # Ctrl-C during this task  # noqa: SLF001
                interrupt.check()
            finished(args.out, task)
            return 0
        module = types.ModuleType(f"unit_{task}")
        module.TASK = cli.Task(task, "a stand-in", lambda parser: None, run)
        return module

    paths = {}
    for task in ("lenet", "rnn"):
        monkeypatch.setitem(sys.modules, f"unit_{task}", fake(task))
        paths[task] = f"unit_{task}:TASK"
    registry = cli.Registry({**paths, "report": "common.cli.run_all:REPORT", "all": "common.cli.run_all:ALL"})
    root = tmp_path / "results"
    finished(root / "lenet", "lenet", files=("old.txt",))
    (root / "notes.txt").write_text("mine")
    before = digest(root)
    assert cli.main(registry, ["--task", "all", "--out", str(root)]) == 130
    assert digest(root) == before and ran == ["lenet", "rnn"]  # nothing moved in: the old lenet is whole
    assert "nothing under --out was replaced" in capsys.readouterr().err
    stop.clear()
    assert cli.main(registry, ["--task", "all", "--out", str(root)]) == 0
    assert ran == ["lenet", "rnn", "rnn"]  # lenet was kept from the interrupted run
    assert (root / "notes.txt").read_text() == "mine" and not os.path.exists(str(root) + ".partial")
    assert sorted(os.listdir(root / "lenet")) == [outputs.MARKER, "metrics.json"]
    assert outputs.read_marker(str(root))["kind"] == "root"
    status = [t["status"] for t in json.load(open(root / "run_all.json"))["tasks"]]
    assert status == ["ok (kept from the interrupted run)", "ok"]


@pytest.mark.slow
def test_an_interrupted_sweep_keeps_its_finished_member_and_the_earlier_result(tmp_path, monkeypatch):
    from recurrent import train as rtrain
    from recurrent.config import RNNConfig

    folder = write_image_folder(tmp_path / "M", n_train_per_class=4, n_test_per_class=1)
    configs = [RNNConfig.create(data_dir=folder, cell=c, hidden=4, epochs=1, batch_size=10, steps_per_call=1)
               for c in ("rnn", "gru")]
    out = str(tmp_path / "sw")
    earlier = finished(out, "rnn", files=("summary.json",))
    before = digest(earlier)
    trained, real = [], rtrain.train_and_evaluate

    def train(config, *a, **k):
        trained.append(config.name)
        if config.name == "gru_h4" and len(trained) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second member
        return real(config, *a, **k)

    monkeypatch.setattr(rtrain, "train_and_evaluate", train)
    with pytest.raises(KeyboardInterrupt):
        rtrain.sweep(configs, out, progress=False)
    assert digest(out) == before  # the earlier sweep's folder is whole, summaries included
    rows = rtrain.sweep(configs, out, progress=False)
    assert trained == ["rnn_h4", "gru_h4", "gru_h4"]  # rnn_h4 was kept, not trained again
    assert [r["cell"] for r in rows] == ["rnn", "gru"]
    assert {"rnn_h4", "gru_h4", "summary.csv", "fig_validation_by_size.png"} <= set(os.listdir(out))
    assert not os.path.exists(out + ".partial")


def test_history_is_read_back_as_fit_wrote_it(tmp_path):
    from common.core.history import per_model_rows
    from recurrent.train import read_history

    history = [{"epoch": e, "val_accuracy": [0.1 * e, 0.2 * e], "train_loss": [1.0, 2.0]} for e in (1, 2)]
    specs = [types.SimpleNamespace(seed=s, lr=1e-3, penalty={}) for s in (0, 1)]
    outputs.write_csv(str(tmp_path / "h.csv"), per_model_rows(history, specs))
    back = read_history(str(tmp_path / "h.csv"))
    assert [r["epoch"] for r in back] == [1, 2] and back[1]["val_accuracy"] == [0.2, 0.4]


# ------------------------------------------------------------------------------------- minor cases


@pytest.mark.parametrize("argv, words", [
    (["--seed", "9223372036854775808"], ["--seed", "0..4294967295"]),
    (["--seed", "4294967296"], ["--seed", "0..4294967295"]),
    (["--seed", "4294967295", "--seeds", "2"], ["reaches seed 4294967296"]),
    (["--epochs", "1" + "0" * 400], ["--epochs", "positive integer"]),
])
def test_out_of_range_numbers_are_parser_errors(tmp_path, capsys, argv, words):
    code, err = run_main(capsys, TINY + argv + ["--out", str(tmp_path / "r")])
    assert_one_line_refusal(code, err, 2, words)
    assert os.listdir(tmp_path) == []


def test_many_seeds_get_a_warning(capsys):
    cli.parse_args(cli.Registry({"lenet": "lenet.task:LENET"}), ["--task", "lenet", "--seeds", "64"])
    assert "warning: --seeds 64 trains 64 models at once" in capsys.readouterr().err


@pytest.mark.parametrize("error", [AssertionError(""), RuntimeError("Unable to initialize backend 'rocm': no")])
def test_a_backend_this_machine_lacks_is_one_line(tmp_path, capsys, course, monkeypatch, error):
    import jax

    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setattr(jax, "devices", lambda *a: (_ for _ in ()).throw(error))
    out = str(tmp_path / "r")
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", out])
    assert_one_line_refusal(code, err, 2, ["JAX_PLATFORMS=cuda", "unset JAX_PLATFORMS"])
    assert os.listdir(tmp_path) == []


def test_report_into_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "results")
    earlier_result(os.path.join(root, "lenet"))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if p == root else real(p, mode))  # root: chmod-proof
    code, err = run_main(capsys, ["--task", "report", "--out", root])
    assert_one_line_refusal(code, err, 2, ["cannot write into it"])
    assert sorted(os.listdir(root)) == ["lenet"]


def test_a_closed_stdout_is_swallowed():
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    quiet = cli._QuietStdout(Closed())  # noqa: SLF001
    assert quiet.write("line\n") == 5 and quiet.broken
    quiet.write("more\n")
    quiet.flush()


@pytest.mark.slow
def test_a_run_piped_into_head_ends_quietly_with_its_results(tmp_path, course):
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "run.py", *TINY, "--data-dir", course, "--out", out], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before the run prints anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err[-2000:]
    assert "BrokenPipeError" not in err and "Traceback" not in err
    assert os.path.isfile(os.path.join(out, "metrics.json"))


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["gpu", "cuda"])
def test_jax_platforms_without_that_device_through_run_py(tmp_path, course, platform):
    proc = subprocess.run([sys.executable, "run.py", *TINY, "--data-dir", course, "--out", str(tmp_path / "r")],
                          cwd=ROOT, env={**ENV, "JAX_PLATFORMS": platform}, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == 0:
        pytest.skip(f"this machine has a {platform} backend")
    assert_one_line_refusal(proc.returncode, proc.stderr, 2, [f"JAX_PLATFORMS={platform}"])


@pytest.mark.slow
def test_sigkill_during_a_sweep_then_rerun_keeps_the_finished_member(tmp_path):
    folder = write_image_folder(tmp_path / "M", n_train_per_class=4, n_test_per_class=1)
    out = str(tmp_path / "sw")
    argv = [sys.executable, "run.py", "--task", "rnn", "--data-dir", folder, "--cell", "rnn,gru", "--hidden", "4",
            "--epochs", "300", "--batch-size", "10", "--no-progress", "--out", out]
    proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    member = os.path.join(out + ".partial", "rnn_h4", outputs.MARKER)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and not os.path.exists(member):
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.load(open(os.path.join(out + ".partial", "rnn_h4", "metrics.json")))["finished_at"]
    rerun = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "rnn_h4: kept" in rerun.stderr
    assert json.load(open(os.path.join(out, "rnn_h4", "metrics.json")))["finished_at"] == first


# ------------------------------------------------------------- working folders and kills at commit


def test_a_partial_the_project_did_not_make_is_refused_never_adopted(tmp_path, capsys, course):
    out = tmp_path / "r"
    partial = tmp_path / "r.partial"
    partial.mkdir()
    (partial / "thesis.tex").write_text("mine")
    before = digest(partial)
    with pytest.raises(UserError, match="not made by this project"):
        outputs.RunDir(str(out), task="lenet").open()
    assert digest(partial) == before
    code, err = run_main(capsys, [*TINY, "--data-dir", course, "--out", str(out)])
    assert_one_line_refusal(code, err, 2, ["not made by this project", "thesis.tex"])
    assert digest(partial) == before and not out.exists()


def test_a_partial_holding_only_a_killed_marker_write_is_ours(tmp_path):
    partial = tmp_path / "r.partial"
    partial.mkdir()
    (partial / (outputs.PARTIAL_MARKER + ".tmp-4242")).write_text('{"proj')  # killed while writing the marker
    work = outputs.RunDir(str(tmp_path / "r"), task="lenet").open()
    assert os.listdir(work) == [outputs.PARTIAL_MARKER]


def test_a_kill_between_the_two_renames_of_place_is_finished_by_the_next_run(tmp_path, capsys):
    out = tmp_path / "r"
    finished(out, files=("metrics.json", "old.png"))
    (out / "NOTES.txt").write_text("mine")
    run = outputs.RunDir(str(out), task="lenet", config={"x": 2})
    run.open()
    outputs.atomic_write_text(run.path("metrics.json"), "new")
    real = os.replace

    def replace_then_die(a, b):
        real(a, b)
        if a == str(out):
            raise KeyboardInterrupt  # stands in for a kill after the old result was renamed aside

    outputs.os.replace = replace_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            run.commit()
    finally:
        outputs.os.replace = real
        run.release()
    assert not out.exists() and os.path.isdir(str(out) + ".partial")
    outputs.RunDir(str(out), task="lenet").open()  # the next run (any flags)
    err = capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "new" and "is there now" in err
    aside = [n for n in os.listdir(tmp_path) if ".replaced-" in n]
    assert len(aside) == 1 and os.listdir(tmp_path / aside[0]) == ["NOTES.txt"] and "kept in" in err


def test_the_same_command_rerun_after_a_kill_at_commit_trains_nothing(tmp_path, capsys, course, monkeypatch):
    out = str(tmp_path / "r")
    argv = [*TINY, "--data-dir", course, "--out", out]
    command = cli.parse_args(cli.Registry({"lenet": "lenet.task:LENET"}), argv).command
    with locks.claim(out, "lenet", command):
        run = outputs.RunDir(out, task="lenet")
        run.open()
        outputs.atomic_write_text(run.path("metrics.json"), "{}")
        monkeypatch.setattr(outputs, "place", lambda *a: None)  # killed just before the renames
        run.commit()
    monkeypatch.undo()
    outputs.atomic_write_json(os.path.join(out + ".partial", outputs.PARTIAL_MARKER), {})  # or between the markers
    assert not os.path.exists(out)
    code, err = run_main(capsys, argv)
    assert code == 0 and "nothing to train again" in err and outputs.read_marker(out)["command"] == command
    assert sorted(os.listdir(out)) == [outputs.MARKER, "metrics.json"]


def test_a_kill_while_an_earlier_result_is_discarded_leaves_no_husk(tmp_path):
    out = tmp_path / "r"
    finished(out, files=("metrics.json",))
    half = tmp_path / "r.replaced-20260101-000000"  # killed part-way through _discard: the marker is deleted last
    finished(half, files=("a.png", "b.png"))
    os.remove(half / "a.png")
    husk = tmp_path / "r.replaced-20260101-000001"  # killed after the last file, before the folders went
    (husk / "checkpoint").mkdir(parents=True)
    user = tmp_path / "r.replaced-20260101-000002"  # a finished discard that kept a user's file
    user.mkdir()
    (user / "NOTES.txt").write_text("mine")
    outputs.finish_replacing(str(out))
    assert not half.exists() and not husk.exists() and (user / "NOTES.txt").read_text() == "mine"


def test_things_set_aside_inside_a_working_folder_leave_it_once(tmp_path):
    sweep = outputs.RunDir(str(tmp_path / "sw"), task="rnn")
    work = sweep.open()
    os.makedirs(os.path.join(work, "gru_h8.partial"))
    os.makedirs(os.path.join(work, "lstm_h8"))
    a = outputs.set_aside(os.path.join(work, "gru_h8.partial"))
    b = outputs.set_aside(os.path.join(work, "lstm_h8"))
    assert os.path.dirname(a) == os.path.dirname(b) and os.path.basename(os.path.dirname(a)).startswith(
        "sw.partial.other-")
    assert os.listdir(work) == [outputs.PARTIAL_MARKER]
    sweep.release()


@pytest.mark.slow
def test_a_narrower_sweep_keeps_the_members_it_does_not_name(tmp_path, capsys):
    """Reliability case 17: `--cell rnn --hidden 4` into a finished rnn+gru sweep retrains rnn_h4, keeps gru_h4
    and recomputes the summaries over both; a later run with other flags over a killed member sets it aside
    once, to <out>.partial.other-<time>/."""
    from recurrent import train as rtrain
    from recurrent.config import RNNConfig

    folder = write_image_folder(tmp_path / "M", n_train_per_class=4, n_test_per_class=1)

    def config(cell, **kw):
        return RNNConfig.create(**{"data_dir": folder, "cell": cell, "hidden": 4, "epochs": 1, "batch_size": 10,
                                   "steps_per_call": 1, **kw})

    out = str(tmp_path / "sw")
    rtrain.sweep([config("rnn"), config("gru")], out, progress=False)
    gru = digest(os.path.join(out, "gru_h4"))
    (tmp_path / "sw" / "NOTES.txt").write_text("mine")
    capsys.readouterr()
    rows = rtrain.sweep([config("rnn", epochs=2)], out, progress=False)
    assert "kept gru_h4" in capsys.readouterr().err and len(rows) == 1
    assert digest(os.path.join(out, "gru_h4")) == gru
    summary = json.load(open(os.path.join(out, "summary.json")))["runs"]
    assert [(r["cell"], r["epochs"]) for r in summary] == [("rnn", 2), ("gru", 1)]
    assert json.load(open(os.path.join(out, "rnn_h4", "metrics.json")))["epochs"] == 2
    assert outputs.read_marker(out)["kind"] == "result"
    assert not [n for n in os.listdir(tmp_path) if n.startswith("sw.") and n != "sw.lock"
                and not os.listdir(tmp_path / n) == ["NOTES.txt"]]  # only the user's note set aside

    # a member of other flags killed half-way in the working folder: set aside once, with a true note
    _interrupt_member(rtrain, config("gru", hidden=8, epochs=3), out)
    capsys.readouterr()
    rtrain.sweep([config("gru", hidden=8, epochs=2)], out, progress=False)
    err = capsys.readouterr().err
    assert err.count("moved aside") == 1 and "other flags" in err, err
    aside = [n for n in os.listdir(tmp_path) if n.startswith("sw.partial.other-")]
    assert len(aside) == 1 and os.listdir(tmp_path / aside[0]) == ["gru_h8.partial"]
    assert {"rnn_h4", "gru_h4", "gru_h8"} <= set(os.listdir(out))


def _interrupt_member(rtrain, config, out):
    """A sweep of `config` stopped after its first epoch's resume files (a kill)."""
    from common.run import resume

    real = resume.save

    def save_then_die(*a):
        real(*a)
        raise KeyboardInterrupt

    resume.save = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            rtrain.sweep([config], out, progress=False)
    finally:
        resume.save = real


@pytest.mark.parametrize("name, words", [("a" * 300 + "/x", "longer than the 255"),
                                         ("b" * 235, "at most 222 bytes fit")])
def test_an_out_name_too_long_for_a_derived_name_is_refused_before_any_work(tmp_path, capsys, course, name, words):
    """An --out whose own name fits but whose <out>.replaced-<time> or <out>.partial.other-<time> would not
    used to fail at commit, after the training; a component over NAME_MAX was a traceback."""
    code, err = run_main(capsys, [*TINY, "--data-dir", course, "--out", str(tmp_path / name)])
    assert_one_line_refusal(code, err, 2, [words])
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("how", ["closed", "ascii"])
def test_a_closed_or_ascii_only_stdout_is_survived(tmp_path, course, how):
    out = str(tmp_path / ("résumé" if how == "ascii" else "r"))
    env = {**ENV, "PYTHONIOENCODING": "ascii"} if how == "ascii" else ENV
    proc = subprocess.run(["/bin/bash", "-c", f'exec "$@" {">&-" if how == "closed" else ""}', "run",
                           sys.executable, "run.py", *TINY, "--data-dir", course, "--out", out],
                          cwd=ROOT, env=env, stdout=None if how == "closed" else subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert os.path.isfile(os.path.join(out, "metrics.json"))
    if how == "ascii":
        assert "r\\xe9sum\\xe9" in proc.stdout.decode()  # the path, escaped


def test_a_finished_result_of_another_task_in_the_partial_is_set_aside_not_mixed_in(tmp_path, capsys):
    out = tmp_path / "r"
    run = outputs.RunDir(str(out), task="visualize")
    run.open()
    outputs.atomic_write_text(run.path("fig_filters.png"), "png")
    outputs.atomic_write_json(run.path(outputs.MARKER), {"project": outputs.PROJECT, "kind": "result",
                                                          "task": "visualize", "files": ["fig_filters.png"]})
    run.release()  # killed at commit, before the renames
    work = outputs.RunDir(str(out), task="lenet").open()
    assert os.listdir(work) == [outputs.PARTIAL_MARKER] and "moved aside" in capsys.readouterr().err
    aside = [n for n in os.listdir(tmp_path) if n.startswith("r.partial.other-")]
    assert len(aside) == 1 and "fig_filters.png" in os.listdir(tmp_path / aside[0])


def test_a_kill_while_the_result_marker_is_written_leaves_a_folder_known_as_ours(tmp_path, monkeypatch):
    out = str(tmp_path / "r")
    run = outputs.RunDir(out, task="lenet")
    run.open()
    outputs.atomic_write_text(run.path("metrics.json"), "{}")
    real = outputs.atomic_write_json

    def killed(path, obj):
        if path.endswith(outputs.MARKER):
            open(path + ".tmp-999", "w").write('{"proj')
            raise KeyboardInterrupt  # a kill half-way through the marker's write
        real(path, obj)

    monkeypatch.setattr(outputs, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        run.commit()
    run.release()
    monkeypatch.undo()
    assert outputs.partial_refusal(out) is None  # the next run may resume there
    work = outputs.RunDir(out, task="lenet").open()
    assert sorted(os.listdir(work)) == [outputs.PARTIAL_MARKER, "metrics.json"]


def test_all_keeps_the_marker_of_a_partial_that_still_holds_unfinished_work(tmp_path, capsys):
    from common.cli import run_all

    partial, root = tmp_path / "R.partial", tmp_path / "R"
    root.mkdir()
    finished(partial / "lenet")
    (partial / "rnn.partial").mkdir()  # a task that failed half-way
    outputs.atomic_write_json(str(partial / outputs.PARTIAL_MARKER), {"project": outputs.PROJECT})
    run_all._move_results(str(partial), str(root))  # noqa: SLF001
    assert os.path.isdir(root / "lenet") and "unfinished work" in capsys.readouterr().err
    assert outputs.partial_refusal(str(root)) is None  # the next --task all is not refused
    assert sorted(os.listdir(partial)) == [outputs.PARTIAL_MARKER, "rnn.partial"]
