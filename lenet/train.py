"""LeNet5 on CIFAR10 (report Part 1b): `train_and_evaluate(config, workdir)` is the library entry point."""
from __future__ import annotations

import functools
import io
import os
import sys
import zipfile

import numpy as np

from common import data as data_lib
from common.run import fit
from common.runtime import outputs
from lenet.config import LeNetConfig
from lenet.model import create_model, l2_penalty

FIGURE = "fig1_curves.png"
FILTER_HISTORY = "conv1_kernels_by_epoch.npz"


def penalty_fn(config: LeNetConfig):
    # With several weights, each model's own arrive from its state (TrainState.penalty_weights) and override these.
    return functools.partial(l2_penalty, **{name: values[0] for name, values in config.penalties.items()})


def _save_conv1_kernels(filter_epochs, workdir: str, epoch: int, state) -> None:
    """Keeps conv1's kernels after the chosen epochs (a few KB each) for the filters-over-training figure."""
    if epoch not in filter_epochs:
        return
    path = os.path.join(workdir, FILTER_HISTORY)
    saved = {}
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                saved = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # damaged (a kill, a full disk)
            print(f"warning: {path} is unreadable ({e.__class__.__name__}); the conv1 filter history restarts at "
                  f"epoch {epoch}", file=sys.stderr)
    kernel = np.asarray(state.params["conv1"]["kernel"])
    saved[f"epoch_{epoch}"] = kernel[0]  # the first model: the state always has a model axis
    buffer = io.BytesIO()
    np.savez(buffer, **saved)
    outputs.atomic_write_bytes(path, buffer.getvalue())


def data_name(config: LeNetConfig) -> str:
    """'CIFAR10', or the image folder's name."""
    if config.data.data_dir:
        return os.path.basename(os.path.normpath(config.data.data_dir))
    return config.data.dataset.upper()


def train_and_evaluate(config: LeNetConfig, workdir: str, dataset: data_lib.Dataset | None = None,
                       progress: bool = True, command: str | None = None, specs: list | None = None,
                       recorded: dict | None = None) -> fit.FitResult:
    """Trains LeNet5 with `config` and writes history, metrics, Figure 1 and a checkpoint into `workdir`.

    Returns the last state (`.state`), the selected best-validation variables (`.variables`, as
    checkpointed), the history and the metrics, so tests and notebooks can use them. `command` is recorded
    in metrics.json (the CLI passes the command line). `specs` chooses the models trained together (default:
    every combination of the config's seeds, rates and weights), `recorded` the config recorded (default: the
    config's flat view).
    """
    config.validate()
    if dataset is None:
        dataset = data_lib.load_dataset(config.data)
    name = "LeNet5" + ("" if config.use_batchnorm else " without batch norm")
    show = fit.Presentation(f"{name} on {data_name(config)} ({config.data.image_mode})", FIGURE, command, progress)
    return fit.fit(create_model(config, len(dataset.class_names)), dataset, config.train, workdir, show,
                   task="lenet", config=recorded or config.to_dict(), penalty_fn=penalty_fn(config),
                   penalties=config.penalties, specs=specs, optimizer=config.optimizer,
                   on_epoch=functools.partial(_save_conv1_kernels, set(config.filter_epochs)))
