"""Per-epoch history rows when several models train together: each metric a list, one value per model.

`fit` keeps one row per epoch; these helpers expand it to one row per (epoch, model) for history.csv, split it
into one history per model (curves with a band), average it, and summarise per-model values as mean, sample
std and the values themselves.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def row_value(row: dict, key: str, i: int):
    v = row[key]
    return v[i] if isinstance(v, list) else v


def per_model_rows(history: list[dict], specs: list) -> list[dict]:
    """Expands rows whose metrics are per-model lists into one row per (epoch, model)."""
    if len(specs) == 1:
        return history
    return [{"seed": spec.seed, "lr": spec.lr, **spec.penalty, **{k: row_value(row, k, i) for k in row}}
            for row in history for i, spec in enumerate(specs)]


def model_histories(history: list[dict]) -> list[list[dict]]:
    """The history of each model of a run: rows whose values are per-model lists split by model (one model's
    rows as they are)."""
    n = max((len(v) for row in history for v in row.values() if isinstance(v, list)), default=0)
    if not n:
        return [history]
    return [[{k: (v[i] if isinstance(v, list) else v) for k, v in row.items()} for row in history]
            for i in range(n)]


def mean_rows(history: list[dict]) -> list[dict]:
    return [{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in row.items()} for row in history]


def split_metrics(values: list) -> dict[str, Any]:
    """{'x': mean} (+ sample std, ddof=1, and the per-model values when several models) for each key of
    per-model values."""
    out: dict[str, Any] = {}
    for key in values[0]:
        v = [m[key] for m in values]
        out[key] = None if v[0] is None else float(np.mean(v))
        if len(v) > 1 and v[0] is not None:
            out[f"{key}_std"], out[f"{key}_per_model"] = float(np.std(v, ddof=1)), v
    return out
