"""Config building blocks shared by the experiments: `TrainConfig`, and flat access to nested configs.

An experiment's config is a frozen dataclass that nests a `data: DataConfig` and a `train: TrainConfig`
beside its model fields, each with the report's values as defaults. Command-line flags, `run.json` and
`metrics.json` use flat names (`--epochs`, `"limit"`); `replace` routes each flat name to the one nested
field that has it, and `flatten` writes the same flat view, so a field's name is its address everywhere.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from common.core.errors import UserError


def as_tuple(value) -> tuple:
    """A hyperparameter is one value or a tuple of them (a vmapped sweep)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


IMAGE_MODES = ("gray28", "rgb32")


# Keras's BatchNormalization defaults, which the report's models used (LeNet5 and the recurrent nets' head).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is prepared (nested as `data` in each experiment's config;
    `common.data.load_dataset` reads it)."""

    dataset: str = "cifar10"
    data_dir: str | None = None  # image-folder tree or dataset file (.npz); overrides the named TFDS dataset
    tfds_data_dir: str | None = None  # defaults to $TFDS_DATA_DIR, then TFDS's own default
    image_mode: str = "gray28"
    val_fraction: float = 0.1
    split_seed: int = 0
    limit: int | None = None  # train on the first `limit` training examples (smoke runs)

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs; see `common.core.config.require`."""
        return [
            (self.limit is None or self.limit >= 1, f"--limit must be positive, got {self.limit}"),
            (0 <= self.val_fraction < 1, f"validation fraction must be in [0, 1), got {self.val_fraction}"),
            (self.image_mode in IMAGE_MODES,
             f"unknown image mode {self.image_mode!r}; choose one of {', '.join(IMAGE_MODES)}"),
        ]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one classifier is trained; each experiment sets its report's values as its default."""

    lr: float | tuple[float, ...] = 1e-3  # a tuple trains one model per rate, vmapped
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    seeds: int = 1  # models trained at once (seed, seed + 1, ...)
    eval_batch_size: int = 500
    # Training steps per compiled call (one lax.scan over them), or 'auto': a whole epoch in chunks on a GPU or
    # TPU, `cpu_steps_per_call` on a CPU (common.core.loop.steps_per_call; metrics.json records the choice).
    steps_per_call: int | str = "auto"
    cpu_steps_per_call: int = 1

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message) pairs; see `require`."""
        return [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.seeds >= 1, f"seeds must be at least 1, got {self.seeds}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be at least 1, got {self.eval_batch_size}"),
            (self.steps_per_call == "auto" or (isinstance(self.steps_per_call, int) and self.steps_per_call >= 1),
             f"steps per call must be 'auto' or at least 1, got {self.steps_per_call}"),
            (self.cpu_steps_per_call >= 1, f"CPU steps per call must be at least 1, got {self.cpu_steps_per_call}"),
            (min(as_tuple(self.lr)) > 0, f"learning rate must be positive, got {self.lr}"),
        ]


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raises UserError with the first failing check's message."""
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _owners(config) -> dict[str, Any]:
    """{flat field name: the (nested) dataclass instance that holds it}; nested configs are entered."""
    owners: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        inner = _owners(value) if dataclasses.is_dataclass(value) else {f.name: config}
        clash = owners.keys() & inner.keys()
        assert not clash, f"{type(config).__name__}: field name(s) {clash} appear twice"
        owners.update(inner)
    return owners


def field_names(config) -> set[str]:
    """Every flat field name of a (nested) config."""
    return set(_owners(config))


def flatten(config) -> dict[str, Any]:
    """The flat view {field: value} of a nested config (what run.json and metrics.json record)."""
    return {name: getattr(owner, name) for name, owner in _owners(config).items()}


def replace(config, **flat):
    """`dataclasses.replace` by flat field names, into whichever nested config holds each one."""
    owners = _owners(config)
    unknown = sorted(flat.keys() - owners.keys())
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field {unknown[0]!r}")
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            mine = {k: v for k, v in flat.items() if k in _owners(value)}
            if mine:
                changes[f.name] = replace(value, **mine)
        elif f.name in flat:
            changes[f.name] = flat[f.name]
    return dataclasses.replace(config, **changes)


def from_flat(config, d: dict):
    """`config` overridden by a flat dict such as run.json's (JSON lists back to tuples; unknown keys ignored)."""
    names = field_names(config)
    return replace(config, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


class FlatFields:
    """Mixin for an experiment's frozen config: construction, replacement and (de)serialisation by flat names."""

    @classmethod
    def create(cls, **flat):
        """The defaults (the report's values) with fields overridden by flat name, e.g. `create(epochs=1)`."""
        return replace(cls(), **flat)

    def replace(self, **flat):
        return replace(self, **flat)

    def to_dict(self) -> dict:
        """The flat view recorded in run.json and metrics.json."""
        return flatten(self)

    @classmethod
    def from_dict(cls, d: dict):
        return from_flat(cls(), d)
