"""Reading a `--task lenet` checkpoint back, for the tasks that build on it (visualize, deconv)."""
from __future__ import annotations

import os

import jax.numpy as jnp

from common import checkpoint as ckpt
from common.errors import CheckpointError, DataError, UserError
from lenet.config import LeNetConfig

# Where `--task visualize` and `--task deconv` look for the LeNet5 that `--task lenet` trained by default.
DEFAULT_CHECKPOINT = os.path.join("results", "lenet")


def load_lenet(path: str, make_hint: str) -> tuple[LeNetConfig, dict, dict]:
    """(config, variables, run_info) of a LeNet5 checkpoint; every way it can be unusable is one
    CheckpointError whose message ends with `make_hint` (how to make a good one)."""
    run_info, variables = ckpt.load_checkpoint(path, make_hint)
    where = ckpt.resolve_checkpoint_dir(path)
    if run_info.get("task") != "lenet" or not isinstance(run_info.get("config"), dict):
        raise CheckpointError(f"{where!r} is not a LeNet5 checkpoint (task {run_info.get('task')!r}); make one "
                              f"with `{make_hint}`")
    try:
        config = LeNetConfig.from_dict(run_info["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the config in {where!r} does not describe a LeNet5: {e}") from None
    params = variables["params"]
    convs = [n for n in params if n.startswith("conv")] if isinstance(params, dict) else []
    if not convs or any(not isinstance(params[n], dict) or {"kernel", "bias"} - set(params[n]) for n in convs):
        found = sorted(params)[:6] if isinstance(params, dict) else type(params).__name__
        raise CheckpointError(f"{where!r} holds no LeNet5 conv layers (found {found})")
    if config.use_batchnorm and "batch_stats" not in variables:
        raise CheckpointError(f"{where!r} says it uses batch norm but holds no batch-norm statistics")
    return config, variables, run_info


def with_data_overrides(config: LeNetConfig, data_dir: str | None = None, tfds_data_dir: str | None = None,
                        image_mode: str | None = None) -> LeNetConfig:
    """The checkpoint's data settings, except where --data-dir / --tfds-data-dir point elsewhere."""
    if image_mode is not None and image_mode != config.data.image_mode:
        raise UserError(f"the checkpoint was trained on {config.data.image_mode} images; --image-mode {image_mode} "
                        "cannot be used with it (leave the flag out)")
    changes = {}
    if data_dir:
        changes["data_dir"] = data_dir
    if tfds_data_dir:
        changes["tfds_data_dir"] = tfds_data_dir
        if not data_dir:
            changes["data_dir"] = None  # an explicit TFDS location replaces the recorded image folder
    config = config.replace(**changes)
    if config.data.data_dir and not os.path.isdir(config.data.data_dir):
        raise DataError(f"the checkpoint's data folder {config.data.data_dir!r} (recorded relative to where it "
                        "was trained) does not exist here; point --data-dir at the same data")
    return config


def check_fits(model, variables: dict, dataset, source: str) -> None:
    """Runs the model once on one test image, so a model/data mismatch is one clear message."""
    try:
        model.apply(variables, jnp.asarray(dataset.test.images[:1]), train=False)
    except Exception as e:  # flax raises several shape/scope errors; all mean the same here
        raise CheckpointError(f"the checkpoint {source!r} does not fit the data (images {dataset.image_shape}): "
                              f"{e.__class__.__name__}: {str(e)[:160]}") from None
