"""The one source of LeNet5 hyperparameters; the defaults are the report's (Part 1b)."""
from __future__ import annotations

import dataclasses

from common.config import as_tuple, config_from_dict, require, training_checks


@dataclasses.dataclass(frozen=True)
class LeNetConfig:
    PENALTIES = ("conv_l2", "fc_l2")  # weights that can be swept as a vmapped model axis

    # data (field names shared with common.data.DataConfig)
    dataset: str = "cifar10"
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    image_mode: str = "gray28"  # the course format; 'rgb32' keeps CIFAR10's 32x32 colour
    val_fraction: float = 0.1  # the report held out 10% of the training data
    split_seed: int = 0
    limit: int | None = None
    # model
    features: tuple[int, ...] = (32, 64)
    hidden: int = 1024
    dropout_rate: float = 0.8  # fraction dropped on fc1 (Keras Dropout(0.8))
    bias_init: float = 0.1  # "bias initialization to a positive constant"
    use_batchnorm: bool = True
    # optimisation
    lr: float | tuple[float, ...] = 1.7e-4  # a tuple trains one model per rate, vmapped
    batch_size: int = 50
    epochs: int = 25
    conv_l2: float | tuple[float, ...] = 0.01  # Keras l2(): weight * sum of squares of each conv kernel
    fc_l2: float | tuple[float, ...] = 0.005  # ... and of the fc1 kernel (tuples: one model per value, vmapped)
    seed: int = 0
    seeds: int = 1  # models trained at once with jax.vmap (seed, seed + 1, ...)
    eval_batch_size: int = 500
    # Training steps per compiled call (one lax.scan over them). 1 on purpose: XLA:CPU runs LeNet5's
    # convolutions inside a loop ~20x slower (111 against 2,025 img/s); on a GPU try --steps-per-call 50.
    steps_per_call: int = 1
    filter_epochs: tuple[int, ...] = (0, 1, 2, 5, 10, 25)  # conv1 kernels saved after these epochs

    def validate(self) -> "LeNetConfig":
        require(training_checks(self) + [
            (0 <= self.dropout_rate < 1, f"dropout rate must be in [0, 1), got {self.dropout_rate}"),
            (min(as_tuple(self.conv_l2) + as_tuple(self.fc_l2)) >= 0, "L2 weights must be non-negative"),
        ])
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LeNetConfig":
        return config_from_dict(cls, d)
