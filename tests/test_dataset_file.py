"""Dataset files (.npz), the decoded-array cache and `--task export`: the same data, hence the same results, as
the source; every bad file or stale cache entry one line."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from common import data
from common.core.errors import DataError
from common.data import cache as data_cache
from common.data import dataset_file, image_folder
from common.runtime import tf_quiet
from run import main
from tests.conftest import write_image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD = time.time() - 3600  # mtimes old enough to be cached (data_cache.RACY_SECONDS)


def make_old(root) -> str:
    """Sets every file's mtime an hour back, so the folder may be cached."""
    for base, _, names in os.walk(root):
        for n in names:
            os.utime(os.path.join(base, n), (OLD, OLD))
    return str(root)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test alone."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(data_cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def folder(tmp_path):
    return make_old(write_image_folder(tmp_path / "CIFAR", n_train_per_class=6, n_test_per_class=2))


def run_main(capsys, argv) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_line(err: str, *words) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return "Traceback" not in err and bool(lines) and all(w in lines[-1] for w in words)


def export(capsys, tmp_path, *source) -> str:
    out = str(tmp_path / "exported" / "d.npz")
    code, err = run_main(capsys, ["--task", "export", *source, "--out", out])
    assert code == 0, err
    return out


# ------------------------------------------------------------------------------------------ the format


def test_export_writes_plain_numpy_with_the_sources_arrays(tmp_path, capsys, folder, cache):
    out = export(capsys, tmp_path, "--data-dir", folder)
    with np.load(out) as z:  # readable without this project
        assert z["x_train"].shape == (60, 28, 28, 1) and z["x_train"].dtype == np.uint8
        assert z["y_test"].dtype == np.int32 and list(z["class_names"])[:2] == ["airplane", "automobile"]
        assert str(z["image_mode"]) == "L" and str(z["source"]) == os.path.abspath(folder)
        assert str(z["format"]) == dataset_file.FORMAT and str(z["fingerprint"]).startswith("blake2b:")
        ref = image_folder.read_image_folder(folder)
        np.testing.assert_array_equal(z["x_train"], ref["train"][0])
        np.testing.assert_array_equal(z["y_train"], ref["train"][1])
    again = export(capsys, tmp_path, "--data-dir", folder)  # over an existing file: replaced atomically
    assert open(again, "rb").read() == open(out, "rb").read()


def test_a_file_gives_the_dataset_of_its_source(tmp_path, capsys, folder, cache):
    out = export(capsys, tmp_path, "--data-dir", folder)
    for kwargs in ({}, {"limit": 20, "split_seed": 3}, {"val_fraction": 0.2}):
        a = data.load_dataset(data.DataConfig(data_dir=folder, **kwargs))
        b = data.load_dataset(data.DataConfig(data_dir=out, **kwargs))
        assert data.fingerprint(a) == data.fingerprint(b)  # every split's pixels and labels, and the class names
        assert b.source.startswith("dataset file ") and a.source.startswith("image folder ")


@pytest.mark.slow
def test_same_seed_same_metrics_from_folder_file_and_cache(tmp_path, capsys, folder, cache):
    from lenet.config import LeNetConfig
    from lenet.train import train_and_evaluate

    out = export(capsys, tmp_path, "--data-dir", folder)
    assert os.listdir(cache)  # the export's read filled the cache: the third run reads it
    runs = []
    for source in (folder, out, folder):
        config = LeNetConfig.create(data_dir=source, epochs=1, batch_size=10, eval_batch_size=16, hidden=32)
        runs.append(train_and_evaluate(config, str(tmp_path / f"r{len(runs)}"), progress=False).metrics)
    keys = ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss")
    assert [[r[k] for k in keys] for r in runs[1:]] == [[runs[0][k] for k in keys]] * 2


# ------------------------------------------------------------------------------------------ bad files


