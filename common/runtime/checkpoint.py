"""Checkpoints as flax msgpack (no pickle) plus a JSON description of the run that made them.

Layout of a checkpoint folder:
  variables.msgpack   {'params': ..., 'batch_stats': ...} as nested dicts of arrays
  run.json            {'task': ..., 'config': {...}} -- enough to rebuild the same model and data
Files are written to a temporary name and renamed (common.runtime.outputs), so a crash never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
from flax import serialization

from common.core.errors import CheckpointError
from common.runtime.outputs import atomic_write_bytes, atomic_write_json

VARIABLES = "variables.msgpack"
RUN_INFO = "run.json"
CHECKPOINT_DIR = "checkpoint"


def save_tree(path: str, tree: Any) -> None:
    atomic_write_bytes(path, serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(tree))))


def load_tree(path: str) -> Any:
    with open(path, "rb") as f:
        return serialization.msgpack_restore(f.read())


def save_checkpoint(folder: str, variables: dict, run_info: dict) -> None:
    """Writes `variables` ({'params', 'batch_stats'}) and `run_info` into `folder`."""
    os.makedirs(folder, exist_ok=True)
    save_tree(os.path.join(folder, VARIABLES), variables)
    atomic_write_json(os.path.join(folder, RUN_INFO), run_info)


def resolve_checkpoint_dir(path: str) -> str:
    """Accepts a checkpoint folder or the output folder of the run that wrote one."""
    nested = os.path.join(path, CHECKPOINT_DIR)
    return nested if os.path.isdir(nested) else path


def load_checkpoint(path: str, how_to_make: str = "") -> tuple[dict, dict]:
    """Returns (run_info, variables). Raises CheckpointError with a useful message when it cannot."""
    folder = resolve_checkpoint_dir(path)
    hint = f" Make one with `{how_to_make}`." if how_to_make else ""
    if not os.path.isdir(folder):
        raise CheckpointError(f"no checkpoint at {path!r}.{hint}")
    missing = [f for f in (VARIABLES, RUN_INFO) if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise CheckpointError(f"{folder!r} is not a complete checkpoint (missing {', '.join(missing)}).{hint}")
    try:
        with open(os.path.join(folder, RUN_INFO)) as f:
            run_info = json.load(f)
        variables = load_tree(os.path.join(folder, VARIABLES))
    except Exception as e:  # msgpack, JSON and I/O errors all mean the same thing to the user
        raise CheckpointError(f"checkpoint in {folder!r} is corrupt or unreadable ({e.__class__.__name__}: "
                              f"{str(e)[:120]}).{hint}") from None
    if not isinstance(run_info, dict):
        raise CheckpointError(f"checkpoint in {folder!r} is damaged: its {RUN_INFO} is not a JSON object.{hint}")
    if not isinstance(variables, dict) or "params" not in variables:
        raise CheckpointError(f"checkpoint in {folder!r} has no model parameters.{hint}")
    return run_info, variables
