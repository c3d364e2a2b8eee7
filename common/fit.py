"""The training loop shared by every classification experiment: epochs, evaluation, best epoch, resume, results.

`fit` owns what a run writes into its output folder:
  history.csv      one row per epoch (and per model when several train together)
  metrics.json     train/val/test loss and accuracy of the selected epoch (the best validation accuracy, as
                   Keras's ModelCheckpoint(save_best_only=True) keeps) as top-level keys, the last epoch's
                   under 'last_epoch', timings, the flat config, the command, versions, and 'diverged'
                   (the loss exploded but stayed finite; see `_divergence`; a warning is printed too)
  <figure>.png     accuracy and loss against epoch
  checkpoint/      the selected epoch's parameters + batch statistics and the config that rebuilds model and data
The folder appears only when the run completes (see `common.outputs.RunDir`); a killed run restarted with
the same output folder resumes from its last complete epoch and ends with the same numbers. Ctrl-C is
honoured between training calls (`common.interrupt`): the run stops there and commits nothing.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from tqdm.auto import tqdm

from common import checkpoint as ckpt
from common import data as data_lib
from common import interrupt, outputs, parallel, plotting
from common import training as tr
from common.config import TrainConfig
from common.errors import TrainingDiverged
from common.history import mean_rows, model_histories, per_model_rows, row_value, split_metrics

RESUME_STATE = "resume_state.msgpack"
RESUME_INFO = "resume.json"
HISTORY_CSV = "history.csv"
METRICS_JSON = outputs.METRICS_JSON


@dataclasses.dataclass
class FitResult:
    state: Any  # last epoch's TrainState (stacked over models when several train together)
    variables: Any  # {'params', 'batch_stats'} of the selected (best validation) epoch, as checkpointed
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    out_dir: str


class BestEpoch:
    """The variables of the epoch with the best validation accuracy, per model: the reported model is chosen
    on validation data, never on test. Without a validation split the last epoch is kept."""

    def __init__(self, n_models: int):
        self.val = np.full(n_models, -np.inf)
        self.epoch = np.zeros(n_models, np.int64)
        self.variables = None

    def update(self, epoch: int, val_accuracy, state) -> None:
        n = len(self.val)
        if val_accuracy is None:  # no validation split: the latest epoch wins
            val = np.full(n, float(epoch))
        else:
            val = np.broadcast_to(np.asarray(val_accuracy, float), (n,))
        improved = val > self.val
        if not improved.any():
            return
        current = tr.model_variables(state)
        if self.variables is None or improved.all():
            # A copy: the next train step donates (and so invalidates) the state's buffers.
            self.variables = jax.tree_util.tree_map(jnp.copy, current)
        else:
            self.variables = jax.tree_util.tree_map(
                lambda best, new: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, best),
                self.variables, current)
        self.val = np.where(improved, val, self.val)
        self.epoch = np.where(improved, epoch, self.epoch)

    def state_dict(self) -> dict:
        return {"val": self.val, "epoch": self.epoch, "variables": self.variables}

    def load_state_dict(self, d: dict) -> None:
        self.val, self.epoch = np.asarray(d["val"], float), np.asarray(d["epoch"], np.int64)
        self.variables = d["variables"]


def fit(model, dataset: data_lib.Dataset, train: TrainConfig, out: str, *, task: str, config: dict,
        title: str, figure_name: str, penalty_fn: Callable | None = None,
        penalties: dict[str, tuple[float, ...]] | None = None,
        on_epoch: Callable[[str, int, Any], None] | None = None, progress: bool = True,
        command: str | None = None) -> FitResult:
    """Trains `model` with Nadam on `dataset` as `train` says and writes the results into `out`.

    `config` is the experiment's flat config (recorded, and compared on resume). `penalty_fn(params,
    **weights)` is added to the loss; `penalties` {name: values} lists weights swept as a model axis.
    `on_epoch(workdir, epoch, state)` runs after each epoch (and with epoch 0 before training).
    """
    specs = parallel.model_grid(train, penalties)
    if len(dataset.train) < train.batch_size:  # before any folder is made or model compiled
        raise data_lib.DataError(f"the training split has {len(dataset.train)} examples, fewer than the batch "
                                 f"size {train.batch_size}; lower --batch-size")
    environment = outputs.environment_info()  # at the start: the load average before this run adds to it
    run = outputs.RunDir(out, task=task, config=config)
    try:
        history, metrics, best, state = _train(run, model, dataset, train, specs, task, config, title,
                                               penalty_fn, on_epoch, progress)
        run_info = metrics.pop("run_info")
        metrics.update(command=command, environment=environment, **run_info)
        _warn_if_diverged(metrics, history)
        _write_results(run, history, metrics, best.variables, specs, run_info, title, figure_name)
        return FitResult(state=state, variables=best.variables, history=history, metrics=metrics,
                         out_dir=run.commit())
    finally:
        run.release()


def _train(run: outputs.RunDir, model, dataset, train: TrainConfig, specs, task, config, title, penalty_fn,
           on_epoch, progress):
    """The epochs (resumed from `run`'s working folder when it holds an unfinished run of the same config);
    returns (history, final metrics + 'run_info', best epoch, last state). Ctrl-C is honoured between calls."""
    workdir = run.open()
    interrupt.check()
    state, rngs = parallel.init_states(model, (1,) + dataset.image_shape, specs)
    mesh = parallel.data_mesh(train.batch_size)
    steps = parallel.compile_steps(tr.make_train_step(penalty_fn), len(specs), mesh,
                                   steps_per_call=train.steps_per_call)
    run_info = {"task": task, "config": config, "data_source": dataset.source,
                "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape)}
    best = BestEpoch(len(specs))
    state, history, wall_before = _maybe_resume(run, state, best, run_info)
    state, rngs = parallel.replicate((state, rngs), mesh)
    if history:
        tqdm.write(f"resuming {task} from epoch {len(history)} in {run.work}", file=sys.stderr)
    elif on_epoch is not None:
        on_epoch(workdir, 0, state)

    t0 = time.perf_counter()
    for epoch in range(len(history) + 1, train.epochs + 1):
        interrupt.check()
        state, row = _run_epoch(steps, state, rngs, dataset, train, [s.seed for s in specs], epoch,
                                f"{title} epoch {epoch}/{train.epochs}", progress)
        history.append(row)
        best.update(epoch, row["val_accuracy"], state)
        if on_epoch is not None:
            on_epoch(workdir, epoch, state)
        _save_resume(run, state, best, history, run_info, wall_before + time.perf_counter() - t0)
        tqdm.write(_epoch_line(row, train.epochs), file=sys.stderr)
    interrupt.check()
    metrics = _final_metrics(history, specs, best, wall_before + time.perf_counter() - t0, dataset, state)
    metrics.update(run_info=run_info, **_divergence(history, len(dataset.class_names)))
    return history, metrics, best, state


# ------------------------------------------------------------------------------------------- one epoch


def _run_epoch(steps: parallel.Steps, state, rngs, dataset, train: TrainConfig, seeds: Sequence[int],
               epoch: int, desc: str, progress: bool):
    """Trains on one permutation seeded by (seed, epoch) per model, then evaluates the train (eval mode),
    validation and test splits. Returns the state and the epoch's history row (per-model lists when several
    models train together: model i follows exactly the run it would have alone with seed `seeds[i]`)."""
    t0 = time.perf_counter()
    n_batches = data_lib.num_train_batches(len(dataset.train), train.batch_size)
    calls = _calls(dataset.train, train.batch_size, seeds, epoch, train.steps_per_call)
    bar = tqdm(total=n_batches, desc=desc, disable=not progress, leave=False, unit="batch", dynamic_ncols=True)
    totals, done, shown = None, 0, t0
    for batches in calls:
        interrupt.check()
        if totals is None:
            totals = steps.zeros(state, batches, rngs)
        state, totals = steps.train(state, batches, rngs, totals)
        done += len(batches["label"])
        bar.update(len(batches["label"]))
        if progress and (time.perf_counter() - shown > 0.5 or done == n_batches):
            shown = time.perf_counter()  # reading the loss syncs with the device: twice a second at most
            loss = np.mean(np.asarray(totals["loss_sum"]) / np.asarray(totals["count"]))
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{done * train.batch_size / (shown - t0):.0f}")
    bar.close()
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - t0
    running = tr.summarize(totals)
    if not np.all(np.isfinite(running["loss"])):
        raise TrainingDiverged(f"the training loss became {running['loss']} in epoch {epoch}; stopping "
                               "(lower --lr?). Earlier results and the last good epoch's checkpoint are kept.")
    row = {"epoch": epoch, "train_running_loss": running["loss"], "train_running_accuracy": running["accuracy"],
           "l2_penalty": running["penalty"]}
    eval_batch = parallel.eval_batch_for(train.eval_batch_size)
    for name, split in (("train", dataset.train), ("val", dataset.val), ("test", dataset.test)):
        result = evaluate(steps.evaluate, state, split, eval_batch)
        row[f"{name}_loss"] = None if result is None else result["loss"]
        row[f"{name}_accuracy"] = None if result is None else result["accuracy"]
    row["train_seconds"] = train_seconds
    row["epoch_seconds"] = time.perf_counter() - t0
    row["train_images_per_sec"] = n_batches * train.batch_size * len(seeds) / train_seconds
    return state, row


def _calls(split: data_lib.Split, batch_size: int, seeds: Sequence[int], epoch: int, k: int) -> Iterator[dict]:
    """The epoch's batches, grouped k per call: [k, (models,) batch, ...] (the last call may hold fewer)."""
    streams = [data_lib.train_batches(split, batch_size, s, epoch) for s in seeds]
    per_step = (b[0] for b in zip(*streams)) if len(seeds) == 1 else map(parallel.stack_batches, zip(*streams))
    while group := list(itertools.islice(per_step, k)):
        yield parallel.stack_batches(group)


def evaluate(eval_fn, state, split: data_lib.Split, batch_size: int) -> dict[str, Any] | None:
    """Mean loss and accuracy over every example of `split` (None for an empty split)."""
    if len(split) == 0:
        return None
    total = None
    for batch in data_lib.eval_batches(split, batch_size):
        interrupt.check()
        metrics = eval_fn(state, batch)
        total = metrics if total is None else jax.tree_util.tree_map(jnp.add, total, metrics)
    return tr.summarize(total)


# -------------------------------------------------------------------------------------------- resuming


def _maybe_resume(run: outputs.RunDir, state, best: BestEpoch, run_info):
    info_path, state_path = run.shared_path(RESUME_INFO), run.shared_path(RESUME_STATE)
    if not (os.path.isfile(info_path) and os.path.isfile(state_path)):
        return state, [], 0.0
    try:
        with open(info_path) as f:
            info = json.load(f)
        if info.get("run_info") != json.loads(json.dumps(run_info, default=outputs.jsonable)):
            tqdm.write(f"ignoring the unfinished run in {run.work}: it had another configuration", file=sys.stderr)
            return state, [], 0.0
        template = {"state": state, "best": {**best.state_dict(), "variables": tr.model_variables(state)}}
        restored = serialization.from_state_dict(template, ckpt.load_tree(state_path))
        best.load_state_dict(restored["best"])
        return restored["state"], info["history"], float(info.get("wall_seconds", 0.0))
    except Exception as e:  # a resume file from a crash mid-write or another version: start over
        tqdm.write(f"cannot resume from {run.work} ({e.__class__.__name__}); starting over", file=sys.stderr)
        return state, [], 0.0


def _save_resume(run: outputs.RunDir, state, best: BestEpoch, history, run_info, wall_seconds: float) -> None:
    # State first, then the JSON that names its epoch: a kill between the two only loses that epoch.
    ckpt.save_tree(run.path(RESUME_STATE), {"state": state, "best": best.state_dict()})
    outputs.atomic_write_json(run.path(RESUME_INFO), {"run_info": run_info, "history": history,
                                               "wall_seconds": wall_seconds})


# --------------------------------------------------------------------------------------------- results


def _epoch_line(row: dict, epochs: int) -> str:
    def fmt(v):
        return "-" if v is None else (f"{np.mean(v):.4f}" if isinstance(v, list) else f"{v:.4f}")

    return (f"epoch {row['epoch']:>3}/{epochs}  train acc {fmt(row['train_accuracy'])} loss {fmt(row['train_loss'])}"
            f" | val acc {fmt(row['val_accuracy'])} loss {fmt(row['val_loss'])}"
            f" | test acc {fmt(row['test_accuracy'])} loss {fmt(row['test_loss'])}"
            f" | {row['epoch_seconds']:.1f}s, {row['train_images_per_sec']:.0f} img/s")


def _final_metrics(history, specs, best: BestEpoch, wall, dataset, state) -> dict[str, Any]:
    keys = [f"{split}_{m}" for split in ("train", "val", "test") for m in ("accuracy", "loss")]
    keys += ["train_running_accuracy", "train_running_loss"]  # Keras's: running means with dropout on
    selected = [{k: row_value(history[int(best.epoch[i]) - 1], k, i) for k in keys} for i in range(len(specs))]
    last = [{k: row_value(history[-1], k, i) for k in keys} for i in range(len(specs))]
    params = state.params if len(specs) == 1 else parallel.model_slice(state.params, 0)
    steady = history[1:] or history[:1]  # after the first epoch (which compiles) when there is one
    return {
        **split_metrics(selected),
        "selected_epoch": int(best.epoch[0]) if len(specs) == 1 else best.epoch.tolist(),
        "selection": "best validation accuracy" if dataset.val.labels.size else "last epoch (no validation split)",
        "last_epoch": split_metrics(last),
        "epochs": len(history), "seeds": sorted({m.seed for m in specs}),
        "models": [dataclasses.asdict(m) for m in specs],
        "wall_seconds": wall,
        "seconds_per_epoch": float(np.median([r["epoch_seconds"] for r in history])),  # with evaluation
        "train_seconds_per_epoch": float(np.median([r["train_seconds"] for r in steady])),  # no evaluation
        "train_images_per_sec": float(np.median([r["train_images_per_sec"] for r in steady])),
        "param_count": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        "train_size": len(dataset.train), "val_size": len(dataset.val), "test_size": len(dataset.test),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


DIVERGENCE_GROWTH = 10.0  # last epoch's running loss over the first epoch's
DIVERGENCE_PER_LN_CLASS = 1e3  # or above this many times a uniform guess's loss, ln(classes)


def _divergence(history: list[dict], n_classes: int) -> dict[str, Any]:
    """{'diverged': bool, ...}: the training exploded without becoming NaN (a too-large --lr). The rule: the
    last epoch's running training loss is over 10x the first epoch's, or over 1000 ln(classes), for any model.
    """
    first = np.asarray(history[0]["train_running_loss"], float)
    last = np.asarray(history[-1]["train_running_loss"], float)
    bad = (last > DIVERGENCE_GROWTH * first) | (last > DIVERGENCE_PER_LN_CLASS * np.log(max(n_classes, 2)))
    out: dict[str, Any] = {"diverged": bool(bad.any())}
    if bad.ndim and bad.size > 1:
        out["diverged_per_model"] = bad.tolist()
    return out


def _warn_if_diverged(metrics: dict, history: list[dict]) -> None:
    if metrics["diverged"]:
        first, last = np.max(history[0]["train_running_loss"]), np.max(history[-1]["train_running_loss"])
        tqdm.write(f"warning: training diverged: the training loss ended at {last:.3g} (epoch 1: {first:.3g}; "
                   f"the limit is 10x epoch 1's or 1000 ln(classes)). The results are kept, marked \"diverged\": "
                   f"true in {METRICS_JSON}, but mean nothing: lower --lr", file=sys.stderr)


def _write_results(run, history, metrics, variables, specs, run_info, title, figure_name) -> None:
    n_models = len(specs)
    outputs.write_csv(run.path(HISTORY_CSV), per_model_rows(history, specs))
    outputs.atomic_write_json(run.path(METRICS_JSON), metrics)
    suffix = "" if n_models == 1 else f" (mean of {n_models} models)"
    selected = metrics["selected_epoch"] if n_models == 1 else None
    plotting.plot_history(mean_rows(history), run.path(figure_name), title + suffix, selected,
                          per_model=model_histories(history) if n_models > 1 else None)
    first = variables if n_models == 1 else parallel.model_slice(variables, 0)
    ckpt.save_checkpoint(run.path(ckpt.CHECKPOINT_DIR), first,
                         {**run_info, "seed": specs[0].seed, "lr": specs[0].lr, "epoch": metrics["selected_epoch"]})
    if n_models > 1:
        ckpt.save_tree(run.path(ckpt.CHECKPOINT_DIR, "all_models.msgpack"), variables)
    for name in (RESUME_STATE, RESUME_INFO):
        if os.path.exists(run.path(name)):
            os.remove(run.path(name))
