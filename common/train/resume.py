"""Resuming a killed run: the state, the best epoch and the history committed as one file.

`<out>.partial/resume_state.msgpack` holds {'state', 'best', 'meta'}; 'meta' (JSON) carries the history,
the run's description (task, config, data fingerprint, ...) and the wall time so far, so a kill between two
writes can never pair a state with another epoch's history. `resume.json` beside it repeats the meta for
people and tools to read; resuming never trusts it. An unfinished run of other flags or other data is
renamed aside (`<out>.partial.other-<time>`), never overwritten; stray temporary files are removed.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time

from flax import serialization
from tqdm.auto import tqdm

from common import checkpoint as ckpt
from common import outputs
from common.train import step as step_lib
from common.train.loop import BestEpoch
from common.train.state import model_variables

RESUME_STATE = "resume_state.msgpack"
RESUME_INFO = "resume.json"


def load(run: outputs.RunDir, state, best: BestEpoch, run_info: dict, mesh):
    """(state on the host, history, wall seconds so far) from `run`'s unfinished run of the same `run_info`;
    (state, [], 0.0) when there is none, or it cannot be used (then it is set aside or ignored, with a note)."""
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
        tqdm.write(f"cannot resume from {run.work} ({e.__class__.__name__}); starting over", file=sys.stderr)
        return state, [], 0.0
    mine = json.loads(json.dumps(run_info, default=outputs.jsonable))
    if meta.get("run_info") != mine:
        same_flags = _without(meta.get("run_info"), "data_fingerprint") == _without(mine, "data_fingerprint")
        what = "other data" if same_flags else "other flags"
        _set_aside(run, what)
        return state, [], 0.0
    template = {"state": state, "best": {**best.state_dict(), "variables": model_variables(state)}}
    restored = serialization.from_state_dict(template, {k: saved[k] for k in ("state", "best")})
    best.load_state_dict(restored["best"], mesh)
    return restored["state"], meta["history"], float(meta["wall_seconds"])


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
    aside = outputs.unused_name(f"{run.shared}.other-{time.strftime('%Y%m%d-%H%M%S')}")
    if run.writer:
        os.replace(run.shared, aside)
        run.open()  # a new working folder, with the marker that makes it ours
    tqdm.write(f"an unfinished run of {what} was in {run.shared}: moved aside to {aside}; starting over",
               file=sys.stderr)
