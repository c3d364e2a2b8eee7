"""What the step needs from the data, beside it: pixels as floats, each epoch's seeded order, padded splits.

numpy only (JAX is imported where a step uses it), so the data sources can share these without starting JAX.
"""
from __future__ import annotations

import numpy as np

# Each uint8 value's float32 in [0, 1], divided here by numpy: a jitted x / 255 becomes x * (1 / 255), which
# rounds some pixels differently, so a step looks its pixels up in this table instead (same numbers everywhere).
PIXEL_FLOATS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def to_float(images):
    """uint8 pixels [...] (numpy, or JAX inside a step) -> float32 in [0, 1]; float input as it is."""
    if images.dtype != np.uint8:
        return images
    if isinstance(images, np.ndarray):
        return images.astype(np.float32) / np.float32(255.0)
    import jax.numpy as jnp  # here: the data sources import this module without starting JAX

    return jnp.asarray(PIXEL_FLOATS)[images]


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of one epoch: int32 [n // batch_size, batch_size] indices from a permutation seeded
    by (seed, epoch). The short last batch is dropped (a different one each epoch), which keeps a single
    compiled shape and batch-norm statistics over full batches."""
    if n < batch_size:
        from common.core.errors import DataError  # an exception class only

        raise DataError(f"the training split has {n} examples, fewer than the batch size {batch_size}")
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[: n // batch_size * batch_size].reshape(-1, batch_size).astype(np.int32)


def padded(images: np.ndarray, labels: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split zero-padded to a multiple of `multiple` examples, with its mask (1 for the real ones): every
    evaluation batch then has one compiled shape, and the metrics count each real example exactly once."""
    n = len(labels)
    pad = -n % multiple if n else 0
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return images, labels, mask
