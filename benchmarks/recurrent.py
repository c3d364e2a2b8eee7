"""`python -m benchmarks.recurrent [--cell lstm --hidden 128 --seeds 1,8]`: recurrent-net training throughput."""
from __future__ import annotations

import argparse

from benchmarks.harness import emit, prepare, setup, time_evaluation, time_train_steps
from common.core.loop import steps_per_call
from common.core.step import make_train_step
from recurrent.config import RNNConfig
from recurrent.model import RecurrentClassifier


def bench(config: RNNConfig, n_models: int = 1) -> dict:
    model = RecurrentClassifier(cell=config.cell, hidden=config.hidden, init_scheme=config.init_scheme)
    train = config.train
    images = train.batch_size * n_models
    k = steps_per_call(train, 2000 // train.batch_size)
    program, state, keys, split = prepare(model, make_train_step(None), n_models, train.batch_size, (28, 28, 1), 1,
                                          eval_batch=train.eval_batch_size)
    result, state = time_train_steps(program, state, split, keys, images_per_step=images, steps_per_window=50)
    if k > 1:  # what training runs: steps scanned in one call
        scanned, state2, keys2, split2 = prepare(model, make_train_step(None), n_models, train.batch_size,
                                                 (28, 28, 1), k, eval_batch=train.eval_batch_size)
        timed, _ = time_train_steps(scanned, state2, split2, keys2, images_per_step=images, steps_per_window=2 * k)
        result = {"train_images_per_sec_one_step_per_call": result["train_images_per_sec"], **timed,
                  "first_step_seconds": result["first_call_seconds"]}
    result.update(time_evaluation(program, state, split))
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
