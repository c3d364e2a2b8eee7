"""`python -m benchmarks.recurrent [--cell lstm --hidden 128 --seeds 1,8]`: recurrent-net training throughput."""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.harness import emit, random_batches, setup, time_eval_step, time_train_steps
from common import parallel
from common import training as tr
from recurrent.config import RNNConfig
from recurrent.model import RecurrentClassifier


def bench(config: RNNConfig, n_models: int = 1) -> dict:
    model = RecurrentClassifier(cell=config.cell, hidden=config.hidden, init_scheme=config.init_scheme)
    train = config.train
    specs = [parallel.ModelSpec(train.seed + i, train.lr) for i in range(n_models)]
    state, keys = parallel.init_states(model, (1, 28, 28, 1), specs)
    leading = () if n_models == 1 else (n_models,)
    batches = random_batches(8, train.batch_size, (28, 28, 1), leading=leading)
    images = train.batch_size * n_models
    one = parallel.compile_steps(tr.make_train_step(None), n_models)
    result, state = time_train_steps(one, state, batches, keys, images_per_step=images, steps_per_window=50)
    if train.steps_per_call > 1:  # what training runs: steps scanned in one call
        scanned = parallel.compile_steps(tr.make_train_step(None), n_models, steps_per_call=train.steps_per_call)
        timed, state = time_train_steps(scanned, state, batches, keys, images_per_step=images,
                                        steps_per_call=train.steps_per_call, steps_per_window=2 * train.steps_per_call)
        result = {"train_images_per_sec_one_step_per_call": result["train_images_per_sec"], **timed,
                  "first_step_seconds": result["first_call_seconds"]}
    eval_batch = {**random_batches(1, train.eval_batch_size, (28, 28, 1))[0],
                  "mask": np.ones(train.eval_batch_size, np.float32)}
    result.update(time_eval_step(one.evaluate, state, eval_batch, images_per_step=train.eval_batch_size * n_models))
    return {"model": f"{config.cell}-{config.hidden}", "batch_size": train.batch_size, "seeds": n_models, **result}


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
            emit(bench(RNNConfig.create(cell=cell, hidden=hidden), n))


if __name__ == "__main__":
    main()
