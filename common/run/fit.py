"""`fit`: one training run of N >= 1 models from a dataset to a committed output folder.

The output folder (`common.runtime.outputs.RunDir`) appears only when the run completes; a killed run restarted
with the same folder resumes from its last complete epoch (`resume`) and ends with the same numbers. Ctrl-C
is honoured between training calls (`common.runtime.interrupt`): the run stops there and commits nothing. What it
writes is `results`' business; the training itself is the pure core's (`loop.train_models`), given this run's
hooks; the compiled steps are `step`'s.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
from tqdm.auto import tqdm

from common import data as data_lib
from common.core import loop
from common.core import step as step_lib
from common.core.config import TrainConfig
from common.core.loop import steps_per_call  # noqa: F401 (API: what `auto` picks)
from common.core.state import model_grid, squeeze
from common.run import results, resume
from common.runtime import interrupt, outputs, xla_cpu


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


def fit(model, dataset: data_lib.Dataset, train: TrainConfig, out: str, show: Presentation, *, task: str,
        config: dict, penalty_fn: Callable | None = None, penalties: dict[str, tuple[float, ...]] | None = None,
        on_epoch: Callable[[str, int, Any], None] | None = None, specs: list | None = None,
        optimizer: str = "nadam") -> FitResult:
    """Trains `model` with `optimizer` (Nadam) on `dataset` as `train` says and writes the results into `out`.

    `config` is the experiment's flat config (recorded, and compared on resume). `penalty_fn(params,
    **weights)` is added to the loss; `penalties` {name: values} lists weights swept as a model axis.
    `on_epoch(workdir, epoch, state)` runs after each epoch (and with epoch 0 before training). `specs` (default:
    `model_grid(train, penalties)`, every combination) lists the models to train together, for a chosen set.
    """
    specs = specs or model_grid(train, penalties)
    if len(dataset.train) < train.batch_size:  # before any folder is made or model compiled
        raise data_lib.DataError(f"the training split has {len(dataset.train)} examples, fewer than the batch "
                                 f"size {train.batch_size}; lower --batch-size")
    environment = outputs.environment_info()  # at the start: the load average before this run adds to it
    run = outputs.RunDir(out, task=task, config=config)
    try:
        history, metrics, best, state, specs = _train(run, model, dataset, train, penalties, specs, task, config,
                                                      show, penalty_fn, on_epoch, optimizer)
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


def _train(run, model, dataset, train: TrainConfig, penalties, specs, task, config, show: Presentation, penalty_fn,
           on_epoch, optimizer: str = "nadam"):
    """The pure core (`loop.train_models`) with this run's hooks: resumed from `run`'s working folder when it
    holds an unfinished run of the same config, the resume file saved after each epoch, Ctrl-C between calls.
    Returns (history, final metrics + 'run_info', best epoch, last state, specs)."""
    workdir = run.open()
    interrupt.check()
    run_info = {"task": task, "config": config, "data_source": dataset.source,
                "class_names": list(dataset.class_names), "image_shape": list(dataset.image_shape),
                "data_fingerprint": data_lib.fingerprint(dataset)}
    wall = {"before": 0.0, "t0": 0.0}

    def restore(state, best, mesh):
        state, history, wall["before"] = resume.load(run, state, best, run_info, mesh,
                                                      steps_per_epoch=len(dataset.train) // train.batch_size)
        if history:
            tqdm.write(f"resuming {task} from epoch {len(history)} in {run.work}", file=sys.stderr)
        wall["t0"] = time.perf_counter()
        return state, history

    def epoch_done(epoch, state, best, history):
        if on_epoch is not None:
            on_epoch(workdir, epoch, state)
        if epoch:
            resume.save(run, state, best, history, run_info, wall["before"] + time.perf_counter() - wall["t0"])
            if run.writer:
                results.write_tensorboard(run, history, specs)  # live curves: tensorboard --logdir <out>.partial
            tqdm.write(results.epoch_line(history[-1], train.epochs), file=sys.stderr)

    trained = loop.train_models(model, dataset, train, penalty_fn=penalty_fn, penalties=penalties, specs=specs,
                                optimizer=optimizer, program_options=xla_cpu.program_options, restore=restore,
                                on_epoch=epoch_done,
                                between_calls=interrupt.check, progress=show.progress,
                                describe=lambda e: f"{show.title} epoch {e}/{train.epochs}")
    interrupt.check()
    history, specs, state = trained.history, trained.specs, trained.state
    params = sum(x.size for x in jax.tree_util.tree_leaves(state.params)) // len(specs)
    metrics = results.final_metrics(history, specs, trained.best.epoch,
                                    wall=wall["before"] + time.perf_counter() - wall["t0"],
                                    sizes={s: len(getattr(dataset, s)) for s in loop.SPLITS},
                                    has_val=bool(len(dataset.val)), param_count=int(params))
    metrics.update(run_info=run_info, steps_per_call=train.steps_per_call,
                   steps_per_call_used=trained.program.steps_per_call,
                   **results.divergence(history, len(dataset.class_names)))
    return history, metrics, trained.best, state, specs
