"""The public API of docs/api.md, used as a notebook would: train an experiment, train your own Flax model on
your own arrays with the pure core, write a result folder with `fit`, read it back."""
import json
import warnings

import flax.linen as nn
import numpy as np
import pytest

from common.core import loop
from common.core.config import TrainConfig
from common.data import Dataset, Split
from common.run import fit


class TinyMLP(nn.Module):
    """A model of your own: any linen module with `__call__(x, train)` works."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(2)(nn.relu(nn.Dense(16)(x)))


def separable(n: int, seed: int) -> Split:
    """Images [n, 4, 4, 1] uint8 whose class is whether the left half is brighter than the right half."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    labels = (images[:, :, :2].astype(int).sum((1, 2, 3)) > images[:, :, 2:].astype(int).sum((1, 2, 3)))
    return Split(images, labels.astype(np.int32))


def my_data() -> Dataset:
    return Dataset(separable(512, 0), separable(128, 1), separable(128, 2), ("right", "left"), "generated")


def test_train_your_own_model_with_the_pure_core():
    train = TrainConfig(lr=3e-2, batch_size=32, epochs=4, seeds=2)
    trained = loop.train_models(TinyMLP(), my_data(), train)
    assert len(trained.history) == 4 and [s.seed for s in trained.specs] == [0, 1]
    first, last = trained.history[0], trained.history[-1]
    assert len(last["val_accuracy"]) == 2  # one value per model
    assert min(last["val_accuracy"]) > 0.8 and min(last["val_accuracy"]) > max(first["train_running_accuracy"])
    assert trained.state.params["Dense_1"]["kernel"].shape == (2, 16, 16)  # [N models, in, out]
    assert set(trained.best.epoch) <= {1, 2, 3, 4}


def test_the_core_calls_its_hooks_and_continues_a_history():
    calls = []
    train = TrainConfig(lr=3e-2, batch_size=32, epochs=3)
    first = loop.train_models(TinyMLP(), my_data(), train.__class__(**{**train.__dict__, "epochs": 2}))
    restored = lambda state, best, mesh: (state, list(first.history))  # noqa: E731 (continue after epoch 2)
    trained = loop.train_models(TinyMLP(), my_data(), train, restore=restored,
                                on_epoch=lambda epoch, *_: calls.append(epoch),
                                between_calls=lambda: calls.append("call"))
    assert [c for c in calls if c != "call"] == [3]  # only the epoch still to train; no epoch 0 on a resume
    assert calls.count("call") == 1 + 512 // 32  # before the epoch and before each one-step call
    assert len(trained.history) == 3


def test_fit_writes_a_result_folder_that_reads_back(tmp_path):
    train = TrainConfig(lr=3e-2, batch_size=32, epochs=2)
    result = fit.fit(TinyMLP(), my_data(), train, str(tmp_path / "mine"),
                     fit.Presentation("TinyMLP", "curves.png", progress=False), task="mine", config={"lr": 3e-2})
    metrics = json.loads((tmp_path / "mine" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert (tmp_path / "mine" / "curves.png").is_file() and (tmp_path / "mine" / "history.csv").is_file()


def test_the_old_fit_name_warns_and_still_trains(tmp_path):
    from common import fit as old

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = old.fit(TinyMLP(), my_data(), TrainConfig(lr=3e-2, batch_size=32, epochs=1), str(tmp_path / "o"),
                         task="mine", config={}, title="TinyMLP", figure_name="c.png", progress=False)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert (tmp_path / "o" / "metrics.json").is_file() and len(result.history) == 1


def test_every_old_module_name_still_imports_the_moved_module_with_a_warning(monkeypatch):
    """The floors moved modules (docs/api.md, Changes): each old name is the new module, and says where it went."""
    import importlib
    import sys

    import common

    assert len(common.MOVED) >= 29
    for old, new in common.MOVED.items():
        monkeypatch.delitem(sys.modules, old, raising=False)  # as in a fresh process: the old name not yet seen
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old
    from common.outputs import read_json
    from common.train import loop

    assert loop is importlib.import_module("common.core.loop")
    assert read_json is importlib.import_module("common.runtime.outputs").read_json


def test_train_an_experiment_on_your_own_arrays(tmp_path):
    from lenet.config import LeNetConfig
    from lenet.train import train_and_evaluate

    rng = np.random.default_rng(0)
    split = lambda n: Split(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),  # noqa: E731
                            (np.arange(n) % 10).astype(np.int32))
    data = Dataset(split(100), split(20), split(20), tuple(str(i) for i in range(10)), "generated")
    config = LeNetConfig.create(epochs=1, batch_size=50, hidden=16)
    result = train_and_evaluate(config, str(tmp_path / "lenet"), dataset=data, progress=False)
    assert result.metrics["epochs"] == 1 and (tmp_path / "lenet" / "fig1_curves.png").is_file()
