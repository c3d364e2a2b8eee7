"""Bad or concurrent use (issue 12): one line on stderr and exit 2 (130 for Ctrl-C, 0 for a diverged run that
is only flagged), no traceback, and an earlier result under the same --out left byte-identical.

The table runs each case through `run.main` in this process (the CLI's own code path; an escaping exception
fails the test). Cases that need a second process (a lock held by another run, SIGINT) run `run.py` in a
subprocess. Data are generated (tests/conftest.py); nothing needs ../shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from common.runtime import interrupt, locks, outputs
from run import main
from tests.conftest import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
TINY = ["--task", "lenet", "--no-progress", "--epochs", "1", "--limit", "40", "--batch-size", "10",
        "--steps-per-call", "1"]


def digest(folder) -> dict[str, str]:
    """{relative path: sha1} of every file under `folder` (empty when absent)."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


def earlier_result(folder, task="lenet") -> dict[str, str]:
    """A stand-in for an earlier run's result folder (marked as a finished `task` result); returns its digest."""
    os.makedirs(os.path.join(folder, "checkpoint"), exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        f.write('{"test_accuracy": 0.5}\n')
    with open(os.path.join(folder, "checkpoint", "run.json"), "w") as f:
        f.write("{}\n")
    with open(os.path.join(folder, outputs.MARKER), "w") as f:
        json.dump({"project": outputs.PROJECT, "kind": "result", "task": task,
                   "files": ["metrics.json", "checkpoint/run.json"]}, f)
    return digest(folder)


def run_cli(argv, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *argv], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """40 training and 10 test images in the course layout."""
    return write_image_folder(tmp_path_factory.mktemp("data") / "G", n_train_per_class=4, n_test_per_class=1)


def run_main(capsys, argv) -> tuple[int, str]:
    """(exit code, stderr) of `python run.py argv`, run in this process."""
    try:
        code = main(argv)
    except SystemExit as e:  # the parser's own exit
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line_refusal(code, err, expected_code, words):
    assert code == expected_code, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(w in lines[-1] for w in words), err[-2000:]


# ---------------------------------------------------------------------------------- the output folder


def test_out_is_a_file_is_refused_before_work_and_left_alone(tmp_path, capsys, course):
    target = tmp_path / "afile"
    target.write_text("x")
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", str(target)])
    assert_one_line_refusal(code, err, 2, ["is an existing file"])
    assert target.read_text() == "x" and not os.path.exists(str(target) + ".old")
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # no lock, no .partial left


@pytest.mark.parametrize("task", [TINY, ["--task", "rnn", "--no-progress", "--epochs", "1"],
                                  ["--task", "deconv"], ["--task", "visualize"], ["--task", "compare"]])
def test_out_below_a_file_is_refused_for_every_task(tmp_path, capsys, task):
    (tmp_path / "afile").write_text("x")
    code, err = run_main(capsys, task + ["--out", str(tmp_path / "afile" / "sub")])
    assert_one_line_refusal(code, err, 2, ["lies below", "afile"])


def test_unwritable_out_is_refused(tmp_path, capsys, course):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--out", str(locked / "x")])
    assert_one_line_refusal(code, err, 2, ["cannot write"])


def test_batch_larger_than_training_split_makes_no_folder(tmp_path, capsys, course):
    out = tmp_path / "deep" / "r"
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--batch-size", "500", "--out", str(out)])
    assert_one_line_refusal(code, err, 2, ["fewer than the batch size 500"])
    assert os.listdir(tmp_path) == []  # not even the parent folder the claim made


# -------------------------------------------------------------------------------------------- locking


@pytest.mark.slow
def test_second_run_into_a_busy_out_is_refused_at_once(tmp_path, course):
    out = str(tmp_path / "conc")
    before = earlier_result(out)
    lock = locks.acquire(out)  # this process plays the first run
    try:
        t0 = time.time()
        proc = run_cli(TINY + ["--data-dir", course, "--out", out])
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"is in use by another run (pid {os.getpid()})" in proc.stderr
        assert "Traceback" not in proc.stderr and time.time() - t0 < 60
        assert not os.path.exists(out + ".partial") and digest(out) == before
    finally:
        locks.release(lock)
    assert not os.path.exists(out + ".lock")


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = str(tmp_path / "r")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from common import locks; "
                               "locks.acquire(sys.argv[1]); print('held', flush=True); time.sleep(60)", out],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        locks.acquire(out)
    holder.kill()  # SIGKILL: no clean-up ran, the lock file stays behind
    holder.wait()
    assert os.path.exists(out + ".lock")
    path = locks.acquire(out)
    assert open(path).read().split()[0] == str(os.getpid())
    locks.release(path)


