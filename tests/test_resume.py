"""A run killed with SIGKILL mid-training resumes from its last complete epoch with identical results."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lenet.config import LeNetConfig
from lenet.train import train_and_evaluate
from tests.conftest import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cmd(folder, out):
    return [sys.executable, os.path.join(ROOT, "run.py"), "--task", "lenet", "--data-dir", folder, "--epochs", "4",
            "--batch-size", "10", "--out", out, "--no-progress"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    folder = write_image_folder(tmp_path / "data", n_train_per_class=30, n_test_per_class=3)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(_cmd(folder, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resume_info = os.path.join(killed + ".partial", "resume.json")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(resume_info) and len(json.load(open(resume_info))["history"]) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(killed)  # no partial result in place of the output folder

    rerun = subprocess.run(_cmd(folder, killed), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" in rerun.stderr
    config = LeNetConfig.create(data_dir=folder, epochs=4, batch_size=10)
    b = train_and_evaluate(config, str(tmp_path / "full"), progress=False).metrics  # uninterrupted
    a = json.load(open(os.path.join(killed, "metrics.json")))
    for key in ("train_loss", "val_loss", "test_loss", "test_accuracy", "val_accuracy"):
        assert a[key] == b[key], key
