import os

import numpy as np
import pytest
from PIL import Image

from common import data
from common.core import batches
from common.core.errors import DataError
from tests.conftest import SHARED_CIFAR_FOLDER, SHARED_MNIST_TFDS, write_image_folder


def test_stratified_holdout_sizes_strata_and_determinism():
    labels = np.repeat(np.arange(10), 100)
    np.random.default_rng(1).shuffle(labels)
    train, val = data.stratified_holdout(labels, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val)
    assert np.all(np.bincount(labels[val], minlength=10) == 10)
    train2, val2 = data.stratified_holdout(labels, 0.1, seed=3)
    np.testing.assert_array_equal(val, val2)
    _, val3 = data.stratified_holdout(labels, 0.1, seed=4)
    assert not np.array_equal(val, val3)


def test_holdout_keeps_one_per_class_for_tiny_classes():
    labels = np.array([0, 0, 1, 1, 1, 2])
    _, val = data.stratified_holdout(labels, 0.1, seed=0)
    assert sorted(labels[val]) == [0, 1]  # class 2 has a single example: it stays in training


def test_grayscale_matches_pil_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    ours = data.to_grayscale_uint8(rgb)[..., 0]
    pil = np.stack([np.asarray(Image.fromarray(x, "RGB").convert("L")) for x in rgb])
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1  # PIL rounds in fixed point


def test_image_modes():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    gray = data.to_image_mode(rgb, "gray28")
    assert gray.shape == (3, 28, 28, 1) and gray.dtype == np.uint8  # pixels stay 8-bit; to_float scales them
    colour = data.to_image_mode(rgb, "rgb32")
    np.testing.assert_array_equal(colour, rgb)
    np.testing.assert_array_equal(data.to_float(colour), rgb.astype(np.float32) / np.float32(255.0))
    # the table a step looks pixels up in is numpy's division, value for value
    np.testing.assert_array_equal(batches.PIXEL_FLOATS, np.arange(256, dtype=np.float32) / np.float32(255.0))
    with pytest.raises(DataError, match="rgb32"):
        data.to_image_mode(rgb[:, :28, :28, :1], "rgb32")


def test_eval_batches_count_every_example_once():
    split = data.Split(np.arange(23, dtype=np.float32).reshape(23, 1, 1, 1), np.arange(23, dtype=np.int32))
    batches = list(data.eval_batches(split, 10))
    assert [b["image"].shape[0] for b in batches] == [10, 10, 10]
    assert sum(b["mask"].sum() for b in batches) == 23
    seen = np.concatenate([b["label"][b["mask"] == 1] for b in batches])
    np.testing.assert_array_equal(seen, np.arange(23))


def test_epoch_order_is_the_seeded_permutation():
    order = data.epoch_order(25, 10, seed=3, epoch=2)
    np.testing.assert_array_equal(order.ravel(), np.random.default_rng([3, 2]).permutation(25)[:20])
    assert order.shape == (2, 10) and order.dtype == np.int32


def test_image_folder_loads_generated_tree(tmp_path):
    root = write_image_folder(tmp_path / "f", n_train_per_class=10, n_test_per_class=3)
    ds = data.load_dataset(data.DataConfig(data_dir=root))
    assert ds.train.images.shape == (90, 28, 28, 1) and len(ds.val) == 10 and len(ds.test) == 30
    assert np.all(np.bincount(ds.val.labels, minlength=10) == 1)
    assert ds.train.images.dtype == np.uint8
    # pixel values survive the round trip exactly
    first = np.asarray(Image.open(os.path.join(root, "Test", "0", "Image00000.png")))
    np.testing.assert_array_equal(ds.test.images[0, ..., 0], first)
    again = data.load_dataset(data.DataConfig(data_dir=root))
    np.testing.assert_array_equal(ds.train.labels, again.train.labels)
    limited = data.load_dataset(data.DataConfig(data_dir=root, limit=20))
    assert len(limited.train) == 20 and len(set(limited.train.labels)) > 3  # a class-mixed subset


