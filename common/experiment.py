"""The experiment runner shared by LeNet5 and the recurrent nets: train, evaluate, resume, write results.

`fit_classifier` owns what every classification experiment writes into its output folder:
  history.csv      one row per epoch (and per seed when several models train at once)
  metrics.json     train/val/test loss and accuracy of the selected epoch (the best validation accuracy,
                   as Keras's ModelCheckpoint(save_best_only=True) keeps) as top-level keys, the last
                   epoch's under 'last_epoch', timings, config, versions
  <figure>.png     accuracy and loss against epoch
  checkpoint/      the selected epoch's parameters + batch statistics and the config that rebuilds model and data
The folder appears only when the run completes (see common.outputs.RunDir); a killed run restarted with the
same --out resumes from its last complete epoch and ends with the same numbers.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from common import checkpoint as ckpt
from common import data as data_lib
from common import outputs, plotting
from common import training as tr
from common.config import as_tuple
from common.errors import UserError
from flax import serialization

RESUME_STATE = "resume_state.msgpack"
RESUME_INFO = "resume.json"


@dataclasses.dataclass
class FitResult:
    state: Any  # last epoch's TrainState (stacked over models when several train together)
    variables: Any  # {'params', 'batch_stats'} of the selected (best validation) epoch, as checkpointed
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    out_dir: str


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One of the models trained together: its seed (init, dropout, batch order), learning rate and penalty
    weights (empty: the config's own)."""

    seed: int
    lr: float
    penalty: dict = dataclasses.field(default_factory=dict)


def model_grid(config) -> list[ModelSpec]:
    """Every (learning rate, penalty weights, seed) combination of `config`: `lr` and the fields named in
    `config.PENALTIES` may be tuples, `seeds` counts up from `seed`."""
    names = getattr(config, "PENALTIES", ())
    penalties = [dict(zip(names, values)) for values in itertools.product(*(as_tuple(getattr(config, n))
                                                                             for n in names))]
    specs = [ModelSpec(config.seed + i, float(lr), {k: float(v) for k, v in p.items()})
             for lr in as_tuple(config.lr) for p in penalties for i in range(getattr(config, "seeds", 1))]
    if len(specs) == 1:
        specs = [dataclasses.replace(specs[0], penalty={})]  # one model: the config's weights, untouched
    return specs


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
    weights = {k: np.asarray([s.penalty[k] for s in specs], np.float32) for k in specs[0].penalty} or None
    return state.replace(opt_state=opt_state, penalty_weights=weights), step_keys


