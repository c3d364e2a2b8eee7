"""The one source of recurrent-net hyperparameters; the defaults are the report's (Part 3a)."""
from __future__ import annotations

import dataclasses

from common.core.config import DataConfig, FlatFields, TrainConfig, require
from recurrent.cells import CELLS

CELL_TITLES = {"rnn": "Simple RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclasses.dataclass(frozen=True)
class RNNConfig(FlatFields):
    # each of the 28 image rows is one time step of 28 features
    data: DataConfig = DataConfig(dataset="mnist", image_mode="gray28", val_fraction=0.1)
    train: TrainConfig = TrainConfig(
        lr=1e-3, batch_size=32, epochs=10, eval_batch_size=1000,
        # On a CPU 'auto' runs one lax.scan over 50 steps per call (no per-step dispatch or host sync). Same
        # numbers as 1, faster on the 2-core CPU (measured in docs/performance.md, "steps per call").
        cpu_steps_per_call=50)
    # model
    cell: str = "rnn"
    hidden: int = 64
    init_scheme: str = "keras"  # Keras's initialisers, as the report's models had ('flax': Flax's cell defaults)

    @classmethod
    def quick(cls) -> RNNConfig:
        """Shrunk so that a run ends in seconds on a 2-core CPU (not comparable with the report)."""
        return cls.create(epochs=1, limit=2000)

    def validate(self) -> RNNConfig:
        require(self.data.checks() + self.train.checks() + [
            (self.cell in CELLS, f"unknown cell {self.cell!r}; choose from {', '.join(CELLS)}"),
            (self.init_scheme in ("keras", "flax"), f"unknown init scheme {self.init_scheme!r}; choose keras or flax"),
            (self.hidden >= 1, f"hidden size must be positive, got {self.hidden}"),
            (self.data.image_mode == "gray28",
             "the recurrent nets read 28x28 grayscale images (--image-mode gray28)"),
        ])
        return self

    @property
    def name(self) -> str:
        return f"{self.cell}_h{self.hidden}"
