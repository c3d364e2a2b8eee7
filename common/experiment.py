"""The experiment runner shared by LeNet5 and the recurrent nets: train, evaluate, resume, write results.

`fit_classifier` owns what every classification experiment writes into its output folder:
  history.csv      one row per epoch (and per seed when several models train at once)
  metrics.json     final train/val/test loss and accuracy as top-level keys, timings, config, versions
  <figure>.png     accuracy and loss against epoch
  checkpoint/      final parameters + batch statistics and the config that rebuilds model and data
The folder appears only when the run completes (see common.outputs.RunDir); a killed run restarted with the
same --out resumes from its last complete epoch and ends with the same numbers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from common import checkpoint as ckpt
from common import data as data_lib
from common import outputs, plotting
from common import training as tr
from common.errors import UserError
from flax import serialization

RESUME_STATE = "resume_state.msgpack"
RESUME_INFO = "resume.json"


@dataclasses.dataclass
class FitResult:
    state: Any  # final TrainState (stacked over models when several train together)
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    out_dir: str


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One of the models trained together: its seed (init, dropout, batch order) and learning rate."""

    seed: int
    lr: float


def model_grid(config) -> list[ModelSpec]:
    """Every (learning rate, seed) pair of `config`: `lr` may be a tuple, `seeds` counts up from `seed`."""
    lrs = config.lr if isinstance(config.lr, (tuple, list)) else (config.lr,)
    return [ModelSpec(config.seed + i, float(lr)) for lr in lrs for i in range(getattr(config, "seeds", 1))]


def make_optimizer(lr: float) -> optax.GradientTransformation:
    # The learning rate lives in the optimizer state, so that models with different rates can share one
    # vmapped program; with a single rate the update is exactly optax.nadam(lr)'s.
    return optax.inject_hyperparams(optax.nadam)(learning_rate=lr)


def init_states(model, input_shape, specs: list[ModelSpec]):
    """One TrainState (or a stack of them, one per model) and the per-model step keys."""
    keys = [jax.random.split(jax.random.PRNGKey(s.seed)) for s in specs]
    init_keys, step_keys = np.stack([k[0] for k in keys]), np.stack([k[1] for k in keys])
    tx = make_optimizer(specs[0].lr)
    if len(specs) == 1:
        return tr.create_train_state(model, tx, input_shape, init_keys[0]), step_keys[0]
    state = jax.vmap(lambda k: tr.create_train_state(model, tx, input_shape, k))(init_keys)
    lrs = np.asarray([s.lr for s in specs], np.float32)
    opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": lrs})
    return state.replace(opt_state=opt_state), step_keys


def compile_steps(train_step, n_models: int, mesh: Mesh | None = None):
    """Jits the steps once; vmaps them over a leading model axis when several models train together.

    With a mesh, each batch is split over its 'data' axis and the state is replicated: XLA inserts the
    gradient all-reduce (and the cross-device batch-norm statistics), so the numbers are those of one device.
    """
    eval_fn = tr.eval_step
    if n_models > 1:
        train_step = jax.vmap(train_step, in_axes=(0, 0, 0))
        eval_fn = jax.vmap(eval_fn, in_axes=(0, None))
    if mesh is None:
        return jax.jit(train_step, donate_argnums=0), jax.jit(eval_fn)
    replicated = NamedSharding(mesh, P())
    train_batch = NamedSharding(mesh, P("data") if n_models == 1 else P(None, "data"))
    eval_batch = NamedSharding(mesh, P("data"))
    train = jax.jit(train_step, in_shardings=(replicated, train_batch, replicated),
                    out_shardings=(replicated, replicated), donate_argnums=0)
    evaluate = jax.jit(eval_fn, in_shardings=(replicated, eval_batch), out_shardings=replicated)
    # Every host holds the whole (small) dataset, so each builds the global batch from the shards it owns;
    # this is the same code on one host with 8 GPUs and on a multi-host TPU slice.
    return (lambda state, batch, rng: train(state, shard_batch(batch, train_batch), rng),
            lambda state, batch: evaluate(state, shard_batch(batch, eval_batch)))


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]) for k, v in batch.items()}


def replicate(tree, mesh: Mesh | None):
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P()))


