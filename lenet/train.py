"""LeNet5 on CIFAR10 (report Part 1b): `train_and_evaluate(config, workdir)` is the library entry point."""
from __future__ import annotations

import functools
import os

import numpy as np

from common import data as data_lib
from common.config import as_tuple
from common import experiment
from lenet.config import LeNetConfig
from lenet.model import LeNet5, l2_penalty

FIGURE = "fig1_curves.png"
FILTER_HISTORY = "conv1_kernels_by_epoch.npz"


def create_model(config: LeNetConfig, num_classes: int = 10) -> LeNet5:
    return LeNet5(num_classes=num_classes, features=tuple(config.features), hidden=config.hidden,
                  dropout_rate=config.dropout_rate, bias_init=config.bias_init,
                  use_batchnorm=config.use_batchnorm)


def penalty_fn(config: LeNetConfig):
    # With several weights, each model's own arrive from its state (TrainState.penalty_weights) and override these.
    return functools.partial(l2_penalty, conv_l2=as_tuple(config.conv_l2)[0], fc_l2=as_tuple(config.fc_l2)[0])


def _save_conv1_kernels(filter_epochs, workdir: str, epoch: int, state) -> None:
    """Keeps conv1's kernels after the chosen epochs (a few KB each) for the filters-over-training figure."""
    if epoch not in filter_epochs:
        return
    path = os.path.join(workdir, FILTER_HISTORY)
    saved = dict(np.load(path)) if os.path.exists(path) else {}
    kernel = np.asarray(state.params["conv1"]["kernel"])
    saved[f"epoch_{epoch}"] = kernel if kernel.ndim == 4 else kernel[0]  # first model when seeds are stacked
    tmp = path + ".tmp.npz"
    np.savez(tmp, **saved)
    os.replace(tmp, path)


def train_and_evaluate(config: LeNetConfig, workdir: str, dataset: data_lib.Dataset | None = None,
                       progress: bool = True) -> experiment.FitResult:
    """Trains LeNet5 with `config` and writes history, metrics, Figure 1 and a checkpoint into `workdir`.

    Returns the last state (`.state`), the selected best-validation variables (`.variables`, as
    checkpointed), the history and the metrics, so tests and notebooks can use them.
    """
    config.validate()
    if dataset is None:
        dataset = data_lib.load_dataset(data_lib.DataConfig.from_config(config))
    name = "LeNet5" + ("" if config.use_batchnorm else " without batch norm")
    return experiment.fit_classifier(
        model=create_model(config, len(dataset.class_names)),
        penalty_fn=penalty_fn(config),
        dataset=dataset,
        config=config,
        out=workdir,
        task="lenet",
        title=f"{name} on {config.dataset.upper() if not config.data_dir else os.path.basename(os.path.normpath(config.data_dir))} ({config.image_mode})",
        figure_name=FIGURE,
        on_epoch=functools.partial(_save_conv1_kernels, set(config.filter_epochs)),
        progress=progress,
    )
