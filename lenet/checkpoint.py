"""Reading a `--task lenet` checkpoint back, for the tasks that build on it (visualize, deconv)."""
from __future__ import annotations

import dataclasses
import os
import types
import typing

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from common import data as data_lib
from common.core.errors import CheckpointError, DataError, UserError
from common.runtime import checkpoint as ckpt
from lenet.config import LeNetConfig
from lenet.model import create_model

# Where `--task visualize` and `--task deconv` look for the LeNet5 that `--task lenet` trained by default.
DEFAULT_CHECKPOINT = os.path.join("results", "lenet")
IMAGE_SHAPES = {"gray28": (28, 28, 1), "rgb32": (32, 32, 3)}  # for checkpoints whose run.json has no image_shape


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
    problem = config_problem(config) or run_info_problem(run_info)
    if problem:
        raise CheckpointError(f"the run.json in {where!r} is damaged: {problem}; make a new checkpoint with "
                              f"`{make_hint}`")
    try:
        mismatch = variables_mismatch(config, run_info, variables)
    except Exception as e:  # values of the right types that still build no model (features [-1]): flax's errors
        raise CheckpointError(f"the config in {where!r} does not describe a LeNet5 ({e.__class__.__name__}: "
                              f"{str(e)[:120]}); make a new checkpoint with `{make_hint}`") from None
    if mismatch:
        bn = "with" if config.use_batchnorm else "without"
        raise CheckpointError(f"the variables in {where!r} do not match the LeNet5 its run.json describes ({bn} "
                              f"batch norm): {mismatch}; make a new one with `{make_hint}`")
    return config, variables, run_info


def run_info_problem(run_info: dict) -> str | None:
    """What is wrong with run.json's `class_names` and `image_shape` (absent is fine: older checkpoints), or
    None; a hand-edited or damaged value would otherwise fail deep inside model building."""
    names, shape = run_info.get("class_names"), run_info.get("image_shape")
    if names is not None and not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
        return f"class_names must be a list of names, it is {str(names)[:60]}"
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3 and all(
            _fits(d, int) and d >= 1 for d in shape) and shape[2] in (1, 3)):
        return f"image_shape must be [height, width, 1 or 3], it is {str(shape)[:60]}"
    return None


def config_problem(config) -> str | None:
    """The first field of a config read from run.json whose value is not of the field's type (features
    'abc', hidden [1]), or None; nested configs (data, train) are entered."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            problem = config_problem(value)
        else:
            problem = None if _fits(value, hints[f.name]) else f"{f.name} is {str(value)[:60]}"
        if problem:
            return problem
    return None


def _fits(value, hint) -> bool:
    """Whether a value read from JSON fits a type hint (an int fits float; a bool is no int; tuples itemwise)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, args[0]) for v in value)
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def variables_mismatch(config: LeNetConfig, run_info: dict, variables: dict) -> str | None:
    """How `variables` differ from those of the model `config` builds (tree structure and shapes, found with
    jax.eval_shape of model.init, so nothing is computed), or None when they match."""
    shape = tuple(run_info.get("image_shape") or IMAGE_SHAPES.get(config.data.image_mode, (28, 28, 1)))
    model = create_model(config, len(run_info.get("class_names") or range(10)))
    key = jax.random.PRNGKey(0)
    expected = jax.eval_shape(lambda: model.init({"params": key, "dropout": key}, jnp.zeros((1,) + shape),
                                                 train=False))
    want = {k: v.shape for k, v in traverse_util.flatten_dict(dict(expected), sep="/").items()}
    try:
        got = {k: np.shape(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
    except (TypeError, AttributeError):  # not a nested dict
        return f"they are not a tree of arrays ({type(variables).__name__})"
    for name in sorted(want):
        if name not in got:
            return f"{name} is missing"
        if tuple(got[name]) != tuple(want[name]):
            return f"{name} has shape {tuple(got[name])}, the model needs {tuple(want[name])}"
    extra = sorted(set(got) - set(want))
    return f"{extra[0]} is not in the model" if extra else None


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
    if config.data.data_dir and not os.path.exists(config.data.data_dir):  # a folder or a dataset file
        raise DataError(f"the checkpoint's data folder {config.data.data_dir!r} (recorded relative to where it "
                        "was trained) does not exist here; point --data-dir at the same data")
    return config


def check_fits(model, variables: dict, dataset, source: str) -> None:
    """Runs the model once on one test image, so a model/data mismatch is one clear message."""
    try:
        model.apply(variables, jnp.asarray(data_lib.to_float(dataset.test.images[:1])), train=False)
    except Exception as e:  # flax raises several shape/scope errors; all mean the same here
        raise CheckpointError(f"the checkpoint {source!r} does not fit the data (images {dataset.image_shape}): "
                              f"{e.__class__.__name__}: {str(e)[:160]}") from None
