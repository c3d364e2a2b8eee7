"""Checks shared by the experiments' config dataclasses (each experiment keeps its own defaults)."""
from __future__ import annotations

import dataclasses
from typing import Iterable

from common.errors import UserError


def as_tuple(value) -> tuple[float, ...]:
    """A hyperparameter is one value or a tuple of them (a vmapped sweep)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def config_from_dict(cls, d: dict):
    """A config dataclass from its `to_dict()` (JSON turns tuples into lists; unknown keys are ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def training_checks(config) -> list[tuple[bool, str]]:
    """(condition, message) for the fields every training config has."""
    return [
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (config.seeds >= 1, f"seeds must be at least 1, got {config.seeds}"),
        (config.batch_size >= 1, f"batch size must be at least 1, got {config.batch_size}"),
        (config.eval_batch_size >= 1, f"eval batch size must be at least 1, got {config.eval_batch_size}"),
        (config.steps_per_call >= 1, f"steps per call must be at least 1, got {config.steps_per_call}"),
        (min(as_tuple(config.lr)) > 0, f"learning rate must be positive, got {config.lr}"),
        (config.limit is None or config.limit >= 1, f"--limit must be positive, got {config.limit}"),
        (0 <= config.val_fraction < 1, f"validation fraction must be in [0, 1), got {config.val_fraction}"),
    ]


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raises UserError with the first failing check's message."""
    for ok, message in checks:
        if not ok:
            raise UserError(message)
