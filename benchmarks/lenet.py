"""`python -m benchmarks.lenet [--seeds 1,4,8]`: LeNet5 training throughput in the report configuration.

Prints one JSON line per configuration (images/sec is the median of several timed windows after warm-up).
"""
from __future__ import annotations

import argparse

from benchmarks.harness import emit, prepare, setup, time_evaluation, time_train_steps
from common.core.step import make_train_step
from common.run.fit import steps_per_call
from lenet.config import LeNetConfig
from lenet.model import create_model
from lenet.train import penalty_fn


def bench(config: LeNetConfig, n_seeds: int = 1, image_shape=(28, 28, 1)) -> dict:
    train = config.train
    k = steps_per_call(train, 2000 // train.batch_size)
    program, state, keys, split = prepare(create_model(config), make_train_step(penalty_fn(config)), n_seeds,
                                          train.batch_size, image_shape, k, eval_batch=train.eval_batch_size)
    result, state = time_train_steps(program, state, split, keys, images_per_step=train.batch_size * n_seeds)
    result.update(time_evaluation(program, state, split))
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