def model_slice(tree, i: int):
    """Model i of a tree stacked over a leading model axis."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def over_models(train_step, eval_fn, n_models: int, model_axis: str = "auto"):
    """Maps the steps over a leading model axis, inside one compiled program.

    'vmap' batches the models' arithmetic together, which fills a GPU or TPU (LeNet5 x8: 3.7x the images/s of
    one model on an H100). On a CPU, vmapped convolutions become grouped convolutions that XLA's CPU backend
    runs several times slower than plain ones, so 'auto' picks 'unroll' there: the per-model program written
    out N times in the one jitted step (plain convolutions, no per-model dispatch; compiles N times longer).
    """
    if model_axis == "auto":
        model_axis = "unroll" if jax.default_backend() == "cpu" else "vmap"
    if model_axis == "vmap":
        return jax.vmap(train_step, in_axes=(0, 0, 0)), jax.vmap(eval_fn, in_axes=(0, None))
    if model_axis != "unroll":
        raise ValueError(f"model_axis must be 'auto', 'vmap' or 'unroll', got {model_axis!r}")

    def stack(trees):
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)

    def train_all(state, batch, rng):
        outs = [train_step(model_slice(state, i), model_slice(batch, i), rng[i]) for i in range(n_models)]
        return stack([o[0] for o in outs]), stack([o[1] for o in outs])

    def eval_all(state, batch):
        return stack([eval_fn(model_slice(state, i), batch) for i in range(n_models)])

    return train_all, eval_all


def compile_steps(train_step, n_models: int, mesh: Mesh | None = None, model_axis: str = "auto",
                  steps_per_call: int = 1):
    """Jits the steps once; vmaps them over a leading model axis when several models train together.

    With a mesh, each batch is split over its 'data' axis and the state is replicated: XLA inserts the
    gradient all-reduce (and the cross-device batch-norm statistics), so the numbers are those of one device.
    With `steps_per_call` > 1 the train function runs that many steps in one `lax.scan` (see
    `training.scan_train_steps`; its signature is then `(state, batches, rng, totals)`).
    """
    eval_fn = tr.eval_step
    if n_models > 1:
        train_step, eval_fn = over_models(train_step, eval_fn, n_models, model_axis)
    step = train_step
    if steps_per_call > 1:
        train_step = tr.scan_train_steps(train_step)
    if mesh is None:
        train, evaluate = jax.jit(train_step, donate_argnums=0), jax.jit(eval_fn)
    else:
        replicated = NamedSharding(mesh, P())
        batch_axes = (None,) * (n_models > 1) + (None,) * (steps_per_call > 1)
        train_batch = NamedSharding(mesh, P(*batch_axes, "data"))
        eval_batch = NamedSharding(mesh, P("data"))
        extra = (replicated,) if steps_per_call > 1 else ()
        jitted = jax.jit(train_step, in_shardings=(replicated, train_batch, replicated) + extra,
                         out_shardings=(replicated, replicated), donate_argnums=0)
        jitted_eval = jax.jit(eval_fn, in_shardings=(replicated, eval_batch), out_shardings=replicated)
        # Every host holds the whole (small) dataset, so each builds the global batch from the shards it owns;
        # this is the same code on one host with 8 GPUs and on a multi-host TPU slice.
        train = lambda state, batch, *rest: jitted(state, shard_batch(batch, train_batch), *rest)  # noqa: E731
        evaluate = lambda state, batch: jitted_eval(state, shard_batch(batch, eval_batch))  # noqa: E731
    if steps_per_call == 1:
        return train, evaluate

    zeros = []  # the metrics' zeros, traced once

    def train_steps(state, batches, rng, totals=None):
        if totals is None:  # the epoch's first call: start the sums at zero
            if not zeros:
                first = model_slice(batches, 0)  # one step's batch
                zeros.append(tr.zero_metrics(step, state, first, rng))
            totals = replicate(zeros[0], mesh)
        return train(state, batches, rng, totals)

    return train_steps, evaluate


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


class BestEpoch:
    """The variables of the epoch with the best validation accuracy, per model (Keras's
    ModelCheckpoint(save_best_only=True)): the reported model is chosen on validation data, never on test.
    Without a validation split the last epoch is kept."""

    def __init__(self, n_models: int):
        self.val = np.full(n_models, -np.inf)
        self.epoch = np.zeros(n_models, np.int64)
        self.variables = None

    def update(self, epoch: int, val_accuracy, state) -> None:
        n = len(self.val)
        val = np.full(n, float(epoch)) if val_accuracy is None else np.broadcast_to(np.asarray(val_accuracy, float), (n,))
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
    The checkpoint and the top-level metrics are those of the best validation epoch (see BestEpoch); the
    last epoch's figures are kept in metrics.json too, and every epoch's in history.csv.
    """
    specs = model_grid(config)
    run = outputs.RunDir(out)
    workdir = run.open()
    state, step_keys = init_states(model, (1,) + dataset.image_shape, specs)
    mesh = data_mesh(config.batch_size)
    steps_per_call = getattr(config, "steps_per_call", 1)
    train_fn, eval_fn = compile_steps(tr.make_train_step(penalty_fn), len(specs), mesh,
                                      steps_per_call=steps_per_call)

    run_info = {"task": task, "config": config.to_dict(), "data_source": dataset.source,
                "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape)}
    best = BestEpoch(len(specs))
    state, history, wall_before = _maybe_resume(run, state, best, run_info)
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
                                  progress=progress, steps_per_call=steps_per_call):
        state = result.state
        history.append(result.row)
        best.update(result.epoch, result.row["val_accuracy"], state)
        if on_epoch is not None:
            on_epoch(workdir, result.epoch, state)
        _save_resume(run, state, best, history, run_info, wall_before + time.perf_counter() - t0)
        tqdm.write(_epoch_line(result.row, config.epochs), file=sys.stderr)
    wall = wall_before + time.perf_counter() - t0

    metrics = _final_metrics(history, specs, best, wall, dataset, state, run_info)
    metrics.update(extra_metrics or {})
    _write_results(run, history, metrics, best.variables, specs, run_info, title, figure_name)
    final = run.commit()
    return FitResult(state=state, variables=best.variables, history=history, metrics=metrics, out_dir=final)