def write_entries(path, **changes) -> str:
    """A dataset file with 10 classes, then `changes` (None removes an entry), written without the fingerprint."""
    rng = np.random.default_rng(0)
    entries = dict(x_train=rng.integers(0, 255, (20, 28, 28, 1), dtype=np.uint8), y_train=np.arange(20) % 10,
                   x_test=rng.integers(0, 255, (10, 28, 28, 1), dtype=np.uint8), y_test=np.arange(10),
                   class_names=np.asarray(data.CIFAR10_CLASSES), format=np.asarray(dataset_file.FORMAT),
                   format_version=np.asarray(1))
    entries.update(changes)
    np.savez(path, **{k: v for k, v in entries.items() if v is not None})
    return str(path)


def truncated(tmp_path):
    good = write_entries(tmp_path / "good.npz")
    payload = open(good, "rb").read()
    (tmp_path / "t.npz").write_bytes(payload[: len(payload) // 2])
    return str(tmp_path / "t.npz")


def fingerprint_changed(tmp_path):
    path = str(tmp_path / "f.npz")
    dataset_file.write(path, dataset_file.read(write_entries(tmp_path / "g.npz")))
    with np.load(path) as z:
        entries = dict(z)
    entries["y_test"] = entries["y_test"][::-1].copy()
    np.savez(path, **entries)
    return path


@pytest.mark.parametrize("make, words", [
    (truncated, ["cannot be read", "truncated or not an .npz"]),
    (lambda t: str(np.savez(t / "other.npz", weights=np.zeros(3)) or t / "other.npz"),
     ["is not a dataset file of this project"]),
    (lambda t: write_entries(t / "l.npz", y_train=np.arange(20) % 12),
     ["y_train holds label 10, outside 0-9"]),
    (lambda t: write_entries(t / "m.npz", y_test=np.arange(10) + 3,
                             class_names=np.asarray([str(i) for i in range(20)])),
     ["y_test holds label 10, outside 0-9: the model has 10 classes"]),
    (lambda t: write_entries(t / "s.npz", x_test=np.zeros((10, 28, 28), np.uint8)), ["x_test must be uint8"]),
    (lambda t: write_entries(t / "n.npz", y_train=None), ["has no 'y_train' entry"]),
    (fingerprint_changed, ["do not match its fingerprint"]),
    (lambda t: str(t / "missing.npz"), ["does not exist", "--task export"]),
])
def test_bad_dataset_files_are_one_line_and_exit_2(tmp_path, capsys, make, words):
    path = make(tmp_path)
    out = tmp_path / "r"
    (out / "checkpoint").mkdir(parents=True)
    (out / "metrics.json").write_text('{"task": "lenet"}\n')  # an earlier lenet result: it may be replaced
    code, err = run_main(capsys, ["--task", "lenet", "--no-progress", "--epochs", "1", "--batch-size", "10",
                                  "--data-dir", path, "--out", str(out)])
    assert code == 2 and one_line(err, path, *words), err
    assert sorted(os.listdir(out)) == ["checkpoint", "metrics.json"]
    assert (out / "metrics.json").read_text() == '{"task": "lenet"}\n'


def test_export_out_must_name_an_npz(tmp_path, capsys, folder):
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--out", str(tmp_path / "x")])
    assert code == 2 and one_line(err, "name it FILE.npz")
    assert not os.path.exists(tmp_path / "x")


# --------------------------------------------------------------------------------------------- the cache


def no_decoding(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(image_folder, "read_image_folder", refuse)


def test_folder_cache_is_written_once_then_read_without_decoding(folder, cache, monkeypatch):
    first = data.load_dataset(data.DataConfig(data_dir=folder))
    [entry] = os.listdir(cache)
    assert entry.startswith("folder-CIFAR-") and entry.endswith(".npz")
    no_decoding(monkeypatch)
    assert data.fingerprint(data.load_dataset(data.DataConfig(data_dir=folder))) == data.fingerprint(first)


def test_a_changed_source_rebuilds_its_entry_with_a_note(folder, cache, capsys):
    data.load_dataset(data.DataConfig(data_dir=folder))
    from PIL import Image

    changed = os.path.join(folder, "Test", "3", "Image00001.png")
    Image.fromarray(np.full((28, 28), 7, np.uint8)).save(changed)
    os.utime(changed, (OLD + 5, OLD + 5))
    capsys.readouterr()
    ds = data.load_dataset(data.DataConfig(data_dir=folder))
    err = capsys.readouterr().err
    assert one_line(err, "data cache:", "an earlier state of the source", "rebuilding") and len(err.splitlines()) == 1
    # the new pixels, not the cached ones (float in [0, 1] today, uint8 once the core branch lands)
    scale = 1 if ds.test.images.dtype == np.uint8 else 255.0
    assert np.all(np.round(np.asarray(ds.test.images[7], np.float64) * scale) == 7)
    data.load_dataset(data.DataConfig(data_dir=folder))
    assert capsys.readouterr().err == ""  # the rebuilt entry is used


@pytest.mark.parametrize("damage, words", [
    (lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 3), "cannot be read"),
    (lambda p: np.savez(p, something=np.zeros(2)), "is not a dataset file of this project"),
])
def test_a_damaged_or_foreign_entry_is_rebuilt_never_used(folder, cache, capsys, damage, words):
    first = data.fingerprint(data.load_dataset(data.DataConfig(data_dir=folder)))
    [entry] = [str(p) for p in cache.iterdir()]
    damage(entry)
    capsys.readouterr()
    assert data.fingerprint(data.load_dataset(data.DataConfig(data_dir=folder))) == first
    assert one_line(capsys.readouterr().err, "data cache:", words, "rebuilding")
    dataset_file.read(entry)  # whole again


def test_no_data_cache_and_fresh_files_write_nothing(tmp_path, folder, cache, capsys):
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--no-data-cache", "--out",
                                  str(tmp_path / "e.npz")])
    assert code == 0 and not cache.exists()
    os.environ[data_cache.CACHE_ENV] = str(cache)  # (the fixture restores it)
    fresh = write_image_folder(tmp_path / "fresh", n_train_per_class=2, n_test_per_class=1)  # mtimes: now
    data.load_dataset(data.DataConfig(data_dir=fresh))
    assert not cache.exists()  # a file rewritten within one mtime tick could go unseen: not cached yet


