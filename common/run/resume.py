"""Resuming a killed run: the state, the best epoch and the history committed as one file.

`<out>.partial/resume_state.msgpack` holds {'state', 'best', 'meta'}; 'meta' (JSON) carries the history,
the run's description (task, config, data fingerprint, ...) and the wall time so far, so a kill between two
writes can never pair a state with another epoch's history. `resume.json` beside it repeats the meta for
people and tools to read; resuming never trusts it. An unfinished run of other flags or other data is
renamed aside (`<out>.partial.other-<time>`; `outputs.set_aside`), never overwritten; stray temporary files
are removed. A file that decodes but does not fit the run (`malformed`) is ignored: the run starts over.
"""
from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
from flax import serialization
from tqdm.auto import tqdm

from common.core import step as step_lib
from common.core.loop import BestEpoch
from common.core.state import model_variables
from common.runtime import checkpoint as ckpt
from common.runtime import outputs

RESUME_STATE = "resume_state.msgpack"
RESUME_INFO = "resume.json"


def load(run: outputs.RunDir, state, best: BestEpoch, run_info: dict, mesh, steps_per_epoch: int | None = None):
    """(state on the host, history, wall seconds so far) from `run`'s unfinished run of the same `run_info`;
    (state, [], 0.0) when there is none, or it cannot be used (then it is set aside or ignored, with a note).

    A file that decodes but does not fit this run (another kernel shape, an entry missing, a history longer
    than the run's epochs or out of step with the state's step count: `malformed`) is ignored with the note
    "cannot resume ...: starting over", so the run ends with the numbers of an uninterrupted one."""
    if run.writer:
        for stray in glob.glob(os.path.join(run.work, "*.tmp-*")):
            os.remove(stray)  # a write cut short by a kill
    path = run.shared_path(RESUME_STATE)
    if not os.path.isfile(path):
        return state, [], 0.0
    try:
        saved = ckpt.load_tree(path)
        meta = json.loads(saved["meta"])
    except Exception as e:  # a file from another version, or damaged: start over
        return _start_over(run, state, e.__class__.__name__)
    if not isinstance(meta, dict):
        return _start_over(run, state, "its meta entry is not a JSON object")
    mine = json.loads(json.dumps(run_info, default=outputs.jsonable))
    if meta.get("run_info") != mine:
        same_flags = _without(meta.get("run_info"), "data_fingerprint") == _without(mine, "data_fingerprint")
        what = "other data" if same_flags else "other flags"
        _set_aside(run, what)
        return state, [], 0.0
    template = {"state": state, "best": {**best.state_dict(), "variables": model_variables(state)}}
    why = malformed(serialization.to_state_dict(template), saved, meta, run_info, steps_per_epoch)
    if why:
        return _start_over(run, state, why)
    restored = serialization.from_state_dict(template, {k: saved[k] for k in ("state", "best")})
    best.load_state_dict(restored["best"], mesh)
    return restored["state"], meta["history"], float(meta["wall_seconds"])


def _start_over(run: outputs.RunDir, state, why: str):
    tqdm.write(f"cannot resume from {run.shared_path(RESUME_STATE)} ({why}): starting over", file=sys.stderr)
    return state, [], 0.0


def malformed(expected: dict, saved: dict, meta: dict, run_info: dict, steps_per_epoch: int | None) -> str | None:
    """Why a decoded resume file cannot be this run's (None: it can): its 'state' and 'best' trees must have
    the keys, shapes and dtypes of this run's fresh ones (`expected`, as a state dict); its history one row
    per epoch 1, 2, ..., no more than the config's epochs; its state's step count that many epochs of
    `steps_per_epoch` steps; its best epochs within the history."""
    for key in ("state", "best"):
        if key not in saved:
            return f"it has no {key!r} entry"
        if why := _tree_mismatch(expected[key], saved[key], key):
            return why
    history = meta.get("history")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "its history is not a list of epochs"
    if [r.get("epoch") for r in history] != list(range(1, len(history) + 1)):
        return "its history's epochs are not 1, 2, ..."
    epochs = (run_info.get("config") or {}).get("epochs")
    if isinstance(epochs, int) and len(history) > epochs:
        return f"its history has {len(history)} epochs, this run {epochs}"
    if not isinstance(meta.get("wall_seconds"), (int, float)):
        return "it has no wall time"
    steps = np.asarray(saved["state"].get("step", -1)).reshape(-1)
    if steps_per_epoch is not None and not (steps == len(history) * steps_per_epoch).all():
        return f"its state has taken {steps.tolist()} steps, not the {len(history)} x {steps_per_epoch} of its history"
    best_epochs = np.asarray(saved["best"]["epoch"]).reshape(-1)
    if history and not ((best_epochs >= 1) & (best_epochs <= len(history))).all():
        return "its best epoch is outside its history"
    return None


def _tree_mismatch(expected, found, where: str) -> str | None:
    """The first place where tree `found` differs from `expected` in keys, shape or dtype (None: nowhere)."""
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            return f"{where} is not a tree"
        if missing := sorted(set(expected) - set(found), key=str):
            return f"{where} has no {missing[0]!r}"
        if extra := sorted(set(found) - set(expected), key=str):
            return f"{where} has an unexpected {extra[0]!r}"
        return next((w for k in expected if (w := _tree_mismatch(expected[k], found[k], f"{where}/{k}"))), None)
    if expected is None or found is None:
        return None if expected is found else f"{where} is {'not ' if expected is None else ''}empty"
    if isinstance(found, (dict, list, str, bytes)):
        return f"{where} is not an array"
    want, got = np.asarray(expected), np.asarray(found)
    if want.shape != got.shape:
        return f"{where} has shape {got.shape}, this run's {want.shape}"
    if want.dtype != got.dtype:
        return f"{where} has dtype {got.dtype}, this run's {want.dtype}"
    return None


def save(run: outputs.RunDir, state, best: BestEpoch, history: list, run_info: dict, wall_seconds: float) -> None:
    """One file with everything a resumed run needs (then the readable resume.json)."""
    meta = json.dumps({"run_info": run_info, "history": history, "wall_seconds": wall_seconds},
                      default=outputs.jsonable)
    tree = {"state": step_lib.to_host(state), "best": best.state_dict(), "meta": meta}
    if run.writer:
        ckpt.save_tree(run.path(RESUME_STATE), tree)
        outputs.atomic_write_text(run.path(RESUME_INFO), meta + "\n")


def remove(run: outputs.RunDir) -> None:
    for name in (RESUME_STATE, RESUME_INFO):
        if os.path.exists(run.path(name)):
            os.remove(run.path(name))


def _without(d, key: str):
    return {k: v for k, v in (d or {}).items() if k != key}


def _set_aside(run: outputs.RunDir, what: str) -> None:
    """Moves the unfinished run out of the way once (`outputs.set_aside`: `<out>.partial.other-<time>`, or for
    a sweep member inside `<sweep out>.partial.other-<time>/`) and opens a fresh working folder."""
    if run.writer:  # process 0 moves it; the others start over with it
        aside = outputs.set_aside(run.shared)
        run.open()  # a new working folder, with the marker that makes it ours
        tqdm.write(f"an unfinished run of {what} was in {run.shared}: moved aside to {aside}; starting over",
                   file=sys.stderr)
