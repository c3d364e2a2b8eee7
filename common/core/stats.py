"""Streaming distribution statistics: moments, zero counts and a fixed-bin histogram, batch by batch.

The activations of a conv layer over a whole test split can be far larger than memory, so every statistic
here is built from per-batch summaries that merge exactly:

  * `batch_moments` (jitted, float32, on the device) reduces one batch to per-channel count, mean and the
    central moment sums M2, M3, M4 (sum of (x - mean)^k), plus zeros, negatives, min and max.
  * `merge_moments` (numpy, float64, on the host) combines two such summaries with the pairwise update of
    Chan et al. / Pebay (2008). It is the numerically stable form of accumulating sum x, sum x^2, sum x^3 and
    sum x^4: raw power sums cancel catastrophically in float32 when |mean| >> std, central sums do not.
  * `batch_histogram` counts values in fixed bins over a range known in advance (a first cheap min/max
    pass), so counts simply add; `ks_normal_from_histogram` turns the merged histogram into the
    Kolmogorov-Smirnov distance to the normal with the same mean and std, bracketed by a lower and an upper
    bound because values inside a bin are not kept.

Skewness and excess kurtosis are the population (biased) estimators, the same as `scipy.stats.skew` and
`scipy.stats.kurtosis` with their defaults.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

# Per-channel summary keys returned by `batch_moments`.
MOMENT_KEYS = ("count", "mean", "m2", "m3", "m4", "zeros", "negatives", "min", "max")


class Moments(NamedTuple):
    """Central-moment summary of a set of values (arrays broadcast elementwise, e.g. one per channel)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray  # sum of (x - mean)^2
    m3: np.ndarray
    m4: np.ndarray


# ------------------------------------------------------------------------------------------ device side


def batch_moments(x: jax.Array, mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-channel summary of one batch, jit-friendly.

    x: [batch, ..., channels]; mask: [batch] with 1 for real examples and 0 for padding (None: all real).
    Returns a dict of [channels] arrays with the keys in MOMENT_KEYS; counts are float32 (exact up to 2^24
    values per channel and batch), min/max ignore padding (+inf/-inf when a channel has no values).
    """
    x = x.astype(jnp.float32)
    if mask is None:
        mask = jnp.ones(x.shape[0], jnp.float32)
    m = jnp.broadcast_to(mask.astype(jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    axes = tuple(range(x.ndim - 1))
    count = jnp.sum(m, axis=axes)
    mean = jnp.sum(x * m, axis=axes) / jnp.maximum(count, 1.0)
    # Two passes over the batch (mean, then deviations) keep the float32 sums accurate.
    d = (x - mean) * m
    d2 = d * d
    real = m > 0
    return {
        "count": count,
        "mean": mean,
        "m2": jnp.sum(d2, axis=axes),
        "m3": jnp.sum(d2 * d, axis=axes),
        "m4": jnp.sum(d2 * d2, axis=axes),
        "zeros": jnp.sum(jnp.where(real & (x == 0), 1.0, 0.0), axis=axes),
        "negatives": jnp.sum(jnp.where(real & (x < 0), 1.0, 0.0), axis=axes),
        "min": jnp.min(jnp.where(real, x, jnp.inf), axis=axes),
        "max": jnp.max(jnp.where(real, x, -jnp.inf), axis=axes),
    }


def batch_min_max(x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(min, max) over every real value of x [batch, ...]: the cheap first pass that fixes histogram ranges."""
    if mask is None:
        mask = jnp.ones(x.shape[0], jnp.float32)
    real = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)) > 0, x.shape)
    return jnp.min(jnp.where(real, x, jnp.inf)), jnp.max(jnp.where(real, x, -jnp.inf))


def batch_histogram(x: jax.Array, lo: jax.Array, hi: jax.Array, bins: int,
                    mask: jax.Array | None = None) -> jax.Array:
    """Counts of the real values of x [batch, ...] in `bins` equal bins over [lo, hi] -> int32 [bins].

    Bins are half-open [e_k, e_k+1) except the last, which also holds hi (numpy's convention). Values
    outside [lo, hi] are clipped into the end bins; the range comes from a min/max pass, so there are none.
    """
    width = (hi - lo) / bins
    idx = jnp.clip(jnp.floor((x - lo) / width).astype(jnp.int32), 0, bins - 1)
    if mask is not None:
        real = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)) > 0, x.shape)
        idx = jnp.where(real, idx, bins)  # padding goes to an extra bin that is dropped
    return jnp.bincount(idx.reshape(-1), length=bins + 1)[:bins].astype(jnp.int32)


