"""`python -m benchmarks.recurrent [--cell lstm --hidden 128 --seeds 1,8]`: recurrent-net training throughput."""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.harness import emit, random_batches, setup, time_eval_step, time_scanned_steps, time_train_step
from common import experiment
from common import training as tr
from recurrent.cells import RecurrentClassifier
from recurrent.config import RNNConfig


def bench(config: RNNConfig, n_models: int = 1) -> dict:
    model = RecurrentClassifier(cell=config.cell, hidden=config.hidden, init_scheme=config.init_scheme)
    specs = [experiment.ModelSpec(config.seed + i, config.lr) for i in range(n_models)]
    state, keys = experiment.init_states(model, (1, 28, 28, 1), specs)
    train_fn, eval_fn = experiment.compile_steps(tr.make_train_step(None), n_models)
    leading = () if n_models == 1 else (n_models,)
    batches = random_batches(8, config.batch_size, (28, 28, 1), leading=leading)
    images = config.batch_size * n_models
    result, state = time_train_step(train_fn, state, batches, keys, images_per_step=images, steps_per_window=50)
    if config.steps_per_call > 1:  # what training runs: steps scanned in one call
        scanned_fn, _ = experiment.compile_steps(tr.make_train_step(None), n_models,
                                                 steps_per_call=config.steps_per_call)
        scanned, state = time_scanned_steps(scanned_fn, state, batches, keys, images_per_step=images,
                                            steps_per_call=config.steps_per_call)
        result = {"train_images_per_sec_one_step_per_call": result["train_images_per_sec"], **scanned,
                  "first_step_seconds": result["first_step_seconds"]}
    eval_batch = {**random_batches(1, config.eval_batch_size, (28, 28, 1))[0],
                  "mask": np.ones(config.eval_batch_size, np.float32)}
    result.update(time_eval_step(eval_fn, state, eval_batch, images_per_step=config.eval_batch_size * n_models))
    return {"model": f"{config.cell}-{config.hidden}", "batch_size": config.batch_size, "seeds": n_models, **result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cell", default="rnn,lstm,gru")
    parser.add_argument("--hidden", default=None, help="default: 64 for rnn, 128 for lstm and gru")
    parser.add_argument("--seeds", default="1")
    args = parser.parse_args(argv)
    setup()
    for cell in args.cell.split(","):
        hidden = int(args.hidden) if args.hidden else (64 if cell == "rnn" else 128)
        for n in [int(s) for s in args.seeds.split(",")]:
            emit(bench(RNNConfig(cell=cell, hidden=hidden), n))


if __name__ == "__main__":
    main()
