"""common/report/tensorboard.py: event files written without TensorFlow, read back with TensorBoard's own reader."""
import dataclasses
import os
import sys
import types

import pytest

from common.report import tensorboard

EPOCHS = 4


@dataclasses.dataclass(frozen=True)
class Spec:
    seed: int
    lr: float
    penalty: dict = dataclasses.field(default_factory=dict)


def _history(models: int) -> list[dict]:
    """fit-style rows: per-model lists when several models trained together; no test split in epoch 1."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        per = lambda base: [base + 0.01 * epoch + 0.1 * m for m in range(models)]
        row = {"epoch": epoch, "train_running_loss": per(1.0), "train_running_accuracy": per(0.3),
               "l2_penalty": per(0.05), "train_loss": per(0.9), "train_accuracy": per(0.4), "val_loss": per(1.1),
               "val_accuracy": per(0.35), "test_loss": per(1.2), "test_accuracy": per(0.33),
               "train_seconds": 2.0, "epoch_seconds": 2.5, "train_images_per_sec": 100.0 * models}
        if models == 1:
            row = {k: (v[0] if isinstance(v, list) else v) for k, v in row.items()}
        if epoch == 1:
            row["test_loss"] = row["test_accuracy"] = None
        rows.append(row)
    return rows


def _read(run_dir):
    """TensorBoard's EventAccumulator over one run directory, on its TensorFlow-free reader: a
    `tensorboard.compat.notf` module (what the tensorboard-notf build ships) makes it use its stub, which checks
    both CRCs of every record, and spares the test TensorFlow's import."""
    pytest.importorskip("tensorboard", reason="tensorboard (the test extra) reads the event files back")
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def test_crc32c_known_values():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert tensorboard.crc32c(b"") == 0
    assert tensorboard.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4: 32 bytes of zeros


def test_every_epoch_of_every_model_reads_back(tmp_path):
    specs = [Spec(0, 1e-3), Spec(1, 1e-3), Spec(0, 3e-4), Spec(1, 3e-4)]
    labels = tensorboard.model_labels(specs)
    assert labels == ["lr0.001_seed0", "lr0.001_seed1", "lr0.0003_seed0", "lr0.0003_seed1"]
    history = _history(len(specs))
    paths = tensorboard.write_history(str(tmp_path / "tensorboard"), history, labels, start_time=1000.0)
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == labels
    for m, label in enumerate(labels):
        acc = _read(tmp_path / "tensorboard" / label)
        tags = acc.Tags()["scalars"]
        assert {"accuracy/val", "loss/val", "accuracy/train", "accuracy/train_running", "accuracy/test",
                "l2_penalty"} <= set(tags)
        val = acc.Scalars("accuracy/val")
        assert [e.step for e in val] == list(range(1, EPOCHS + 1))
        expected = [row["val_accuracy"][m] for row in history]
        assert [e.value for e in val] == pytest.approx(expected, abs=1e-6)  # float32, as TensorBoard keeps them
        assert [e.wall_time for e in val] == pytest.approx([1002.5, 1005.0, 1007.5, 1010.0])
        assert [e.step for e in acc.Scalars("accuracy/test")] == [2, 3, 4]  # no test split in epoch 1


def test_one_model_and_rewriting_replaces_the_curves(tmp_path):
    labels = tensorboard.model_labels([Spec(0, 1.7e-4, {"conv_l2": 0.01})])
    assert labels == ["seed0"]
    logdir = str(tmp_path / "tb")
    tensorboard.write_history(logdir, _history(1), labels, start_time=1.0)
    tensorboard.write_history(logdir, _history(1), labels, start_time=2.0)
    assert len(os.listdir(os.path.join(logdir, "seed0"))) == 1
    val = _read(os.path.join(logdir, "seed0")).Scalars("accuracy/val")
    assert [e.value for e in val] == pytest.approx([r["val_accuracy"] for r in _history(1)], abs=1e-6)


