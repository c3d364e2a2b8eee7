"""Run as a subprocess by test_multidevice.py: XLA must see 4 CPU devices before JAX starts.

`data`: one model, each batch split over the 4 devices (steps per call 1, and 3 as one lax.scan);
`models`: 4 seeds, one per device (the 'model' mesh axis), each batch whole on its device."""
import json
import sys

import chex

chex.set_n_cpu_devices(4)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lenet.config import LeNetConfig  # noqa: E402
from lenet.train import train_and_evaluate  # noqa: E402


def run(config, out) -> dict:
    result = train_and_evaluate(config, out, progress=False)
    kernel = result.state.params["conv1"]["kernel"]
    return {"history": result.history, "kernel": np.asarray(kernel).tolist(),
            "n_devices": len(kernel.sharding.device_set),
            "models_per_device": int(kernel.sharding.shard_shape(kernel.shape)[0]) if config.train.seeds > 1 else None,
            "steps_per_call_used": result.metrics["steps_per_call_used"]}


def main(mode: str, folder: str, out: str) -> None:
    """Prints one JSON line: {variant: the run's history, conv1 kernel and how it was laid out}."""
    assert jax.device_count() == 4, jax.devices()
    base = dict(data_dir=folder, epochs=2, batch_size=8, eval_batch_size=6, hidden=32, dropout_rate=0.5)
    if mode == "data":
        runs = {k: run(LeNetConfig.create(steps_per_call=k, **base), f"{out}_{k}") for k in (1, 3)}
    else:
        runs = {"seeds": run(LeNetConfig.create(seeds=4, **base), f"{out}_seeds")}
    print(json.dumps(runs))


if __name__ == "__main__":
    main(*sys.argv[1:])
