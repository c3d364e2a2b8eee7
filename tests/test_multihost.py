"""Two real processes on 127.0.0.1 (JAX's distributed runtime, gloo collectives on the CPU) train exactly as one
process with two simulated devices; only process 0 writes; bad start-ups end with one line and exit 2."""
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _start(argv, devices=1):
    return subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, env=_env(devices), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc, timeout=500):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def _two_processes(argv, out, port):
    """The same command as process 1 and process 0; returns [(rc, log)] of both."""
    flags = ["--out", out, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [_start(argv + flags + ["--process-id", str(i)]) for i in (1, 0)]
    return [_finish(p) for p in procs]


def _files(folder):
    """Every file's path under `folder`; TensorBoard's event files named without their time stamp."""
    names = (os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    return sorted(re.sub(r"tfevents\.\d+\.", "tfevents.TIME.", n) for n in names)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("mh") / "course", n_train_per_class=6, n_test_per_class=2)


@pytest.mark.slow
@pytest.mark.parametrize("task", [
    ["--task", "lenet", "--epochs", "2", "--limit", "40", "--batch-size", "10"],
    ["--task", "rnn", "--cell", "lstm", "--hidden", "8", "--epochs", "2", "--limit", "40", "--batch-size", "10",
     "--steps-per-call", "3", "--seeds", "2"],
], ids=["lenet", "lstm-2-seeds"])
def test_two_processes_equal_one_process_with_two_devices(folder, tmp_path, task):
    argv = task + ["--data-dir", folder, "--no-progress"]
    one = _start(argv + ["--out", str(tmp_path / "one")], devices=2)
    results = _two_processes(argv, str(tmp_path / "two"), _free_port())
    rc_one, log_one = _finish(one)
    assert rc_one == 0, log_one[-2000:]
    for rc, log in results:
        assert rc == 0, log[-2000:]
    metrics = [json.load(open(os.path.join(tmp_path / name, *(["lstm_h8"] if "rnn" in task else []),
                                           "metrics.json"))) for name in ("one", "two")]
    for key in KEYS:
        assert metrics[0][key] == pytest.approx(metrics[1][key], abs=1e-6), key
    assert metrics[1]["environment"]["device_count"] == 2
    # One results folder, written by process 0 alone: the same files as the one-process run, nothing left over.
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]


@pytest.mark.slow
@pytest.mark.parametrize("flags, words", [
    (["--coordinator", "127.0.0.1:{port}", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0..1"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--num-processes", "2", "--process-id", "0"], "--coordinator"),
    # process 1 alone: its coordinator never answers
    (["--coordinator", "127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1", "--distributed-timeout", "5"],
     "did not answer within 5 s"),
    # process 0 alone: its peer never comes
    (["--coordinator", "127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0", "--distributed-timeout", "5"],
     "only 0 of the 1 other processes joined within 5 s"),
], ids=["id-out-of-range", "bad-address", "incomplete", "no-coordinator", "no-peer"])
def test_bad_distributed_start_is_one_line_and_exit_2(folder, tmp_path, flags, words):
    port = str(_free_port())
    argv = ["--task", "lenet", "--data-dir", folder, "--limit", "20", "--epochs", "1", "--out", str(tmp_path / "o")]
    t0 = time.perf_counter()
    rc, log = _finish(_start(argv + [f.replace("{port}", port) for f in flags]), timeout=120)
    assert rc == 2 and words in log and "Traceback" not in log, log[-2000:]
    assert time.perf_counter() - t0 < 60  # bounded: never a hang
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "o.partial")


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_process_ends_the_others_with_one_line(folder, tmp_path, victim):
    """SIGKILL one process mid-run: the other ends within seconds with one line and exit code 75, no
    traceback and no C++ stack dump (the rendezvous connection it watches closes)."""
    import signal

    out, port = str(tmp_path / "o"), _free_port()
    argv = ["--task", "lenet", "--data-dir", folder, "--epochs", "100", "--limit", "40", "--batch-size", "10",
            "--no-progress", "--out", out, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = {i: _start(argv + ["--process-id", str(i)]) for i in (1, 0)}
    resume_info = os.path.join(out + ".partial", "resume.json")
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.exists(resume_info) and procs[0].poll() is None:
        time.sleep(0.1)
    assert os.path.exists(resume_info), _finish(procs[0], 1)[1][-2000:]
    os.killpg(procs[victim].pid, signal.SIGKILL)
    t0 = time.perf_counter()
    rc, log = _finish(procs[1 - victim], timeout=120)
    _finish(procs[victim], timeout=10)
    assert rc == 75 and time.perf_counter() - t0 < 30, log[-2000:]
    assert log.strip().splitlines()[-1] == "error: another process of this run died; rerun all the commands to resume"
    assert "Traceback" not in log and "stack trace" not in log, log[-3000:]
    assert not os.path.exists(out)  # nothing committed; the rerun resumes from out.partial
