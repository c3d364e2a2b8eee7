"""`fit`: one training run of N >= 1 models from a dataset to a committed output folder.

The output folder (`common.outputs.RunDir`) appears only when the run completes; a killed run restarted
with the same folder resumes from its last complete epoch (`resume`) and ends with the same numbers. Ctrl-C
is honoured between training calls (`common.interrupt`): the run stops there and commits nothing. What it
writes is `results`' business; the epochs are `loop`'s; the compiled steps `step`'s.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from common import data as data_lib
from common import interrupt, outputs
from common.config import TrainConfig
from common.train import loop, results, resume
from common.train import step as step_lib
from common.train.state import init_states, model_grid, squeeze

# On a GPU or TPU `auto` runs the epoch as scans of at most this many steps: a call of LeNet5 or LSTM-128
# steps lasts well under a second there, so Ctrl-C and the progress bar still answer within about one.
ACCELERATOR_STEPS_PER_CALL = 250


@dataclasses.dataclass(frozen=True)
class Presentation:
    """What only shows: the figure's title and file name, the command line recorded, the progress bar."""

    title: str
    figure_name: str
    command: str | None = None
    progress: bool = True


@dataclasses.dataclass
class FitResult:
    state: Any  # last epoch's TrainState (stacked over models when several train together)
    variables: Any  # {'params', 'batch_stats'} of the selected (best validation) epoch, as checkpointed
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    out_dir: str


def steps_per_call(train: TrainConfig, n_steps: int) -> int:
    """The steps per compiled call: the config's number, or for 'auto' a whole epoch in chunks of at most
    ACCELERATOR_STEPS_PER_CALL on a GPU/TPU, and `train.cpu_steps_per_call` on a CPU (1 for LeNet5, whose
    convolutions XLA:CPU runs ~10x slower inside a scan; measured in docs/accelerator.md)."""
    if train.steps_per_call != "auto":
        return int(train.steps_per_call)
    if jax.default_backend() == "cpu":
        return max(1, min(train.cpu_steps_per_call, n_steps))
    return max(1, math.ceil(n_steps / math.ceil(n_steps / ACCELERATOR_STEPS_PER_CALL)))


def fit(model, dataset: data_lib.Dataset, train: TrainConfig, out: str, show: Presentation, *, task: str,
        config: dict, penalty_fn: Callable | None = None, penalties: dict[str, tuple[float, ...]] | None = None,
        on_epoch: Callable[[str, int, Any], None] | None = None) -> FitResult:
    """Trains `model` with Nadam on `dataset` as `train` says and writes the results into `out`.

    `config` is the experiment's flat config (recorded, and compared on resume). `penalty_fn(params,
    **weights)` is added to the loss; `penalties` {name: values} lists weights swept as a model axis.
    `on_epoch(workdir, epoch, state)` runs after each epoch (and with epoch 0 before training).
    """
    specs = model_grid(train, penalties)
    if len(dataset.train) < train.batch_size:  # before any folder is made or model compiled
        raise data_lib.DataError(f"the training split has {len(dataset.train)} examples, fewer than the batch "
                                 f"size {train.batch_size}; lower --batch-size")
    environment = outputs.environment_info()  # at the start: the load average before this run adds to it
    run = outputs.RunDir(out, task=task, config=config)
    try:
        history, metrics, best, state = _train(run, model, dataset, train, specs, task, config, show,
                                               penalty_fn, on_epoch)
        run_info = metrics.pop("run_info")
        metrics.update(command=show.command, environment=environment, **run_info)
        results.warn_if_diverged(metrics, history)
        n = len(specs)
        history, variables = results.squeeze_rows(history, n), squeeze(step_lib.to_host(best.variables), n)
        if run.writer:
            results.write(run, history, metrics, variables, specs, run_info, title=show.title,
                          figure_name=show.figure_name)
            resume.remove(run)
        return FitResult(state=squeeze(state, n), variables=variables, history=history, metrics=metrics,
                         out_dir=run.commit())
    finally:
        run.release()


def _train(run, model, dataset, train: TrainConfig, specs, task, config, show: Presentation, penalty_fn, on_epoch):
    """The epochs (resumed from `run`'s working folder when it holds an unfinished run of the same config);
    returns (history, final metrics + 'run_info', best epoch, last state)."""
    workdir = run.open()
    interrupt.check()
    mesh = step_lib.make_mesh(len(specs), train.batch_size)
    eval_batch = step_lib.eval_batch_for(train.eval_batch_size, mesh)
    k = steps_per_call(train, len(dataset.train) // train.batch_size)
    program = step_lib.compile_program(step_lib.make_train_step(penalty_fn), len(specs), mesh, eval_batch=eval_batch,
                                       batch_shape=(train.batch_size,) + dataset.image_shape, steps_per_call=k)
    state, rng = init_states(model, (1,) + dataset.image_shape, specs)
    run_info = {"task": task, "config": config, "data_source": dataset.source,
                "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape),
                "data_fingerprint": data_lib.fingerprint(dataset)}
    best = loop.BestEpoch(len(specs))
    state, history, wall_before = resume.load(run, state, best, run_info, mesh,
                                              steps_per_epoch=len(dataset.train) // train.batch_size)
    state, rng = step_lib.put((state, rng), mesh, P("model"))
    splits = loop.put_splits(dataset, program, eval_batch)
    if history:
        tqdm.write(f"resuming {task} from epoch {len(history)} in {run.work}", file=sys.stderr)
    elif on_epoch is not None:
        on_epoch(workdir, 0, state)
    t0 = time.perf_counter()
    epochs = loop.epochs(program, splits, state, rng, [s.seed for s in specs], batch_size=train.batch_size,
                         first=len(history) + 1, last=train.epochs, progress=show.progress,
                         describe=lambda e: f"{show.title} epoch {e}/{train.epochs}")
    for epoch, state, row in epochs:  # noqa: B020 (each epoch's state replaces the last, which may be donated)
        history.append(row)
        best.update(epoch, row["val_accuracy"], state, mesh)
        if on_epoch is not None:
            on_epoch(workdir, epoch, state)
        resume.save(run, state, best, history, run_info, wall_before + time.perf_counter() - t0)
        tqdm.write(results.epoch_line(row, train.epochs), file=sys.stderr)
    interrupt.check()
    params = sum(x.size for x in jax.tree_util.tree_leaves(state.params)) // len(specs)
    metrics = results.final_metrics(history, specs, best.epoch, wall=wall_before + time.perf_counter() - t0,
                                    sizes={s: len(getattr(dataset, s)) for s in loop.SPLITS},
                                    has_val=bool(len(dataset.val)), param_count=int(params))
    metrics.update(run_info=run_info, steps_per_call=train.steps_per_call, steps_per_call_used=k,
                   **results.divergence(history, len(dataset.class_names)))
    return history, metrics, best, state