def test_labels_name_what_differs():
    grid = [Spec(0, 1e-3, {"conv_l2": c, "fc_l2": 0.005}) for c in (0.0, 0.01)]
    assert tensorboard.model_labels(grid) == ["conv_l2_0", "conv_l2_0.01"]
    assert tensorboard.model_labels([Spec(s, 1e-3) for s in (3, 4)]) == ["seed3", "seed4"]
    with pytest.raises(ValueError, match="labels"):
        tensorboard.write_history("unused", _history(2), ["only-one"])


def _steps(run_dir, tag="accuracy/val"):
    return [e.step for e in _read(run_dir).Scalars(tag)]


def test_written_after_every_epoch_the_file_grows_in_place(tmp_path):
    """Training writes the whole history after each epoch: one file, extended (so a TensorBoard that holds it
    open sees the new points), readable at every step, each epoch once."""
    logdir, history = str(tmp_path / "tb"), _history(2)
    sizes = []
    for n in range(1, EPOCHS + 1):
        path = tensorboard.write_history(logdir, history[:n], ["a", "b"])[0]
        sizes.append(os.path.getsize(path))
        assert len(os.listdir(os.path.join(logdir, "a"))) == 1
        assert _steps(os.path.join(logdir, "a")) == list(range(1, n + 1))
        with open(path, "rb") as f:
            before = f.read()
        tensorboard.write_history(logdir, history[:n], ["a", "b"])
        with open(path, "rb") as f:
            assert f.read() == before  # the same history again: the same bytes
    assert sizes == sorted(sizes) and len(set(sizes)) == EPOCHS


def test_a_kill_leaves_a_readable_file_and_a_resumed_run_no_duplicates(tmp_path):
    logdir, history = str(tmp_path / "tb"), _history(1)
    [path] = tensorboard.write_history(logdir, history[:2], ["seed0"])
    start = tensorboard._start_of(os.path.basename(path))
    two, three = (tensorboard.encode_events(history[:n], start) for n in (2, 3))
    with open(path, "rb") as f:
        assert f.read() == two
    with open(path, "ab") as f:  # killed half-way through appending epoch 3's first record
        f.write(three[len(two): len(two) + 30])
    assert _steps(os.path.dirname(path)) == [1, 2]  # TensorBoard reads the whole epochs
    resumed = [dict(r) for r in history]
    resumed[2]["val_accuracy"] += 0.05  # the resumed run computes epoch 3 again, with other numbers
    tensorboard.write_history(logdir, resumed, ["seed0"])
    val = _read(os.path.dirname(path)).Scalars("accuracy/val")
    assert [e.step for e in val] == [1, 2, 3, 4]
    assert val[2].value == pytest.approx(resumed[2]["val_accuracy"], abs=1e-6)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


@pytest.mark.slow
def test_a_training_run_writes_readable_curves_after_each_epoch(tmp_path):
    """A tiny 2-epoch LeNet5 run: after each epoch the working folder's event files read back with that
    many epochs; the result holds them after the commit."""
    from common.run import results
    from lenet.config import LeNetConfig
    from lenet.train import train_and_evaluate
    from tests.conftest import write_image_folder

    folder = str(tmp_path / "data")
    write_image_folder(folder)
    out = str(tmp_path / "run")
    seen, real = [], results.write_tensorboard

    def write_then_read(run, history, specs):
        real(run, history, specs)
        run_dir = os.path.join(out + ".partial", results.TENSORBOARD_DIR, "seed0")
        seen.append(_steps(run_dir))

    results.write_tensorboard = write_then_read
    try:
        train_and_evaluate(LeNetConfig.create(data_dir=folder, epochs=2, batch_size=10, eval_batch_size=16, hidden=32),
                           out, progress=False)
    finally:
        results.write_tensorboard = real
    assert seen[:2] == [[1], [1, 2]]
    assert _steps(os.path.join(out, results.TENSORBOARD_DIR, "seed0")) == [1, 2]
