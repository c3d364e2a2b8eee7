"""Run as a subprocess by test_multidevice.py: XLA must see 4 CPU devices before JAX starts."""
import json
import sys

import chex

chex.set_n_cpu_devices(4)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lenet.config import LeNetConfig  # noqa: E402
from lenet.train import train_and_evaluate  # noqa: E402


def main(folder: str, out: str) -> None:
    """Prints one JSON line: for each steps_per_call (1, and 3 as one lax.scan), the sharded run's results."""
    assert jax.device_count() == 4, jax.devices()
    runs = {}
    for steps_per_call in (1, 3):
        config = LeNetConfig.create(data_dir=folder, epochs=2, batch_size=8, eval_batch_size=6, hidden=32,
                             dropout_rate=0.5, steps_per_call=steps_per_call)
        result = train_and_evaluate(config, f"{out}_{steps_per_call}", progress=False)
        kernel = np.asarray(result.state.params["conv1"]["kernel"])
        sharding = result.state.params["conv1"]["kernel"].sharding
        runs[steps_per_call] = {"history": result.history, "kernel": kernel.tolist(),
                                "n_devices": len(sharding.device_set)}
    print(json.dumps(runs))


if __name__ == "__main__":
    main(*sys.argv[1:])