def test_claims_are_reentrant_and_nested_folders_do_not_deadlock(tmp_path):
    out = str(tmp_path / "compare")
    with locks.claim(out):  # what the CLI holds
        outer = outputs.RunDir(out)
        work = outer.open()  # compare's own RunDir: the same folder
        inner = outputs.RunDir(os.path.join(work, "lenet"))  # its nested fit
        inner.open()
        outputs.atomic_write_text(inner.path("x.txt"), "x")
        inner.commit()
        outer.commit()
        assert out + ".lock" in {p for p in locks.held()}
    assert locks.held() == set() and sorted(os.listdir(tmp_path)) == ["compare"]
    assert sorted(os.listdir(out)) == [outputs.MARKER, "lenet"]
    assert sorted(os.listdir(os.path.join(out, "lenet"))) == [outputs.MARKER, "x.txt"]


def test_claim_releases_what_a_failed_task_left_claimed(tmp_path):
    with pytest.raises(RuntimeError):
        with locks.claim(str(tmp_path / "a")):
            outputs.RunDir(str(tmp_path / "a" / "nested")).open()
            raise RuntimeError("a task failed half-way")
    assert locks.held() == set()


# ---------------------------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 6.0])  # imports and set-up; XLA compilation
def test_ctrl_c_at_any_moment_exits_130_and_keeps_the_earlier_result(tmp_path, course, delay):
    out = str(tmp_path / "keep")
    before = earlier_result(out)
    argv = TINY[:4] + ["30"] + TINY[5:] + ["--data-dir", course, "--out", out]
    proc = subprocess.Popen([sys.executable, "run.py", *argv], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err
    assert digest(out) == before


def test_commit_is_refused_once_interrupted(tmp_path):
    restore = interrupt.install()
    try:
        run = outputs.RunDir(str(tmp_path / "r"))
        run.open()
        os.kill(os.getpid(), signal.SIGINT)  # the handler only sets the flag
        with pytest.raises(KeyboardInterrupt):
            run.commit()
        assert not os.path.exists(run.final) and os.path.isdir(run.work)
        run.release()
    finally:
        restore()
        interrupt.install()()  # clears the flag, restores the handler again


# ------------------------------------------------------------------------------------------------- data


@pytest.fixture
def damaged(tmp_path, course):
    """A fresh copy of the course folder, to damage."""
    import shutil

    return shutil.copytree(course, tmp_path / "copy")


def test_label_folder_outside_the_model_classes_is_refused_up_front(tmp_path, capsys, damaged):
    import shutil

    for split in ("Train", "Test"):
        shutil.copytree(damaged / split / "0", damaged / split / "10")
    out = str(tmp_path / "r")
    before = earlier_result(out)
    code, err = run_main(capsys, TINY + ["--data-dir", str(damaged), "--out", out])
    assert_one_line_refusal(code, err, 2, ["outside 0-9", os.path.join("Train", "10")])
    assert digest(out) == before and not os.path.exists(out + ".partial")


@pytest.mark.parametrize("remove, words", [(["Train/3", "Test/3"], "without gaps; 3 is missing"),
                                           (["Test/9"], "same label folders; '9'")])
def test_label_folders_must_be_consecutive_and_alike_in_both_splits(damaged, remove, words):
    import shutil

    from common import data as data_lib

    for folder in remove:
        shutil.rmtree(damaged / folder)
    with pytest.raises(data_lib.DataError, match=words):
        data_lib.validate_image_folder(str(damaged), 10)


class DamagedBuilder:
    """A prepared TFDS dataset whose train shard is a truncated TFRecord file and whose test shard is missing."""

    name = "mnist"

    def __init__(self, folder):
        import tensorflow as tf

        self.data_dir = str(folder)
        self.shard = os.path.join(self.data_dir, "mnist-train.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(self.shard) as w:
            for _ in range(50):
                w.write(b"x" * 100)
        os.truncate(self.shard, 2000)

    def is_prepared(self):
        return True

    def as_dataset(self, split, **kwargs):
        import tensorflow as tf

        path = self.shard if split == "train" else os.path.join(self.data_dir, "mnist-test.tfrecord-00000-of-00001")
        return tf.data.TFRecordDataset(path).map(lambda r: (tf.zeros((28, 28, 1), tf.uint8), tf.constant(0)))


@pytest.mark.parametrize("split, words", [("train", "DataLossError"), ("test", "NotFoundError")])
def test_damaged_tfds_shard_is_one_data_error(tmp_path, split, words):
    from common import data as data_lib

    with pytest.raises(data_lib.DataError, match=f"in {tmp_path} is damaged: its {split} split .*{words}"):
        data_lib._tfds_split_to_numpy(DamagedBuilder(tmp_path), split)  # noqa: SLF001


def test_damaged_tfds_dataset_through_the_cli(tmp_path, capsys, monkeypatch):
    from common.runtime import tf_quiet

    monkeypatch.setattr(tf_quiet.tfds(), "builder", lambda name, data_dir=None: DamagedBuilder(tmp_path))
    out = str(tmp_path / "r")
    before = earlier_result(out, task="rnn")
    code, err = run_main(capsys, ["--task", "rnn", "--no-progress", "--epochs", "1", "--tfds-data-dir",
                                  str(tmp_path), "--out", out])
    assert_one_line_refusal(code, err, 2, ["is damaged: its train split", str(tmp_path)])
    assert digest(out) == before


def corrupt_pixels(path) -> None:
    """Rewrites the PNG at `path` with garbage compressed pixel data under valid chunk checksums."""
    import struct
    import zlib

    data, pos, chunks = open(path, "rb").read(), 8, []
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        chunks.append((kind, b"\x78\x9c" + bytes(range(200)) if kind == b"IDAT" else body))
        pos += 12 + n
    with open(path, "wb") as f:
        f.write(data[:8] + b"".join(struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b))
                                    for k, b in chunks))


