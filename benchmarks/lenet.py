"""`python -m benchmarks.lenet [--seeds 1,4,8]`: LeNet5 training throughput in the report configuration.

Prints one JSON line per configuration (images/sec is the median of several timed windows after warm-up).
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.harness import emit, setup, random_batches, time_eval_step, time_train_step
from common import experiment
from common import training as tr
from lenet.config import LeNetConfig
from lenet.train import create_model, penalty_fn


def bench(config: LeNetConfig, n_seeds: int = 1, image_shape=(28, 28, 1)) -> dict:
    model = create_model(config)
    specs = [experiment.ModelSpec(config.seed + i, config.lr) for i in range(n_seeds)]
    state, keys = experiment.init_states(model, (1,) + image_shape, specs)
    train_fn, eval_fn = experiment.compile_steps(tr.make_train_step(penalty_fn(config)), n_seeds)
    leading = () if n_seeds == 1 else (n_seeds,)
    batches = random_batches(8, config.batch_size, image_shape, leading=leading)
    result, state = time_train_step(train_fn, state, batches, keys, images_per_step=config.batch_size * n_seeds)
    eval_batch = {**random_batches(1, config.eval_batch_size, image_shape)[0],
                  "mask": np.ones(config.eval_batch_size, np.float32)}
    result.update(time_eval_step(eval_fn, state, eval_batch, images_per_step=config.eval_batch_size * n_seeds))
    return {"model": "lenet5", "batch_size": config.batch_size, "seeds": n_seeds, "image_shape": list(image_shape),
            **result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="1", help="comma list of model counts trained at once, e.g. 1,4,8")
    parser.add_argument("--image-mode", default="gray28", choices=("gray28", "rgb32"))
    args = parser.parse_args(argv)
    setup()
    shape = (28, 28, 1) if args.image_mode == "gray28" else (32, 32, 3)
    for n in [int(s) for s in args.seeds.split(",")]:
        emit(bench(LeNetConfig(), n, shape))


if __name__ == "__main__":
    main()
