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
    assert jax.device_count() == 4, jax.devices()
    config = LeNetConfig(data_dir=folder, epochs=2, batch_size=8, eval_batch_size=6, hidden=32, dropout_rate=0.5)
    result = train_and_evaluate(config, out, progress=False)
    kernel = np.asarray(result.state.params["conv1"]["kernel"])
    sharding = result.state.params["conv1"]["kernel"].sharding
    print(json.dumps({"history": result.history, "kernel": kernel.tolist(),
                      "n_devices": len(sharding.device_set)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