def test_the_cache_folder_flag(tmp_path, folder, capsys, monkeypatch):
    monkeypatch.setenv(data_cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--data-cache", str(tmp_path / "c2"),
                                  "--out", str(tmp_path / "e.npz")])
    assert code == 0 and len(os.listdir(tmp_path / "c2")) == 1 and not (tmp_path / "elsewhere").exists()


def test_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(data_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_cache.cache_dir() == str(tmp_path / "elec576-jax" / "datasets")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_cache.cache_dir() == os.path.expanduser("~/.cache/elec576-jax/datasets")


def fake_prepared_tfds(root) -> str:
    version = root / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text('{"name": "mnist"}')
    (version / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"shard")
    make_old(root)
    return str(version)


def test_tfds_cache_needs_no_tensorflow_and_notices_a_changed_shard(tmp_path, cache, monkeypatch, capsys):
    version = fake_prepared_tfds(tmp_path / "tfds")
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 255, (n, 28, 28, 1), dtype=np.uint8), np.arange(n, dtype=np.int32) % 10)
              for s, n in (("train", 30), ("test", 10))}
    reads = []
    monkeypatch.setattr(data, "_read_tfds", lambda name, d, why="": reads.append(name) or (splits, version))
    config = data.DataConfig(dataset="mnist", tfds_data_dir=str(tmp_path / "tfds"))
    first = data.load_dataset(config)
    assert reads == ["mnist"] and first.source == "tfds:mnist"
    assert data.fingerprint(data.load_dataset(config)) == data.fingerprint(first) and reads == ["mnist"]
    shard = os.path.join(version, "mnist-train.tfrecord-00000-of-00001")
    open(shard, "ab").write(b"more")
    os.utime(shard, (OLD, OLD))
    capsys.readouterr()
    data.load_dataset(config)
    assert reads == ["mnist", "mnist"] and one_line(capsys.readouterr().err, "data cache:", "rebuilding")


