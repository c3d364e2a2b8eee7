"""The one source of recurrent-net hyperparameters; the defaults are the report's (Part 3a)."""
from __future__ import annotations

import dataclasses

from common.config import config_from_dict, require, training_checks
from recurrent.cells import CELL_TYPES as CELLS

CELL_TITLES = {"rnn": "Simple RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclasses.dataclass(frozen=True)
class RNNConfig:
    # data (field names shared with common.data.DataConfig)
    dataset: str = "mnist"
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    image_mode: str = "gray28"  # each of the 28 rows is one time step of 28 features
    val_fraction: float = 0.1
    split_seed: int = 0
    limit: int | None = None
    # model
    cell: str = "rnn"
    hidden: int = 64
    init_scheme: str = "keras"  # Keras's initialisers, as the report's models had ('flax': Flax's cell defaults)
    # optimisation
    lr: float | tuple[float, ...] = 1e-3  # a tuple trains one model per rate, vmapped
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    seeds: int = 1  # models trained at once with jax.vmap (seed, seed + 1, ...)
    eval_batch_size: int = 1000
    # Training steps per compiled call (one lax.scan over them: no per-step dispatch or host sync). Same
    # numbers as 1; on the 2-core CPU RNN-64 trains 19% faster, LSTM-128 13%.
    steps_per_call: int = 50

    def validate(self) -> "RNNConfig":
        require(training_checks(self) + [
            (self.cell in CELLS, f"unknown cell {self.cell!r}; choose from {', '.join(CELLS)}"),
            (self.init_scheme in ("keras", "flax"), f"unknown init scheme {self.init_scheme!r}; choose keras or flax"),
            (self.hidden >= 1, f"hidden size must be positive, got {self.hidden}"),
            (self.image_mode == "gray28", "the recurrent nets read 28x28 grayscale images (--image-mode gray28)"),
        ])
        return self

    @property
    def name(self) -> str:
        return f"{self.cell}_h{self.hidden}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RNNConfig":
        return config_from_dict(cls, d)
