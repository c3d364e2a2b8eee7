"""`python -m benchmarks.end_to_end [--scale 0.05] [--epochs 1] [--only lenet-course,...]`: the real
`train_and_evaluate` (compilation, every epoch's training and its three evaluations, results written) on
generated arrays of the real sizes, no TensorFlow and no download.

One JSON line per run: wall, compile, training, evaluation and host seconds, training images/s (all models'),
steps per call, backend and device. `--scale` shrinks every split (and `--epochs` the epochs) for a CPU.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import numpy as np

from common import data as data_lib

# name: (task, train / val / test sizes, epochs, seeds)
RUNS = {
    "lenet-course": ("lenet", (9000, 1000, 1000), 25, 1),
    "lenet-full-cifar": ("lenet", (45000, 5000, 10000), 25, 1),
    "lstm128-full-mnist": ("lstm", (54000, 6000, 10000), 10, 1),
    "lenet-course-8-seeds": ("lenet", (9000, 1000, 1000), 25, 8),
    "lenet-course-32-seeds": ("lenet", (9000, 1000, 1000), 25, 32),
}


class CompileClock:
    """Seconds XLA spent compiling, from JAX's own monitoring events."""

    def __init__(self):
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._record)

    def _record(self, event: str, duration: float, **_) -> None:
        if event.endswith("backend_compile_duration"):
            self.seconds += duration


def generated_dataset(sizes: tuple[int, int, int], seed: int = 0) -> data_lib.Dataset:
    """Random uint8 28x28 grayscale images and labels in ten classes, in the given split sizes."""
    rng = np.random.default_rng(seed)

    def split(n):
        return data_lib.Split(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                              rng.integers(0, 10, n).astype(np.int32))

    return data_lib.Dataset(*(split(n) for n in sizes), class_names=tuple("0123456789"),
                            source=f"generated {sizes[0]}/{sizes[1]}/{sizes[2]}")


def run(name: str, scale: float, epochs: int | None, clock: CompileClock) -> dict:
    task, sizes, default_epochs, seeds = RUNS[name]
    sizes = tuple(max(64, int(round(n * scale))) for n in sizes)
    epochs = epochs or default_epochs
    dataset = generated_dataset(sizes)
    if task == "lenet":
        from lenet.config import LeNetConfig
        from lenet.train import train_and_evaluate

        config = LeNetConfig.create(epochs=epochs, seeds=seeds)
    else:
        from recurrent.config import RNNConfig
        from recurrent.train import train_and_evaluate

        config = RNNConfig.create(cell="lstm", hidden=128, epochs=epochs, seeds=seeds)
    compiled_before = clock.seconds
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = train_and_evaluate(config, out, dataset=dataset, progress=False)
        wall = time.perf_counter() - t0
    return record(name, result, wall, clock.seconds - compiled_before, sizes, epochs, seeds)


def record(name, result, wall, compile_seconds, sizes, epochs, seeds) -> dict:
    history, m = result.history, result.metrics
    train = sum(r["train_seconds"] for r in history)
    evaluation = sum(r["epoch_seconds"] - r["train_seconds"] for r in history)
    images = (sizes[0] // m["config"]["batch_size"]) * m["config"]["batch_size"] * seeds * epochs
    device = jax.devices()[0]
    return {"run": name, "train_val_test": list(sizes), "epochs": epochs, "seeds": seeds,
            "wall_seconds": wall, "compile_seconds": compile_seconds, "train_seconds": train,
            "eval_seconds": evaluation, "host_seconds": sum(r["host_seconds"] for r in history),
            "train_images_per_s": images / train, "train_images_per_s_steady": (m["train_images_per_sec_after_first"]
                                          or m["train_images_per_sec_first_epoch"]),
            "steps_per_call_used": m["steps_per_call_used"], "batch_size": m["config"]["batch_size"],
            "backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
            "device_count": jax.device_count()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of every split's size (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run (default: the report's)")
    parser.add_argument("--only", default=",".join(RUNS), help=f"comma list of runs: {', '.join(RUNS)}")
    args = parser.parse_args(argv)
    clock = CompileClock()
    for name in args.only.split(","):
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                          for k, v in run(name, args.scale, args.epochs, clock).items()}), flush=True)


if __name__ == "__main__":
    main()