# -------------------------------------------------------------------------------------------- resuming


def _maybe_resume(run: outputs.RunDir, state, best: BestEpoch, run_info):
    info_path, state_path = run.path(RESUME_INFO), run.path(RESUME_STATE)
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
            rows.append({"seed": spec.seed, "lr": spec.lr, **spec.penalty,
                         **{k: _row_value(row, k, i) for k in row}})
    return rows


def mean_rows(history: list[dict]) -> list[dict]:
    return [{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in row.items()} for row in history]


def _row_value(row: dict, key: str, i: int):
    v = row[key]
    return v[i] if isinstance(v, list) else v


def _split_metrics(values: list) -> dict[str, Any]:
    """{'x': mean} (+ std and per-model values when several models) for each key of per-model values."""
    out: dict[str, Any] = {}
    for key in values[0]:
        v = [m[key] for m in values]
        out[key] = None if v[0] is None else float(np.mean(v))
        if len(v) > 1 and v[0] is not None:
            out[f"{key}_std"], out[f"{key}_per_model"] = float(np.std(v)), v
    return out


def _final_metrics(history, specs, best: BestEpoch, wall, dataset, state, run_info) -> dict[str, Any]:
    keys = [f"{split}_{m}" for split in ("train", "val", "test") for m in ("accuracy", "loss")]
    selected = [{k: _row_value(history[int(best.epoch[i]) - 1], k, i) for k in keys} for i in range(len(specs))]
    last = [{k: _row_value(history[-1], k, i) for k in keys} for i in range(len(specs))]
    params = state.params if len(specs) == 1 else model_slice(state.params, 0)
    metrics: dict[str, Any] = _split_metrics(selected)
    steady = [r["train_images_per_sec"] for r in history[1:]] or [history[0]["train_images_per_sec"]]
    metrics.update({
        "selected_epoch": int(best.epoch[0]) if len(specs) == 1 else best.epoch.tolist(),
        "selection": "best validation accuracy" if dataset.val.labels.size else "last epoch (no validation split)",
        "last_epoch": _split_metrics(last),
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


def _write_results(run, history, metrics, variables, specs, run_info, title, figure_name) -> None:
    n_models = len(specs)
    outputs.write_csv(run.path("history.csv"), per_model_rows(history, specs))
    outputs.write_json(run.path("metrics.json"), metrics)
    suffix = "" if n_models == 1 else f" (mean of {n_models} models)"
    selected = metrics["selected_epoch"] if n_models == 1 else None
    plotting.plot_history(mean_rows(history), run.path(figure_name), title + suffix, selected)
    first = variables if n_models == 1 else model_slice(variables, 0)
    ckpt.save_checkpoint(run.path(ckpt.CHECKPOINT_DIR), first,
                         {**run_info, "seed": specs[0].seed, "lr": specs[0].lr, "epoch": metrics["selected_epoch"]})
    if n_models > 1:
        ckpt.save_tree(run.path(ckpt.CHECKPOINT_DIR, "all_models.msgpack"), variables)
    for name in (RESUME_STATE, RESUME_INFO):
        if os.path.exists(run.path(name)):
            os.remove(run.path(name))