def test_png_with_corrupt_pixels_but_valid_checksums_is_named(tmp_path, capsys, damaged):
    bad = damaged / "Train" / "3" / "Image00002.png"
    corrupt_pixels(bad)
    out = str(tmp_path / "r")
    before = earlier_result(out)
    code, err = run_main(capsys, TINY + ["--data-dir", str(damaged), "--out", out])
    assert_one_line_refusal(code, err, 2, [str(bad), "not a readable image"])
    assert digest(out) == before


# ------------------------------------------------------------------------------ flags and plain mistakes


@pytest.mark.parametrize("argv, words", [
    (TINY + ["--lr", "inf"], ["--lr", "finite positive"]),
    (TINY + ["--lr", "nan"], ["--lr", "finite positive"]),
    (TINY + ["--lr", "1e-3,inf"], ["--lr", "finite positive"]),
    (TINY + ["--conv-l2", "inf"], ["--conv-l2", "finite number >= 0"]),
    (TINY + ["--fc-l2=-inf"], ["--fc-l2", "finite number >= 0"]),
    (TINY + ["--epochs", "-1"], ["--epochs", "positive integer"]),
    (["--task", "nosuch"], ["invalid choice", "nosuch"]),
    (TINY + ["--data-dir", "/nonexistent/data"], ["/nonexistent/data", "does not exist"]),
])
def test_bad_flags_and_paths_are_one_line(tmp_path, capsys, argv, words):
    out = str(tmp_path / "r")
    before = earlier_result(out)
    code, err = run_main(capsys, argv + ["--out", out])
    assert_one_line_refusal(code, err, 2, words)
    assert digest(out) == before and sorted(os.listdir(tmp_path)) == ["r"]


# ---------------------------------------------------------------------------------------------- checkpoints


