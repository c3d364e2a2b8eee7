"""The PIL image-folder reader: the arrays TFDS's ImageFolder gave (bit for bit), and its one-line refusals."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from common import data
from common.core.errors import DataError
from common.data import image_folder
from tests.conftest import SHARED_CIFAR_FOLDER, write_image_folder


def tfds_image_folder(root: str) -> dict:
    """The reader this project used before (TFDS's ImageFolder through tf.data), as the reference."""
    tfds = pytest.importorskip("common.runtime.tf_quiet").tfds()
    builder = tfds.folder_dataset.ImageFolder(root)
    out = {}
    for key, split_name in (("train", "Train"), ("test", "Test")):
        ex = tfds.as_numpy(builder.as_dataset(split=split_name, shuffle_files=False, batch_size=-1))
        names = builder.info.features["label"].names
        order = np.argsort(ex["image/filename"], kind="stable")
        images = ex["image"][order]
        if np.all(images[..., 0] == images[..., 1]) and np.all(images[..., 1] == images[..., 2]):
            images = images[..., :1]
        out[key] = (images, np.asarray([int(names[i]) for i in ex["label"][order]], np.int32))
    return out


def assert_same(ours: dict, ref: dict) -> None:
    for key in ("train", "test"):
        assert ours[key][0].dtype == np.uint8 and ours[key][1].dtype == np.int32
        assert ours[key][0].shape == ref[key][0].shape
        np.testing.assert_array_equal(ours[key][0], ref[key][0])
        np.testing.assert_array_equal(ours[key][1], ref[key][1])


def convert_all(root: str, mode: str) -> None:
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with Image.open(p) as im:
                converted = im.convert(mode) if mode != "P" else im.convert("RGB").quantize(64)
            converted.save(p)


@pytest.mark.parametrize("size, mode, convert", [
    ((28, 28), "L", None),        # the course's format
    ((32, 32), "RGB", None),      # colour
    ((28, 28), "L", "RGB"),       # colour files whose pixels are all gray: one channel, as TFDS's reader kept
    ((16, 16), "RGB", "RGBA"),    # alpha dropped
    ((16, 16), "RGB", "P"),       # palette expanded
    ((16, 16), "L", "1"),         # bilevel
])
def test_pil_reader_is_bit_identical_to_tfds_image_folder(tmp_path, size, mode, convert):
    pytest.importorskip("tensorflow_datasets")
    root = write_image_folder(tmp_path / "f", n_train_per_class=3, n_test_per_class=2, size=size, mode=mode,
                              classes=12)  # 12 labels: '10' and '11' sort between '1' and '2' by path
    if convert:
        convert_all(root, convert)
    assert_same(image_folder.read_image_folder(root), tfds_image_folder(root))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_CIFAR_FOLDER), reason="needs ../shared/data/elec576/CIFAR10")
def test_course_cifar10_is_bit_identical_to_tfds_image_folder():
    pytest.importorskip("tensorflow_datasets")
    assert_same(image_folder.read_image_folder(SHARED_CIFAR_FOLDER, 10), tfds_image_folder(SHARED_CIFAR_FOLDER))


def test_file_manager_litter_is_skipped(tmp_path):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    clean = image_folder.read_image_folder(root)
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._Image00000.png"):
        (tmp_path / "f" / "Train" / "1" / name).write_bytes(b"\x00\x05junk")
    (tmp_path / "f" / "Test" / "2" / ".ipynb_checkpoints").mkdir()
    assert_same(image_folder.read_image_folder(root), clean)


@pytest.mark.parametrize("split", ["Train", "Test"])
def test_an_empty_label_folder_is_refused(tmp_path, split):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=6)
    for f in (tmp_path / "f" / split / "5").iterdir():
        f.unlink()
    (tmp_path / "f" / split / "5" / ".DS_Store").write_bytes(b"x")  # litter does not count as an image
    with pytest.raises(DataError, match=f"label folder '.*{split}/5' has no images"):
        data.load_dataset(data.DataConfig(data_dir=root))


def test_the_first_bad_file_in_path_order_is_named(tmp_path):
    """Decoding runs in threads; the error is still the first bad file's, on every run."""
    root = write_image_folder(tmp_path / "f", n_train_per_class=30, n_test_per_class=1, classes=3)
    for p in ("Train/2/Image00029.png", "Train/0/Image00017.png", "Train/1/Image00003.png"):
        (tmp_path / "f" / p).write_bytes(b"not a png")
    for _ in range(3):
        with pytest.raises(DataError, match=r"Train/0/Image00017.png' is not a readable image"):
            image_folder.read_image_folder(root)