def data_mesh(batch_size: int) -> Mesh | None:
    """A 1-D 'data' mesh over every device (all hosts), or None on a single device."""
    n = jax.device_count()
    if n == 1:
        return None
    if batch_size % n:
        raise UserError(f"the batch size {batch_size} is not divisible by the {n} devices; choose a multiple "
                        f"of {n} (e.g. --batch-size {n * max(1, round(batch_size / n))})")
    return Mesh(np.asarray(jax.devices()), ("data",))


def eval_batch_for(size: int) -> int:
    """Rounds the evaluation batch up to a multiple of the device count (padding is masked, so free)."""
    n = jax.device_count()
    return -(-size // n) * n


def fit_classifier(
    *,
    model,
    penalty_fn: Callable | None,
    dataset: data_lib.Dataset,
    config,
    out: str,
    task: str,
    title: str,
    figure_name: str,
    on_epoch: Callable[[str, int, Any], None] | None = None,
    progress: bool = True,
    extra_metrics: dict[str, Any] | None = None,
) -> FitResult:
    """Trains `model` with Nadam on `dataset` and writes the results into `out`.

    `config` needs epochs, batch_size, eval_batch_size, lr (a float, or a tuple of them for a vmapped
    learning-rate sweep), seed (and optionally seeds) and to_dict().
    `on_epoch(workdir, epoch, state)` runs after each epoch (and once with epoch 0 before training).
    """
    specs = model_grid(config)
    run = outputs.RunDir(out)
    workdir = run.open()
    state, step_keys = init_states(model, (1,) + dataset.image_shape, specs)
    mesh = data_mesh(config.batch_size)
    train_fn, eval_fn = compile_steps(tr.make_train_step(penalty_fn), len(specs), mesh)

    run_info = {"task": task, "config": config.to_dict(), "data_source": dataset.source,
                "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape)}
    state, history, wall_before = _maybe_resume(run, state, run_info)
    state = replicate(state, mesh)
    start_epoch = len(history)
    if start_epoch:
        tqdm.write(f"resuming {task} from epoch {start_epoch} in {run.work}", file=sys.stderr)
    elif on_epoch is not None:
        on_epoch(workdir, 0, state)

    t0 = time.perf_counter()
    for result in tr.train_epochs(state, train_fn, eval_fn, dataset, epochs=config.epochs,
                                  batch_size=config.batch_size, eval_batch_size=eval_batch_for(config.eval_batch_size),
                                  seeds=[m.seed for m in specs], rngs=step_keys, start_epoch=start_epoch, desc=title,
                                  progress=progress):
        state = result.state
        history.append(result.row)
        if on_epoch is not None:
            on_epoch(workdir, result.epoch, state)
        _save_resume(run, state, history, run_info, wall_before + time.perf_counter() - t0)
        tqdm.write(_epoch_line(result.row, config.epochs), file=sys.stderr)
    wall = wall_before + time.perf_counter() - t0

    metrics = _final_metrics(history, specs, wall, dataset, state, run_info)
    metrics.update(extra_metrics or {})
    _write_results(run, history, metrics, state, specs, run_info, title, figure_name)
    final = run.commit()
    return FitResult(state=state, history=history, metrics=metrics, out_dir=final)


# -------------------------------------------------------------------------------------------- resuming


def _maybe_resume(run: outputs.RunDir, state, run_info):
    info_path, state_path = run.path(RESUME_INFO), run.path(RESUME_STATE)
    if not (os.path.isfile(info_path) and os.path.isfile(state_path)):
        return state, [], 0.0
    try:
        with open(info_path) as f:
            info = json.load(f)
        if info.get("run_info") != json.loads(json.dumps(run_info, default=ckpt._jsonable)):
            tqdm.write(f"ignoring the unfinished run in {run.work}: it had another configuration", file=sys.stderr)
            return state, [], 0.0
        restored = serialization.from_state_dict(state, ckpt.load_tree(state_path))
        return restored, info["history"], float(info.get("wall_seconds", 0.0))
    except Exception as e:  # a resume file from a crash mid-write or another version: start over
        tqdm.write(f"cannot resume from {run.work} ({e.__class__.__name__}); starting over", file=sys.stderr)
        return state, [], 0.0


def _save_resume(run: outputs.RunDir, state, history, run_info, wall_seconds: float) -> None:
    # State first, then the JSON that names its epoch: a kill between the two only loses that epoch.
    ckpt.save_tree(run.path(RESUME_STATE), state)
    ckpt.atomic_write_json(run.path(RESUME_INFO), {"run_info": run_info, "history": history,
                                                   "wall_seconds": wall_seconds})


# --------------------------------------------------------------------------------------------- results


def _epoch_line(row: dict, epochs: int) -> str:
    def fmt(v):
        return "-" if v is None else (f"{np.mean(v):.4f}" if isinstance(v, list) else f"{v:.4f}")

    return (f"epoch {row['epoch']:>3}/{epochs}  train acc {fmt(row['train_accuracy'])} loss {fmt(row['train_loss'])}"
            f" | val acc {fmt(row['val_accuracy'])} loss {fmt(row['val_loss'])}"
            f" | test acc {fmt(row['test_accuracy'])} loss {fmt(row['test_loss'])}"
            f" | {row['epoch_seconds']:.1f}s, {row['train_images_per_sec']:.0f} img/s")


def per_model_rows(history: list[dict], specs: list[ModelSpec]) -> list[dict]:
    """Expands rows whose metrics are per-model lists into one row per (epoch, model)."""
    if len(specs) == 1:
        return history
    rows = []
    for row in history:
        for i, spec in enumerate(specs):
            rows.append({"seed": spec.seed, "lr": spec.lr,
                         **{k: (v[i] if isinstance(v, list) else v) for k, v in row.items()}})
    return rows


def mean_rows(history: list[dict]) -> list[dict]:
    return [{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in row.items()} for row in history]


def _final_metrics(history, specs, wall, dataset, state, run_info) -> dict[str, Any]:
    last = history[-1]
    params = state.params if len(specs) == 1 else jax.tree_util.tree_map(lambda x: x[0], state.params)
    metrics: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        for m in ("accuracy", "loss"):
            v = last[f"{split}_{m}"]
            metrics[f"{split}_{m}"] = None if v is None else float(np.mean(v))
            if len(specs) > 1 and v is not None:
                metrics[f"{split}_{m}_std"] = float(np.std(v))
                metrics[f"{split}_{m}_per_model"] = v
    val = [np.mean(r["val_accuracy"]) if r["val_accuracy"] is not None else -1 for r in history]
    steady = [r["train_images_per_sec"] for r in history[1:]] or [history[0]["train_images_per_sec"]]
    metrics.update({
        "best_val_accuracy": float(max(val)), "best_val_epoch": int(np.argmax(val)) + 1,
        "epochs": len(history), "seeds": sorted({m.seed for m in specs}),
        "models": [dataclasses.asdict(m) for m in specs],
        "wall_seconds": wall,
        "seconds_per_epoch": float(np.median([r["epoch_seconds"] for r in history])),
        "train_images_per_sec": float(np.median(steady)),
        "param_count": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        "train_size": len(dataset.train), "val_size": len(dataset.val), "test_size": len(dataset.test),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": outputs.environment_info(),
        **run_info,
    })
    return metrics


def _write_results(run, history, metrics, state, specs, run_info, title, figure_name) -> None:
    n_models = len(specs)
    outputs.write_csv(run.path("history.csv"), per_model_rows(history, specs))
    outputs.write_json(run.path("metrics.json"), metrics)
    suffix = "" if n_models == 1 else f" (mean of {n_models} models)"
    plotting.plot_history(mean_rows(history), run.path(figure_name), title + suffix)
    first = state if n_models == 1 else jax.tree_util.tree_map(lambda x: x[0], state)
    ckpt.save_checkpoint(run.path(ckpt.CHECKPOINT_DIR), tr.model_variables(first),
                         {**run_info, "seed": specs[0].seed, "lr": specs[0].lr})
    if n_models > 1:
        ckpt.save_tree(run.path(ckpt.CHECKPOINT_DIR, "all_models.msgpack"), tr.model_variables(state))
    for name in (RESUME_STATE, RESUME_INFO):
        if os.path.exists(run.path(name)):
            os.remove(run.path(name))