def write_checkpoint(folder, course, said_batchnorm: bool, built_batchnorm: bool, hidden: int = 1024) -> str:
    """A --task lenet checkpoint whose run.json says `said_batchnorm` and whose variables are those of a model
    built with `built_batchnorm` and `hidden` units."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from common.runtime import checkpoint as ckpt
    from lenet.config import LeNetConfig
    from lenet.model import create_model

    said = LeNetConfig.create(data_dir=course, use_batchnorm=said_batchnorm)
    built = create_model(LeNetConfig.create(use_batchnorm=built_batchnorm, hidden=hidden))
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(lambda: built.init({"params": key, "dropout": key}, jnp.zeros((1, 28, 28, 1)),
                                               train=False))
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes))  # no init: fast
    run_info = {"task": "lenet", "config": said.to_dict(), "class_names": [str(i) for i in range(10)],
                "image_shape": [28, 28, 1]}
    ckpt.save_checkpoint(os.path.join(folder, ckpt.CHECKPOINT_DIR), variables, run_info)
    return str(folder)


@pytest.mark.parametrize("said, built, hidden, words", [
    (False, True, 1024, "batch_stats/bn1/mean is not in the model"),
    (True, False, 1024, "batch_stats/bn1/mean is missing"),
    (True, True, 512, "params/fc1/bias has shape (512,), the model needs (1024,)"),
])
def test_checkpoint_that_contradicts_its_run_json_is_refused(tmp_path, course, said, built, hidden, words):
    from common.core.errors import CheckpointError
    from lenet import checkpoint as lenet_checkpoint

    path = write_checkpoint(tmp_path / "ck", course, said, built, hidden)
    with pytest.raises(CheckpointError, match="do not match the LeNet5 its run.json describes"):
        try:
            lenet_checkpoint.load_lenet(path, "make it")
        except CheckpointError as e:
            assert words in str(e)
            raise


def test_consistent_checkpoint_loads(tmp_path, course):
    from lenet import checkpoint as lenet_checkpoint

    config, variables, _ = lenet_checkpoint.load_lenet(write_checkpoint(tmp_path / "ck", course, False, False), "x")
    assert not config.use_batchnorm and "batch_stats" not in variables


@pytest.mark.parametrize("task", ["visualize", "deconv"])
def test_inconsistent_checkpoint_through_the_cli(tmp_path, capsys, course, task):
    path = write_checkpoint(tmp_path / "ck", course, False, True)
    out = str(tmp_path / "r")
    before = earlier_result(out, task=task)
    code, err = run_main(capsys, ["--task", task, "--no-progress", "--checkpoint", path, "--out", out])
    assert_one_line_refusal(code, err, 2, ["do not match", "without batch norm"])
    assert digest(out) == before


# ------------------------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("losses, diverged", [
    ([2.3, 2.0, 1.5], False),
    ([2.3, 2.5, 22.0], False),  # below 10x the first epoch's
    ([2.3, 2.5, 24.0], True),  # over 10x
    ([3e17], True),  # one epoch, already far above 1000 ln(10)
    ([2.0e3], False),
    ([[2.3, 2.3], [2.0, 40.0]], True),  # one of two vmapped models
])
def test_divergence_rule(losses, diverged):
    from common.run import results

    history = [{"train_running_loss": loss} for loss in losses]
    result = results.divergence(history, 10)
    assert result["diverged"] is diverged
    assert ("diverged_per_model" in result) == isinstance(losses[0], list)


@pytest.mark.slow
def test_exploding_but_finite_run_is_flagged_and_warned(tmp_path, capsys, course):

    out = str(tmp_path / "r")
    code, err = run_main(capsys, TINY + ["--data-dir", course, "--lr", "1e3", "--out", out])
    assert code == 0, err[-2000:]
    assert "warning: training diverged" in err and "lower --lr" in err
    assert json.load(open(os.path.join(out, "metrics.json")))["diverged"] is True


@pytest.mark.parametrize("task", ["visualize", "deconv"])
def test_missing_checkpoint_hint_is_well_formed(tmp_path, capsys, task):
    code, err = run_main(capsys, ["--task", task, "--checkpoint", str(tmp_path / "none"), "--out",
                                  str(tmp_path / "r")])
    assert_one_line_refusal(code, err, 2, ["no checkpoint at", "python run.py --task lenet --out"])
    line = err.strip().splitlines()[-1]
    assert line.count("`") % 2 == 0 and line.count("(") == line.count(")"), line


# ------------------------------------------------------------------------------ issue 31: data and run.json


@pytest.mark.parametrize("argv, inside", [
    (TINY, "Train/out"), (TINY, "Train/3/out"), (TINY, "."), (TINY, "Test/../Train/0"),
    (["--task", "export"], "Train/x.npz"),
    (["--task", "rnn", "--no-progress", "--epochs", "1"], "Test/out"),
])
def test_out_inside_the_data_folder_is_refused_before_any_work(tmp_path, capsys, argv, inside):
    data = write_image_folder(tmp_path / "D", n_train_per_class=1, n_test_per_class=1, classes=4)
    before = digest(data)
    flag = "--mnist" if "rnn" in argv else "--data-dir"
    out = os.path.join(data, inside)
    code, err = run_main(capsys, [*argv, flag, data, "--out", out])
    assert_one_line_refusal(code, err, 2, [f"--out {out} is inside the data folder {data}"])
    assert digest(data) == before and sorted(os.listdir(tmp_path)) == ["D"]  # no folder, lock or partial made


def test_out_beside_the_data_folder_is_not_taken_for_inside(tmp_path):
    from common import data

    (tmp_path / "D").mkdir()
    data.check_out_outside_data(str(tmp_path / "D2" / "out"), str(tmp_path / "D"), None, str(tmp_path / "x.npz"))
    with pytest.raises(Exception, match="inside the data folder"):
        data.check_out_outside_data(str(tmp_path / "D" / "out"), None, str(tmp_path / "D"))


@pytest.mark.parametrize("key, value, words", [
    ("features", "abc", "features is abc"),
    ("features", [32, [64]], "features is (32, [64])"),
    ("hidden", 1.5, "hidden is 1.5"),
    ("data_dir", 7, "data_dir is 7"),
    ("image_shape", 28, "image_shape must be [height, width, 1 or 3], it is 28"),
    ("image_shape", [28, 28], "image_shape must be [height, width, 1 or 3], it is [28, 28]"),
    ("image_shape", [28, 28, True], "image_shape must be [height, width, 1 or 3]"),
    ("class_names", 10, "class_names must be a list of names, it is 10"),
    ("class_names", ["a", 1], "class_names must be a list of names"),
    ("features", [-1, 64], "does not describe a LeNet5"),
])
def test_malformed_run_json_is_one_checkpoint_error(tmp_path, course, key, value, words):
    from common.core.errors import CheckpointError
    from lenet import checkpoint as lenet_checkpoint

    path = write_checkpoint(tmp_path / "ck", course, True, True)
    run_json = os.path.join(path, "checkpoint", "run.json")
    with open(run_json) as f:
        info = json.load(f)
    if key in info:
        info[key] = value
    else:
        info["config"][key] = value
    with open(run_json, "w") as f:
        json.dump(info, f)
    with pytest.raises(CheckpointError) as e:
        lenet_checkpoint.load_lenet(path, "make it")
    assert words in str(e.value) and str(e.value).endswith("`make it`"), str(e.value)


def test_a_run_json_that_is_not_an_object_is_named(tmp_path, course):
    from common.core.errors import CheckpointError
    from lenet import checkpoint as lenet_checkpoint

    path = write_checkpoint(tmp_path / "ck", course, True, True)
    with open(os.path.join(path, "checkpoint", "run.json"), "w") as f:
        f.write('["lenet"]\n')
    with pytest.raises(CheckpointError, match="is damaged: its run.json is not a JSON object. Make one with `x`"):
        lenet_checkpoint.load_lenet(path, "x")


def test_malformed_run_json_through_the_cli(tmp_path, capsys, course):
    path = write_checkpoint(tmp_path / "ck", course, True, True)
    run_json = os.path.join(path, "checkpoint", "run.json")
    with open(run_json) as f:
        info = json.load(f)
    info["class_names"] = {"0": "airplane"}
    with open(run_json, "w") as f:
        json.dump(info, f)
    code, err = run_main(capsys, ["--task", "visualize", "--no-progress", "--checkpoint", path, "--out",
                                  str(tmp_path / "v")])
    assert_one_line_refusal(code, err, 2, ["run.json", "is damaged: class_names must be a list of names"])
