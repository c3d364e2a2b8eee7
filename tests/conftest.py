"""Shared fixtures: small generated data, so the suite passes without ../shared and never downloads."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

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


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "course")


@pytest.fixture
def mock_tfds(monkeypatch):
    """tfds.testing.mock_data with our download probe answering 'reachable' (the mocked download is a no-op)."""
    from common import data, tf_quiet

    tfds = tf_quiet.tfds()
    monkeypatch.setattr(data, "download_reachable", lambda name, timeout=3.0: True)
    with tfds.testing.mock_data(num_examples=120):
        yield


def pytest_configure(config):
    # Tests over ~5 s on the 2-core machine, or that spawn a training subprocess; `-m "not slow"` skips them.
    config.addinivalue_line("markers", "slow: a slow test (trains in a subprocess or for several seconds)")
