"""Shared fixtures: small generated data, so the suite passes without ../shared and never downloads."""
import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The suite's own compilation cache (common.runtime.compile_cache) and decoded-array cache (common.data.cache),
# never the user's: one folder each per session, which the `python run.py` subprocesses inherit (so that they share
# their compiles); removed at the end. (This file is imported twice, as `conftest` by pytest and as `tests.conftest` by
# tests: one folder for both.)
_FIRST = sys.modules.get("conftest") or sys.modules.get("tests.conftest")
TEST_XLA_CACHE = getattr(_FIRST, "TEST_XLA_CACHE", None) or tempfile.mkdtemp(prefix="elec576-test-xla-")
os.environ["ELEC576_JAX_CACHE"] = TEST_XLA_CACHE
TEST_DATA_CACHE = getattr(_FIRST, "TEST_DATA_CACHE", None) or tempfile.mkdtemp(prefix="elec576-test-cache-")
os.environ["ELEC576_DATA_CACHE"] = TEST_DATA_CACHE
if _FIRST is None:
    atexit.register(shutil.rmtree, TEST_DATA_CACHE, True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    # The slow tier (`-m "not slow"` leaves it out): tests over ~5 s or that spawn a training run.
    config.addinivalue_line("markers", "slow: takes more than a few seconds (deselect with -m 'not slow')")


SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
SHARED_MNIST_TFDS = os.path.join(SHARED, "data", "tfds")
SHARED_CIFAR_FOLDER = os.path.join(SHARED, "data", "elec576", "CIFAR10")


def write_image_folder(root, n_train_per_class=6, n_test_per_class=2, size=(28, 28), mode="L", classes=10, seed=0):
    """A tiny tree in the course layout root/{Train,Test}/<label>/ImageNNNNN.png."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("Train", n_train_per_class), ("Test", n_test_per_class)):
        for c in range(classes):
            d = os.path.join(root, split, str(c))
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                shape = size + ((3,) if mode == "RGB" else ())
                # class-dependent brightness so a model can learn something
                pixels = np.clip(rng.normal(25 * c, 30, shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode).save(os.path.join(d, f"Image{i:05d}.png"))
    return str(root)


def pytest_unconfigure(config):
    shutil.rmtree(TEST_XLA_CACHE, ignore_errors=True)


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "course")


@pytest.fixture(scope="session")
def tiny_lenet(tmp_path_factory):
    """One LeNet5 trained for one epoch on a generated 10-class folder, shared by the visualize and deconv tests:
    root/course (6 train, 2 test images per class) and root/lenet (its results, checkpoint and conv1 kernels after
    epochs 0 and 1). Tests write only beside these, never into them."""
    from lenet.config import LeNetConfig
    from lenet.train import train_and_evaluate

    root = tmp_path_factory.mktemp("tiny_lenet")
    folder = write_image_folder(root / "course", n_train_per_class=6, n_test_per_class=2)
    config = LeNetConfig.create(data_dir=folder, epochs=1, batch_size=10, eval_batch_size=16, hidden=32,
                                filter_epochs=(0, 1))
    train_and_evaluate(config, str(root / "lenet"), progress=False)
    return root


@pytest.fixture
def mock_tfds(monkeypatch):
    """tfds.testing.mock_data with our download probe answering 'reachable' (the mocked download is a no-op)."""
    from common import data
    from common.runtime import tf_quiet

    tfds = tf_quiet.tfds()
    monkeypatch.setattr(data, "download_reachable", lambda name, timeout=3.0: True)
    monkeypatch.setenv("ELEC576_DATA_CACHE", "")  # mocked arrays must never become the cache entry of a real dataset
    with tfds.testing.mock_data(num_examples=120):
        yield
