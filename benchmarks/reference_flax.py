"""`python -m benchmarks.reference_flax [--cell rnn,lstm,gru]`: the recurrent nets built from Flax's own cells.

The peer that plain Flax code would be: ``nn.RNN(OptimizedLSTMCell | GRUCell | SimpleCell)`` over the 28 rows
(batch-major, as ours), BatchNorm (Keras's momentum and epsilon, as ours), a dense head; cross-entropy and
optax nadam at 1e-3 through the same `common.core.step` train step, timed by the same harness as
`python -m benchmarks.recurrent` (one step per call, and 50 steps scanned in one call, which is what
training runs and what `train_images_per_sec` reports). Prints one JSON line per model.
"""
from __future__ import annotations

import argparse

import flax
import flax.linen as nn

from benchmarks.harness import emit, prepare, setup, time_train_steps
from common.core.step import make_train_step

FLAX_CELLS = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
DEFAULT_HIDDEN = {"rnn": 64, "lstm": 128, "gru": 128}


class FlaxRecurrent(nn.Module):
    """nn.RNN(Flax cell) -> last hidden state -> BatchNorm -> Dense(10)."""

    cell: str = "lstm"
    hidden: int = 128

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = x.reshape(x.shape[0], x.shape[1], -1)
        h = nn.RNN(FLAX_CELLS[self.cell](self.hidden), name="rnn")(x)[:, -1]
        h = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, name="bn")(h)
        return nn.Dense(10, name="head")(h)


def bench(cell: str, hidden: int | None = None, batch_size: int = 32, steps_per_call: int = 50,
          seed: int = 0) -> dict:
    hidden = hidden or DEFAULT_HIDDEN[cell]
    model = FlaxRecurrent(cell, hidden)
    one, state, step_key, split = prepare(model, make_train_step(None), 1, batch_size, (28, 28, 1), 1,
                                          eval_batch=1000, seed=seed)
    result, state = time_train_steps(one, state, split, step_key, images_per_step=batch_size, steps_per_window=50)
    if steps_per_call > 1:
        scanned, state, step_key, split = prepare(model, make_train_step(None), 1, batch_size, (28, 28, 1),
                                                  steps_per_call, eval_batch=1000, seed=seed)
        timed, state = time_train_steps(scanned, state, split, step_key, images_per_step=batch_size,
                                        steps_per_window=2 * steps_per_call)
        result = {"train_images_per_sec_one_step_per_call": result["train_images_per_sec"], **timed,
                  "first_step_seconds": result["first_call_seconds"]}
    return {"model": f"{cell}-{hidden}", "framework": f"flax {flax.__version__} nn.RNN({FLAX_CELLS[cell].__name__})",
            "batch_size": batch_size, "seeds": 1, **result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cell", default="rnn,lstm,gru")
    parser.add_argument("--hidden", type=int, default=None, help="default: 64 for rnn, 128 for lstm and gru")
    parser.add_argument("--steps-per-call", type=int, default=50)
    args = parser.parse_args(argv)
    setup()
    for cell in args.cell.split(","):
        emit(bench(cell, args.hidden, steps_per_call=args.steps_per_call))


if __name__ == "__main__":
    main()