def test_mixed_modes_name_both_files(tmp_path):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=2)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "f" / "Train" / "1" / "Image00001.png")
    with pytest.raises(DataError, match=r"Train/0/Image00000.png is 28x28 grayscale, .*Train/1/Image00001.png is "
                                        r"28x28 colour"):
        image_folder.read_image_folder(root)


# --------------------------------------------------------------------- links and decompression bombs (issue 31)


@pytest.mark.parametrize("target, words", [
    ("/nonexistent/x.png", "is a link to '/nonexistent/x.png', which does not exist (or is a loop of links)"),
    ("zz.png", "is a link to 'zz.png', which does not exist (or is a loop of links)"),  # itself
    ("OUTSIDE", "is a link to '{outside}', outside the data folder"),
])
def test_a_link_that_leads_nowhere_or_out_of_the_folder_is_refused(tmp_path, target, words):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(outside)
    link = tmp_path / "f" / "Train" / "1" / "zz.png"
    link.symlink_to(str(outside) if target == "OUTSIDE" else target)
    with pytest.raises(DataError, match=re.escape("Train/1/zz.png' " + words.format(outside=outside))):
        data.load_dataset(data.DataConfig(data_dir=root))


def test_a_label_or_split_folder_linked_out_of_the_data_folder_is_refused(tmp_path):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    elsewhere = write_image_folder(tmp_path / "g", n_train_per_class=2, n_test_per_class=1, classes=3)
    os.rename(tmp_path / "f" / "Test" / "2", tmp_path / "moved")
    (tmp_path / "f" / "Test" / "2").symlink_to(tmp_path / "g" / "Test" / "2")
    with pytest.raises(DataError, match=r"Test/2' is a link to .*g/Test/2', outside the data folder"):
        image_folder.list_image_folder(root)
    with pytest.raises(DataError, match="outside the data folder"):
        image_folder.read_image_folder(root)
    assert image_folder.list_image_folder(elsewhere)  # the same files, inside their own folder: fine


def test_links_inside_the_data_folder_are_read(tmp_path):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    (tmp_path / "f" / "Train" / "1" / "zz.png").symlink_to(os.path.join("..", "0", "Image00000.png"))
    x, y = image_folder.read_image_folder(root)["train"]
    assert list(y) == [0, 0, 1, 1, 1, 2, 2] and np.array_equal(x[4], x[0])  # Train/1/zz.png: Train/0's first


@pytest.mark.parametrize("limit", [500, 100])  # 28x28 = 784 pixels: PIL's warning (limit < 784 < 2x), its error
def test_a_decompression_bomb_is_one_data_error(tmp_path, monkeypatch, limit):
    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # a 20000x20000 PNG is the same case for PIL's default
    with pytest.raises(DataError, match=r"Train/0/Image00000.png' is too large to decode \(Image size \(784 "
                                        r"pixels\) exceeds limit of"):
        image_folder.read_image_folder(root)
    import warnings

    assert not any(f[2] is Image.DecompressionBombWarning for f in warnings.filters)  # the filter was undone


@pytest.mark.slow
def test_a_20000x20000_png_through_the_cli_is_one_line(tmp_path, capsys):
    from run import main

    root = write_image_folder(tmp_path / "f", n_train_per_class=2, n_test_per_class=1, classes=3)
    Image.new("L", (20000, 20000)).save(tmp_path / "f" / "Train" / "2" / "zz_bomb.png", optimize=True)
    code = main(["--task", "lenet", "--no-progress", "--data-dir", root, "--no-data-cache", "--out",
                 str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "zz_bomb.png' is too large to decode" in err.splitlines()[-1]
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_a_folder_that_cannot_be_listed_is_one_data_error(tmp_path, monkeypatch):
    """What a label folder without read permission gives a non-root user (simulated: the tests may run as root)."""
    root = write_image_folder(tmp_path / "f", n_train_per_class=1, n_test_per_class=1, classes=2)
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith(os.path.join("Test", "1")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match=r"cannot read '.*Test/1' in the data folder \(Permission denied\)"):
        image_folder.list_image_folder(root)