def test_colour_folder_in_gray_mode(tmp_path):
    root = write_image_folder(tmp_path / "c", size=(32, 32), mode="RGB", n_train_per_class=2, n_test_per_class=1)
    assert data.load_dataset(data.DataConfig(data_dir=root)).train.images.shape[1:] == (28, 28, 1)
    assert data.load_dataset(data.DataConfig(data_dir=root, image_mode="rgb32")).train.images.shape[1:] == (32, 32, 3)


@pytest.mark.parametrize("layout, message", [
    ("missing", "does not exist"),
    ("no_test", "no Test split"),
    ("no_labels", "no label folders"),
    ("junk", "not a readable image"),
    ("text_file", "not an image file"),
    ("mixed_sizes", "different sizes"),
    ("empty_split", "contains no images"),
])
def test_malformed_folders_raise_clear_errors(tmp_path, layout, message):
    root = tmp_path / "bad"
    if layout != "missing":
        write_image_folder(root, n_train_per_class=1, n_test_per_class=1, classes=2)
    if layout == "no_test":
        import shutil
        shutil.rmtree(root / "Test")
    elif layout == "no_labels":
        import shutil
        shutil.rmtree(root / "Train")
        (root / "Train").mkdir()
    elif layout == "junk":
        (root / "Train" / "0" / "junk.png").write_text("hi")
    elif layout == "text_file":
        (root / "Train" / "0" / "notes.txt").write_text("hi")
    elif layout == "mixed_sizes":
        Image.fromarray(np.zeros((30, 30), np.uint8)).save(root / "Test" / "1" / "big.png")
    elif layout == "empty_split":
        for f in (root / "Test").rglob("*.png"):
            f.unlink()
    with pytest.raises(DataError, match=message):
        data.load_dataset(data.DataConfig(data_dir=str(root)))


def test_unprepared_tfds_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download_reachable", lambda name, timeout=3.0: False)
    with pytest.raises(DataError, match="not prepared"):
        data.read_tfds("cifar10", str(tmp_path / "nothing"))


def test_tfds_mock_cifar10(mock_tfds):
    ds = data.load_dataset(data.DataConfig(dataset="cifar10"))
    assert ds.train.images.shape[1:] == (28, 28, 1)
    assert len(ds.train) + len(ds.val) == 120 and len(ds.test) == 120
    assert ds.class_names[0] == "airplane"


@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR_FOLDER), reason="needs ../shared/data/elec576/CIFAR10")
def test_course_cifar10_folder():
    ds = data.load_dataset(data.DataConfig(data_dir=SHARED_CIFAR_FOLDER))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (9000, 1000, 1000)
    assert ds.image_shape == (28, 28, 1)
    assert np.all(np.bincount(ds.val.labels) == 100)


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_MNIST_TFDS, "mnist")),
                    reason="needs the shared MNIST prepared for TFDS (../shared/data/tfds)")
def test_shared_mnist_through_tfds():
    ds = data.load_dataset(data.DataConfig(dataset="mnist", tfds_data_dir=SHARED_MNIST_TFDS))
    assert len(ds.train) + len(ds.val) == 60000 and len(ds.test) == 10000
    assert abs(len(ds.val) - 6000) <= 5  # 10% of each class, rounded per class
    assert ds.image_shape == (28, 28, 1) and ds.class_names[3] == "3"
    assert np.all(np.bincount(ds.val.labels, minlength=10) >= 500)


def test_resize_is_jax_and_within_one_level_of_tensorflows():
    """resize_uint8 moved from tf.image.resize to jax.image.resize (docs/data.md): at most one level apart."""
    from common.runtime import tf_quiet

    pytest.importorskip("tensorflow")
    tf = tf_quiet.tensorflow()
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 1), dtype=np.uint8)
    ours = data.resize_uint8(images, (28, 28))
    ref = np.clip(np.round(tf.image.resize(images.astype(np.float32), (28, 28), method="bilinear",
                                           antialias=True).numpy()), 0, 255).astype(np.uint8)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert ours.shape == (50, 28, 28, 1) and ours.dtype == np.uint8
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005