# -------------------------------------------------------------------------------------------- host side


def to_moments(summary: dict[str, Any]) -> Moments:
    """The moment part of a `batch_moments` result, as float64 numpy arrays."""
    return Moments(*(np.asarray(summary[k], np.float64) for k in Moments._fields))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Exact combination of two central-moment summaries (Pebay 2008, eqs. 2.1-2.3), elementwise."""
    na, nb = a.count, b.count
    n = na + nb
    safe_n = np.where(n > 0, n, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * nb / safe_n
    m2 = a.m2 + b.m2 + delta**2 * na * nb / safe_n
    m3 = (a.m3 + b.m3 + delta**3 * na * nb * (na - nb) / safe_n**2
          + 3.0 * delta * (na * b.m2 - nb * a.m2) / safe_n)
    m4 = (a.m4 + b.m4 + delta**4 * na * nb * (na * na - na * nb + nb * nb) / safe_n**3
          + 6.0 * delta**2 * (na * na * b.m2 + nb * nb * a.m2) / safe_n**2
          + 4.0 * delta * (na * b.m3 - nb * a.m3) / safe_n)
    return Moments(n, mean, m2, m3, m4)


def reduce_moments(parts: Iterable[Moments]) -> Moments:
    """Merges a sequence of summaries into one (left to right)."""
    total = None
    for part in parts:
        total = part if total is None else merge_moments(total, part)
    if total is None:
        raise ValueError("no summaries to merge")
    return total


def pool_channels(m: Moments) -> Moments:
    """Merges a per-channel summary ([channels] arrays) into one over all channels (scalars)."""
    return reduce_moments(Moments(*(f[c] for f in m)) for c in range(np.shape(m.count)[0]))


def describe(m: Moments) -> dict[str, np.ndarray]:
    """mean, std, skewness and excess kurtosis (population estimators, scipy's defaults).

    Where the values are constant (M2 = 0) skewness and kurtosis are undefined and come out as NaN, as in
    scipy; std is then 0.
    """
    n = np.asarray(m.count, np.float64)
    safe_n = np.where(n > 0, n, 1.0)
    var = m.m2 / safe_n
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(m.m2 > 0, np.sqrt(safe_n) * m.m3 / np.power(np.maximum(m.m2, 1e-300), 1.5), np.nan)
        kurt = np.where(m.m2 > 0, safe_n * m.m4 / np.maximum(m.m2, 1e-300) ** 2 - 3.0, np.nan)
    return {"mean": m.mean, "std": np.sqrt(var), "skewness": skew, "excess_kurtosis": kurt}


def normal_cdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """CDF of N(mean, std^2); a step at the mean when std is 0."""
    x = np.asarray(x, np.float64)
    if not std > 0:
        return (x >= mean).astype(np.float64)
    return special.ndtr((x - mean) / std)


def ks_normal_from_histogram(counts: np.ndarray, lo: float, hi: float, mean: float, std: float,
                             negatives: float | None = None, zeros: float | None = None) -> tuple[float, float]:
    """Bounds (lower, upper) on the KS distance sup_x |F_n(x) - Phi((x - mean) / std)| from binned data.

    counts: [bins] over [lo, hi] as `batch_histogram` makes them. The empirical CDF is known exactly at
    the bin edges (from the left), which gives the lower bound; inside a bin it can rise anywhere between
    its two edge values, which gives the upper bound. The two differ by at most one bin's mass plus the
    normal's mass over one bin width. With the counts of negatives and of exact zeros, the jump at 0 (the
    ReLU's point mass, usually the largest deviation) is evaluated exactly.
    """
    counts = np.asarray(counts, np.float64)
    n = counts.sum()
    if n == 0:
        return float("nan"), float("nan")
    bins = len(counts)
    edges = np.linspace(lo, hi, bins + 1)
    below = np.concatenate([[0.0], np.cumsum(counts)]) / n  # F_n(e_k^-) for k < bins; 1 at the top edge
    cdf = normal_cdf(edges, mean, std)
    lower = float(np.max(np.abs(below - cdf)))
    upper = float(max(np.max(below[1:] - cdf[:-1]), np.max(cdf[1:] - below[:-1]), lower))
    if negatives is not None and zeros is not None and lo <= 0.0 <= hi:
        f0 = float(normal_cdf(np.array([0.0]), mean, std)[0])
        at_zero = max(abs(negatives / n - f0), abs((negatives + zeros) / n - f0))
        lower = max(lower, at_zero)
        upper = max(upper, lower)
    return lower, upper


def histogram_edges(lo: float, hi: float, bins: int) -> tuple[float, float, np.ndarray]:
    """A usable range and its edges: widens a degenerate range (hi <= lo, e.g. a dead layer) by 1."""
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError(f"histogram range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi, np.linspace(lo, hi, bins + 1)


class StreamingStats:
    """Accumulates per-batch summaries of one set of values (e.g. one layer at one stage).

    `add(summary, hist)` takes the outputs of `batch_moments` and `batch_histogram` for a batch (device
    arrays are fine: they are read only in `result`, so the device keeps running ahead). `result()` merges
    them in float64 and returns plain floats.
    """

    def __init__(self, lo: float, hi: float, bins: int):
        self.lo, self.hi, self.edges = histogram_edges(lo, hi, bins)
        self.bins = bins
        self._summaries: list[dict] = []
        self._hist: list = []

    def add(self, summary: dict[str, Any], hist: Any) -> None:
        self._summaries.append(summary)
        self._hist.append(hist)

    def histogram(self) -> np.ndarray:
        return np.sum([np.asarray(h, np.int64) for h in self._hist], axis=0)

    def result(self, keep_bins: int | None = None) -> dict[str, Any]:
        """Merged statistics as plain floats (None where undefined) and the histogram, summed down to
        `keep_bins` bins (a divisor of the bin count) for storage; the KS bounds use every bin."""
        summaries = jax.device_get(self._summaries)
        per_channel = reduce_moments(to_moments(s) for s in summaries)
        pooled = pool_channels(per_channel)
        d = describe(pooled)
        ch = describe(per_channel)
        count = float(pooled.count)
        zeros = float(sum(np.sum(s["zeros"]) for s in summaries))
        negatives = float(sum(np.sum(s["negatives"]) for s in summaries))
        hist = self.histogram()
        ks, ks_upper = ks_normal_from_histogram(hist, self.lo, self.hi, float(d["mean"]), float(d["std"]),
                                                negatives, zeros)
        return {
            "count": int(count),
            "mean": _num(d["mean"]),
            "std": _num(d["std"]),
            "min": _num(min(np.min(s["min"]) for s in summaries)),
            "max": _num(max(np.max(s["max"]) for s in summaries)),
            "zero_fraction": zeros / count if count else None,
            "skewness": _num(d["skewness"]),
            "excess_kurtosis": _num(d["excess_kurtosis"]),
            "ks_normal": _num(ks),
            "ks_normal_upper": _num(ks_upper),
            # Shape of each channel on its own: an affine map per channel (batch norm at inference) leaves
            # it unchanged (skewness flips sign where the scale is negative), so comparing these with the
            # pooled values shows what batch norm really changed: how the channels line up.
            "channel_median_skewness": _median_finite(ch["skewness"]),
            "channel_median_excess_kurtosis": _median_finite(ch["excess_kurtosis"]),
            "channel_std_of_means": _num(np.std(per_channel.mean)),
            "histogram": {"lo": self.lo, "hi": self.hi, "counts": _rebin(hist, keep_bins or self.bins).tolist()},
        }


def _median_finite(values: np.ndarray) -> float | None:
    finite = np.asarray(values)[np.isfinite(values)]
    return _num(np.median(finite)) if finite.size else None


def _rebin(counts: np.ndarray, bins: int) -> np.ndarray:
    if len(counts) % bins:
        raise ValueError(f"cannot sum {len(counts)} bins into {bins}")
    return counts.reshape(bins, -1).sum(axis=1)


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities (undefined statistics) become None."""
    x = float(x)
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------ intervals over N models


T_CONFIDENCE = 0.95  # two-sided coverage of `t_interval`


def t_quantile(n: int, confidence: float = T_CONFIDENCE) -> float:
    """Student's t quantile t((1 + confidence) / 2, n - 1) for n >= 2 values (12.706 for n = 2)."""
    if n < 2:
        raise ValueError(f"a t quantile needs at least 2 values, got {n}")
    from scipy import stats as sps  # the module's other users need only scipy.special

    return float(sps.t.ppf(0.5 + confidence / 2, n - 1))


def t_interval(values, confidence: float = T_CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sample std with ddof=1, low, high) of `values`, the interval mean +- t(0.975, N-1) std / sqrt(N):
    with N values from independent seeds it covers the true mean 95% of the time (normal errors). One value:
    (value, 0, value, value), the point value, no interval."""
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no values")
    mean = float(v.mean())
    if v.size == 1:
        return mean, 0.0, mean, mean
    std = float(v.std(ddof=1))
    half = t_quantile(v.size, confidence) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half
