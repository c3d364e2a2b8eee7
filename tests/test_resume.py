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


def _interrupted(folder, out, after: int, **kw):
    """A run of 3 epochs stopped right after epoch `after`'s resume files were written."""
    from common.run import resume

    real_save = resume.save

    def save_then_die(run, state, best, history, *a):
        real_save(run, state, best, history, *a)
        if len(history) == after:
            raise KeyboardInterrupt  # stands in for a kill

    resume.save = save_then_die
    try:
        train_and_evaluate(_tiny(folder, **kw), out, progress=False)
    except KeyboardInterrupt:
        pass
    finally:
        resume.save = real_save


def _tiny(folder, **kw):
    return LeNetConfig.create(**{"data_dir": folder, "epochs": 3, "batch_size": 10, "eval_batch_size": 16,
                                 "hidden": 32, **kw})


@pytest.mark.slow
def test_resume_trusts_the_state_file_not_resume_json(image_folder, tmp_path):
    """Reliability case 12: the last history entry deleted from resume.json after a kill changes nothing."""
    full = train_and_evaluate(_tiny(image_folder), str(tmp_path / "full"), progress=False)
    out = str(tmp_path / "cut")
    _interrupted(image_folder, out, after=2)
    info_path = os.path.join(out + ".partial", "resume.json")
    info = json.load(open(info_path))
    info["history"] = info["history"][:-1]
    json.dump(info, open(info_path, "w"))
    open(os.path.join(out + ".partial", "history.csv.tmp-999"), "w").write("half a file")
    resumed = train_and_evaluate(_tiny(image_folder), out, progress=False)
    assert [r["test_loss"] for r in resumed.history] == [r["test_loss"] for r in full.history]
    assert resumed.metrics["test_loss"] == full.metrics["test_loss"]
    assert not [f for f in os.listdir(out) if ".tmp-" in f]  # the stray temporary file is gone
    assert resumed.metrics["data_fingerprint"] == full.metrics["data_fingerprint"]
    assert resumed.metrics["data_fingerprint"].startswith("blake2b:")


@pytest.mark.slow
def test_a_partial_of_other_flags_or_data_is_set_aside(image_folder, tmp_path, capsys):
    out = str(tmp_path / "r")
    _interrupted(image_folder, out, after=1, hidden=16)
    result = train_and_evaluate(_tiny(image_folder, epochs=1), out, progress=False)
    assert "other flags" in capsys.readouterr().err and result.history[0]["epoch"] == 1
    aside = [f for f in os.listdir(tmp_path) if f.startswith("r.partial.other-")]
    assert len(aside) == 1 and os.path.isfile(tmp_path / aside[0] / "resume_state.msgpack")  # kept, not overwritten

    other = write_image_folder(tmp_path / "other", seed=1)  # the same flags, other pixels
    _interrupted(image_folder, str(tmp_path / "d"), after=1)
    import shutil
    shutil.rmtree(image_folder)
    shutil.copytree(other, image_folder)
    train_and_evaluate(_tiny(image_folder), str(tmp_path / "d"), progress=False)  # the same flags
    assert "other data" in capsys.readouterr().err


def _rewrite_state(path, change):
    from flax import serialization

    with open(path, "rb") as f:
        tree = serialization.msgpack_restore(f.read())
    change(tree)
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(tree))


def _longer_history(tree):
    meta = json.loads(tree["meta"])
    meta["history"] = meta["history"] * 4  # reliability case 19: 8 epochs for a 3-epoch run
    tree["meta"] = json.dumps(meta)


def _other_kernel(tree):
    params = tree["state"]["params"]
    conv = next(k for k in params if "conv" in k.lower() or "Conv" in k)
    params[conv]["kernel"] = params[conv]["kernel"][..., :1]  # a kernel of another shape


def _step_ahead(tree):
    tree["state"]["step"] = tree["state"]["step"] + 1  # the state one step past its history


@pytest.mark.slow
def test_a_malformed_resume_file_starts_over_with_the_uninterrupted_numbers(image_folder, tmp_path, capsys):
    """Reliability case 19 and its kin: a resume file that decodes but does not fit the run is ignored with one
    note, and the run ends with the numbers of an uninterrupted one."""
    import shutil

    full = train_and_evaluate(_tiny(image_folder), str(tmp_path / "full"), progress=False)
    cut = str(tmp_path / "cut")
    _interrupted(image_folder, cut, after=2)
    capsys.readouterr()
    changes = {"no best": lambda t: t.pop("best"), "history x4": _longer_history, "kernel": _other_kernel,
               "step": _step_ahead}
    for name, change in changes.items():
        out = str(tmp_path / name.replace(" ", "_"))
        shutil.copytree(cut + ".partial", out + ".partial")
        _rewrite_state(os.path.join(out + ".partial", "resume_state.msgpack"), change)
        resumed = train_and_evaluate(_tiny(image_folder), out, progress=False)
        err = capsys.readouterr().err
        assert "cannot resume" in err and "starting over" in err and "resuming" not in err, (name, err)
        assert [r["epoch"] for r in resumed.history] == [1, 2, 3], name
        assert resumed.metrics["test_loss"] == full.metrics["test_loss"], name
        assert resumed.metrics["epochs"] == full.metrics["epochs"], name
