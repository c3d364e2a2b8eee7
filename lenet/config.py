"""The one source of LeNet5 hyperparameters; the defaults are the report's (Part 1b)."""
from __future__ import annotations

import dataclasses

from common.core.config import DataConfig, FlatFields, TrainConfig, as_tuple, require
from common.core.state import OPTIMIZERS

KERNEL_INITS = ("glorot_normal", "glorot_uniform")
BN_POSITIONS = ("before_pool", "after_pool")
KNOBS = {"kernel_init": "glorot_normal", "optimizer": "nadam", "bn_position": "before_pool"}  # added later


@dataclasses.dataclass(frozen=True)
class LeNetConfig(FlatFields):
    data: DataConfig = DataConfig(dataset="cifar10", image_mode="gray28", val_fraction=0.1)  # the report held
    # out 10% of the training data; 'gray28' is the course format ('rgb32' keeps CIFAR10's 32x32 colour)
    train: TrainConfig = TrainConfig(
        lr=1.7e-4, batch_size=50, epochs=25, eval_batch_size=500,
        # 1 on purpose: XLA:CPU runs LeNet5's convolutions inside a scan ~10x slower (re-measured with jaxlib
        # 0.10: 19 against 189 img/s, docs/accelerator.md); 'auto' scans whole epochs on a GPU/TPU.
        cpu_steps_per_call=1)
    # model
    features: tuple[int, ...] = (32, 64)
    hidden: int = 1024
    dropout_rate: float = 0.8  # fraction dropped on fc1 (Keras Dropout(0.8)): the report's "dropout rate of 80%"
    bias_init: float = 0.1  # "bias initialization to a positive constant"
    use_batchnorm: bool = True
    # The report's other choices, as fields so that the ablation (lenet/ablation.py) can change each alone:
    kernel_init: str = "glorot_normal"  # or 'glorot_uniform'
    optimizer: str = "nadam"  # or 'adam' (common.core.state.OPTIMIZERS)
    bn_position: str = "before_pool"  # batch norm before max-pooling (the report's), or 'after_pool'
    # L2 penalties, Keras l2(): weight * sum of squares of each conv kernel and of the fc1 kernel. A tuple
    # trains one model per value, vmapped (see `penalties`).
    conv_l2: float | tuple[float, ...] = 0.01
    fc_l2: float | tuple[float, ...] = 0.005
    filter_epochs: tuple[int, ...] = (0, 1, 2, 5, 10, 25)  # conv1 kernels saved after these epochs

    @classmethod
    def quick(cls) -> LeNetConfig:
        """Shrunk so that a run ends in about a minute on a 2-core CPU (not comparable with the report)."""
        return cls.create(epochs=2, limit=1000)

    def to_dict(self) -> dict:
        """The flat view, without the fields of KNOBS that hold their default: results and unfinished runs made
        before those fields existed record the same config, so they still resume and compare equal."""
        return {k: v for k, v in super().to_dict().items() if k not in KNOBS or v != KNOBS[k]}

    @property
    def penalties(self) -> dict[str, tuple[float, ...]]:
        """The L2 weights, each one value or several (one vmapped model per combination)."""
        return {"conv_l2": as_tuple(self.conv_l2), "fc_l2": as_tuple(self.fc_l2)}

    def validate(self) -> LeNetConfig:
        require(self.data.checks() + self.train.checks() + [
            (0 <= self.dropout_rate < 1, f"dropout rate must be in [0, 1), got {self.dropout_rate}"),
            (min(as_tuple(self.conv_l2) + as_tuple(self.fc_l2)) >= 0, "L2 weights must be non-negative"),
            (self.kernel_init in KERNEL_INITS, f"kernel init must be one of {', '.join(KERNEL_INITS)}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.bn_position in BN_POSITIONS, f"batch-norm position must be one of {', '.join(BN_POSITIONS)}"),
        ])
        return self
