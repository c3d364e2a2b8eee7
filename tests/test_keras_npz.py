"""`--mnist FILE.npz` / `--data-dir FILE.npz` with Keras's mnist.npz layout (x_train, y_train, x_test, y_test;
3-D uint8 images), so the recurrent tasks read full MNIST without TensorFlow (docs/data.md)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from common import data
from common.core.errors import DataError
from common.data import dataset_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keras_mnist(path, n_train=60, n_test=20, **changes) -> str:
    """A small file in Keras's layout: what `keras.datasets.mnist.load_data()` downloads, shrunk."""
    rng = np.random.default_rng(0)
    entries = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
               "y_train": np.arange(n_train, dtype=np.uint8) % 10,
               "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
               "y_test": np.arange(n_test, dtype=np.uint8) % 10, **changes}
    np.savez(path, **entries)
    return str(path)


def test_keras_layout_reads_as_a_dataset_file(tmp_path):
    path = keras_mnist(tmp_path / "mnist.npz")
    f = dataset_file.read(path, num_classes=10)
    assert f.class_names == tuple(str(i) for i in range(10))
    x, y = f.splits["train"]
    assert x.shape == (60, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    with np.load(path) as z:
        np.testing.assert_array_equal(x[..., 0], z["x_train"])
        np.testing.assert_array_equal(f.splits["test"][1], z["y_test"])


def test_keras_layout_loads_as_mnist(tmp_path):
    path = keras_mnist(tmp_path / "mnist.npz")
    ds = data.load_dataset(data.DataConfig(dataset="mnist", data_dir=path, image_mode="gray28", val_fraction=0.1))
    assert ds.train.images.shape[1:] == (28, 28, 1)
    assert len(ds.train) + len(ds.val) == 60 and len(ds.test) == 20


def test_a_bad_keras_file_is_still_one_data_error(tmp_path):
    path = keras_mnist(tmp_path / "bad.npz", x_test=np.zeros((20, 28), np.uint8))
    with pytest.raises(DataError, match="x_test must be uint8"):
        dataset_file.read(path)
    other = tmp_path / "other.npz"
    np.savez(other, x_train=np.zeros((2, 28, 28), np.uint8))  # not Keras's four entries: the usual refusal
    with pytest.raises(DataError, match="not a dataset file of this project"):
        dataset_file.read(str(other))


@pytest.mark.slow
def test_rnn_trains_from_a_keras_mnist_npz(tmp_path):
    path = keras_mnist(tmp_path / "mnist.npz", n_train=200, n_test=50)
    done = subprocess.run([sys.executable, "run.py", "--task", "rnn", "--mnist", path, "--cell", "lstm",
                           "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "rnn")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.path.isdir(tmp_path / "rnn")