def test_without_tfds_an_uncached_tfds_dataset_is_one_line_saying_what_to_do(tmp_path, cache, monkeypatch):
    def missing():
        raise ImportError("tensorflow is blocked")

    monkeypatch.setattr(tf_quiet, "tfds", missing)
    with pytest.raises(DataError, match=r"reading TFDS dataset 'mnist' needs the `tfds` extra .*--task export "
                                        r"--dataset mnist.*no prepared mnist is in .*tfds, so the data cache has no"):
        data.load_dataset(data.DataConfig(dataset="mnist", tfds_data_dir=str(tmp_path / "tfds")))
    fake_prepared_tfds(tmp_path / "tfds")
    with pytest.raises(DataError, match="the data cache .* has no entry for .*mnist/3.0.1"):
        data.load_dataset(data.DataConfig(dataset="mnist", tfds_data_dir=str(tmp_path / "tfds")))


# ------------------------------------------------------------------------------------ without TensorFlow


def test_folder_file_and_cache_read_where_tensorflow_cannot_be_imported(tmp_path, capsys, folder, cache):
    out = export(capsys, tmp_path, "--data-dir", folder)
    block = tmp_path / "block"
    for m in ("tensorflow", "tensorflow_datasets"):
        (block / m).mkdir(parents=True)
        (block / m / "__init__.py").write_text(f"raise ImportError('{m} is blocked')")
    fresh = write_image_folder(tmp_path / "fresh", n_train_per_class=2, n_test_per_class=1, size=(32, 32),
                               mode="RGB")  # resized to 28x28 without TensorFlow too
    code = (f"import sys, run; from common import data as d\n"
            f"[run.TASKS.get(name) for name in run.TASKS.names]  # every task's modules\n"
            f"for p in ({folder!r}, {out!r}, {fresh!r}): d.load_dataset(d.DataConfig(data_dir=p))\n"
            f"try: d.load_dataset(d.DataConfig(dataset='mnist', tfds_data_dir={str(tmp_path / 'none')!r}))\n"
            f"except d.DataError as e: print(e)\n"
            f"assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "needs the `tfds` extra (pip install -e '.[tfds]')" in r.stdout


# ------------------------------------------------------------------------------------------ --task all


def test_task_all_names_the_mnist_source_and_forwards_it_to_the_recurrent_tasks(capsys):
    import run
    from common.cli import run_all

    with pytest.raises(SystemExit):
        main(["--task", "all", "--help"])
    assert "--mnist PATH" in capsys.readouterr().out
    user = ["--task", "all", "--data-dir", "c.npz", "--mnist", "m.npz", "--no-data-cache"]
    for name in run_all.chain(run.TASKS):
        argv = run_all.task_argv(run.TASKS, name, "R", quick=True, user_argv=user)
        assert ("--mnist" in argv) == (name in ("rnn", "compare")), (name, argv)
        assert ("c.npz" in argv) == (name in ("lenet", "visualize", "deconv")) and "--no-data-cache" in argv
    assert "export" not in run_all.chain(run.TASKS)


def test_mnist_flag_is_the_data_dir_of_rnn(tmp_path, capsys):
    mnist = write_entries(tmp_path / "m.npz", y_train=np.arange(20) % 12)  # refused: proves it was read
    code, err = run_main(capsys, ["--task", "rnn", "--no-progress", "--epochs", "1", "--mnist", mnist,
                                  "--out", str(tmp_path / "r")])
    assert code == 2 and one_line(err, mnist, "outside 0-9")
    code, err = run_main(capsys, ["--task", "rnn", "--mnist", mnist, "--data-dir", "other", "--out",
                                  str(tmp_path / "r")])
    assert code == 2 and one_line(err, "--mnist and --data-dir")


@pytest.mark.parametrize("flag", ["--data-dir", "--mnist"])
def test_task_all_refuses_a_bad_file_before_its_first_task(tmp_path, capsys, flag):
    bad = truncated(tmp_path)
    code, err = run_main(capsys, ["--task", "all", "--quick", flag, bad, "--out", str(tmp_path / "results")])
    assert code == 2 and one_line(err, bad, "cannot be read") and "===" not in err
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------- damaged headers, labels, classes (issue 31)


def npz_with_raw_member(path, name: str, header: dict, payload: bytes = b"") -> str:
    """A dataset file (write_entries) whose member `name`.npy is replaced by `header` and `payload`."""
    import io
    import zipfile

    good = write_entries(str(path) + ".good.npz")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            raw = buf.getvalue() + payload if info.filename == f"{name}.npy" else src.read(info)
            dst.writestr(info.filename, raw)
    return str(path)


def raw_member(path: str, name: str, payload: bytes) -> str:
    """`path` with a zip member that is not an .npy (np.load gives it as bytes, not an array)."""
    import zipfile

    with zipfile.ZipFile(path, "a") as z:
        z.writestr(name, payload)
    return path


def encrypted(t) -> str:
    """A dataset file whose zip members say they are encrypted (zipfile then refuses them with RuntimeError)."""
    raw = bytearray(open(write_entries(t / "plain.npz"), "rb").read())
    for signature, flags in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local headers, central directory
        at = raw.find(signature)
        while at >= 0:
            raw[at + flags] |= 1
            at = raw.find(signature, at + 4)
    (t / "enc.npz").write_bytes(raw)
    return str(t / "enc.npz")


@pytest.mark.parametrize("make, words", [
    (lambda t: write_entries(t / "v.npz", format_version=np.asarray("abc")), ["has format version 'abc'"]),
    (encrypted, ["cannot be read (RuntimeError: File", "is encrypted"]),
    (lambda t: raw_member(write_entries(t / "r.npz", format_version=None), "format_version", b"1"),
     ["has format version none"]),
    (lambda t: write_entries(t / "e.npz", x_test=np.zeros((10, 0, 28, 1), np.uint8)), ["x_test must be uint8",
                                                                                        "it is uint8 [10, 0, 28, 1]"]),
    (lambda t: write_entries(t / "w.npz", format_version=np.asarray([1, 1])), ["has format version [1, 1]"]),
    (lambda t: npz_with_raw_member(t / "h.npz", "x_train", {"descr": "|u1", "fortran_order": False,
                                                             "shape": (10**12, 28, 28, 1)}, b"\0" * 100),
     ["the header of x_train claims uint8 [1000000000000, 28, 28, 1]", "the file is damaged"]),
    (lambda t: write_entries(t / "u.npz", y_train=(np.arange(20) % 10).astype(np.uint64) + np.uint64(2**32)),
     ["y_train holds label 4294967296, outside 0-9"]),
    (lambda t: write_entries(t / "c.npz", y_test=np.arange(10) % 9), ["y_test has no example of class 9 ('truck')"]),
])
def test_damaged_headers_versions_and_labels_are_one_line(tmp_path, capsys, make, words):
    path = make(tmp_path)
    code, err = run_main(capsys, ["--task", "lenet", "--no-progress", "--epochs", "1", "--batch-size", "10",
                                  "--data-dir", path, "--out", str(tmp_path / "r")])
    assert code == 2 and one_line(err, path, *words), err
    assert not os.path.exists(tmp_path / "r")


def test_shapes_are_checked_from_the_headers_before_any_array_is_read(tmp_path, monkeypatch):
    """A compressed file of wrong shape (here 3-d images) is refused without np.load reading a single array."""
    path = str(tmp_path / "z.npz")
    np.savez_compressed(path, x_train=np.zeros((5000, 28, 28), np.uint8), y_train=np.zeros(5000, np.int32),
                        x_test=np.zeros((10, 28, 28, 1), np.uint8), y_test=np.arange(10),
                        class_names=np.asarray(data.MNIST_CLASSES), format=np.asarray(dataset_file.FORMAT),
                        format_version=np.asarray(1))
    monkeypatch.setattr(dataset_file.np, "load", lambda *a, **k: pytest.fail("an array was read"))
    with pytest.raises(DataError, match=r"x_train must be uint8 \[n, height, width, 1 or 3\] with n, height, width > "
                                        r"0, it is uint8 \[5000, 28, 28\]"):
        dataset_file.read(path)


def test_arrays_larger_than_memory_are_refused_from_the_headers(tmp_path, monkeypatch):
    path = write_entries(tmp_path / "big.npz")
    assert dataset_file.physical_memory() > os.path.getsize(path)
    monkeypatch.setattr(dataset_file, "physical_memory", lambda: 10_000)  # the file's arrays: 23,560 bytes
    monkeypatch.setattr(dataset_file.np, "load", lambda *a, **k: pytest.fail("an array was read"))
    with pytest.raises(DataError, match="its arrays hold 0.0 GB once read, more than this machine's 0.0 GB"):
        dataset_file.read(path)


def test_a_label_is_checked_before_the_cast_to_int32(tmp_path):
    labels = (np.arange(20) % 10).astype(np.uint64)
    labels[0] = 2**32 + 3  # 3 once cast to int32
    with pytest.raises(DataError, match="y_train holds label 4294967299, outside 0-9"):
        dataset_file.read(write_entries(tmp_path / "w.npz", y_train=labels))
    labels[0] = 3
    assert dataset_file.read(write_entries(tmp_path / "ok.npz", y_train=labels)).splits["train"][1].dtype == np.int32


def test_fewer_classes_than_names_is_fine_when_none_is_missing_below_the_highest(tmp_path):
    """As a 3-class folder read as CIFAR10 (10 names, labels 0-2): a gap is refused, the top end is not."""
    f = dataset_file.read(write_entries(tmp_path / "three.npz", y_train=np.arange(20) % 3, y_test=np.arange(10) % 3))
    assert len(f.class_names) == 10 and set(f.splits["test"][1]) == {0, 1, 2}
    with pytest.raises(DataError, match="y_train has no example of class 1 .'automobile'.; every class from 0 to 2"):
        dataset_file.read(write_entries(tmp_path / "gap.npz", y_train=np.arange(20) % 3 * (np.arange(20) % 3 != 1),
                                        y_test=np.arange(10) % 3))


# ------------------------------------------------------------------------- export replaces only its own file


def keras_like(t) -> str:
    """The layout of Keras's mnist.npz (3-d images, no format entry), which the README names as the model."""
    path = t / "mnist.npz"
    np.savez(path, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.arange(4), x_test=np.zeros((2, 28, 28),
             np.uint8), y_test=np.arange(2))
    return str(path)


@pytest.mark.parametrize("make, words", [
    (lambda t: str(np.savez(t / "weights.npz", w=np.arange(5)) or t / "weights.npz"), ["not a dataset file"]),
    (keras_like, ["not a dataset file this project wrote"]),
    (lambda t: str((t / "notes.npz").write_text("my notes\n") and t / "notes.npz"), ["not a dataset file"]),
    (lambda t: write_entries(t / "other.npz", format=np.asarray("another format")), ["not a dataset file"]),
    (encrypted, ["not a dataset file"]),
])
def test_export_never_replaces_a_file_it_did_not_write(tmp_path, capsys, folder, cache, monkeypatch, make, words):
    path = make(tmp_path)
    before = open(path, "rb").read()
    monkeypatch.setattr(image_folder, "list_image_folder", lambda *a: pytest.fail("the data were read"))
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--out", path])
    assert code == 2 and one_line(err, f"--out {path} is not replaced", *words), err
    assert open(path, "rb").read() == before and not cache.exists()


def test_export_does_not_write_through_or_over_a_link(tmp_path, capsys, folder, cache):
    mine = export(capsys, tmp_path, "--data-dir", folder)  # a file export wrote: replaceable, but not via a link
    link = tmp_path / "link.npz"
    link.symlink_to(mine)
    before = open(mine, "rb").read()
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--out", str(link)])
    assert code == 2 and one_line(err, "is not replaced: it is a link"), err
    assert link.is_symlink() and open(mine, "rb").read() == before


# ------------------------------------------------------------------------------- the cache (issue 31)


def test_one_folder_spelled_three_ways_is_one_entry_without_a_note(tmp_path, folder, cache, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = data.fingerprint(data.load_dataset(data.DataConfig(data_dir=folder)))
    capsys.readouterr()
    name = os.path.basename(folder)
    (tmp_path / "alias").symlink_to(folder)
    for spelling in (name, f"{name}/../{name}", f"./{name}/", "alias"):
        assert data.fingerprint(data.load_dataset(data.DataConfig(data_dir=spelling))) == first
        assert capsys.readouterr().err == "", spelling
    assert len(os.listdir(cache)) == 1


def test_a_same_size_rewrite_with_the_old_mtime_is_caught_by_the_ctime(tmp_path, cache, capsys):
    from PIL import Image

    root = tmp_path / "flat"
    for split in ("Train", "Test"):
        for c in range(2):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((28, 28), 10 * c + i, np.uint8)).save(root / split / str(c) / f"{i}.png")
    make_old(root)
    data.load_dataset(data.DataConfig(data_dir=str(root)))
    target = root / "Test" / "1" / "0.png"
    st = os.stat(target)
    time.sleep(0.01)  # a ctime tick
    Image.fromarray(np.full((28, 28), 99, np.uint8)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` or a careful tool does
    assert os.path.getsize(target) == st.st_size and os.stat(target).st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    ds = data.load_dataset(data.DataConfig(data_dir=str(root)))
    assert one_line(capsys.readouterr().err, "data cache:", "an earlier state of the source", "rebuilding")
    assert 99 in np.round(np.asarray(ds.test.images, np.float64) * (1 if ds.test.images.dtype == np.uint8 else 255))


def test_an_unwritable_cache_is_a_note_and_the_run_goes_on(tmp_path, folder, cache, capsys, monkeypatch):
    """EROFS as a read-only home gives it, through the project's atomic writer (which words it as a UserError
    about --out): one note, the data still loaded."""
    import builtins
    import errno

    real_open = builtins.open

    def read_only(path, *a, **k):
        if str(path).startswith(str(cache)) and "w" in (a[0] if a else k.get("mode", "r")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", read_only)
    ds = data.load_dataset(data.DataConfig(data_dir=folder))
    err = capsys.readouterr().err
    assert len(ds.train) + len(ds.val) == 60 and not os.listdir(cache)
    assert one_line(err, "data cache: cannot write", "Read-only file system", "going on without the cache")
    assert len(err.splitlines()) == 1 and "--out" not in err


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys")
def test_a_cache_folder_in_sysfs_is_a_note(tmp_path, folder, capsys):
    code, err = run_main(capsys, ["--task", "export", "--data-dir", folder, "--data-cache", "/sys/kernel",
                                  "--out", str(tmp_path / "e.npz")])
    assert code == 0 and "data cache: cannot write /sys/kernel/" in err and "Traceback" not in err, err
    assert os.path.isfile(tmp_path / "e.npz")
