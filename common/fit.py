"""Deprecated: `common.fit.fit` moved (2026-11; now `common.run.fit.fit`) and takes a `Presentation`.

Kept for one release so that notebooks written against the old name keep working; it warns and forwards.
Move with: `fit.fit(model, dataset, train, out, fit.Presentation(title, figure_name, command, progress),
task=..., config=..., penalty_fn=..., penalties=..., on_epoch=...)` (docs/api.md).
"""
from __future__ import annotations

import warnings

from common.run import fit as _fit


def fit(model, dataset, train, out, *, task, config, title, figure_name, penalty_fn=None, penalties=None,
        on_epoch=None, progress=True, command=None):
    """The old signature of `common.run.fit.fit`; warns (DeprecationWarning) and forwards."""
    warnings.warn("common.fit.fit is deprecated and will be removed in the next release; use "
                  "common.run.fit.fit(model, dataset, train, out, Presentation(title, figure_name, ...), ...) "
                  "(docs/api.md)", DeprecationWarning, stacklevel=2)
    show = _fit.Presentation(title, figure_name, command, progress)
    return _fit.fit(model, dataset, train, out, show, task=task, config=config, penalty_fn=penalty_fn,
                    penalties=penalties, on_epoch=on_epoch)
