"""`python -m benchmarks.lenet [--seeds 1,4,8]`: LeNet5 training throughput in the report configuration.

Prints one JSON line per configuration (images/sec is the median of several timed windows after warm-up).
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks.harness import emit, random_batches, setup, time_eval_step, time_train_steps
from common import parallel
from common import training as tr
from lenet.config import LeNetConfig
from lenet.train import create_model, penalty_fn


def bench(config: LeNetConfig, n_seeds: int = 1, image_shape=(28, 28, 1)) -> dict:
    model = create_model(config)
    train = config.train
    specs = [parallel.ModelSpec(train.seed + i, train.lr) for i in range(n_seeds)]
    state, keys = parallel.init_states(model, (1,) + image_shape, specs)
    steps = parallel.compile_steps(tr.make_train_step(penalty_fn(config)), n_seeds,
                                   steps_per_call=train.steps_per_call)
    leading = () if n_seeds == 1 else (n_seeds,)
    batches = random_batches(8, train.batch_size, image_shape, leading=leading)
    result, state = time_train_steps(steps, state, batches, keys, images_per_step=train.batch_size * n_seeds,
                                     steps_per_call=train.steps_per_call)
    eval_batch = {**random_batches(1, train.eval_batch_size, image_shape)[0],
                  "mask": np.ones(train.eval_batch_size, np.float32)}
    result.update(time_eval_step(steps.evaluate, state, eval_batch,
                                 images_per_step=train.eval_batch_size * n_seeds))
    return {"model": "lenet5", "batch_size": train.batch_size, "seeds": n_seeds, "image_shape": list(image_shape),
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
