"""The distribution of a tensor's values over many samples, in a form that merges exactly.

``dump --stats-only`` computes one :class:`Distribution` per batch inside the graph execution
(see :mod:`probe_cli.backends.tfgraph`), or with :func:`of_array` where values come back as arrays,
and merges them: over batches, and over shards in ``probe merge``. Moments merge with Chan et
al.'s pairwise update of (count, mean, M2); histograms of the same bins add. Pure NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

DEFAULT_BINS = 64


@dataclass(frozen=True)
class Moments:
    """count, min, max, mean and M2 (sum of squared deviations) of finite values; arrays for per-channel."""

    count: Any
    low: Any
    high: Any
    mean: Any
    m2: Any

    def merge(self, other: Moments) -> Moments:
        count = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(count > 0, other.count / np.where(count > 0, count, 1), 0.0)
            delta = other.mean - self.mean
            mean = self.mean + delta * share
            m2 = self.m2 + other.m2 + delta * delta * self.count * share
        return Moments(count, np.fmin(self.low, other.low), np.fmax(self.high, other.high), mean, m2)

    @property
    def std(self) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.where(self.count > 0, self.m2 / np.where(self.count > 0, self.count, 1), np.nan))


@dataclass(frozen=True)
class Distribution:
    """What ``--stats-only`` stores for one tensor (``/stats/<name>``; docs/archive-format.md)."""

    #: every element seen, finite or not
    size: int
    nan: int
    inf: int
    zeros: int
    moments: Moments
    #: histogram of finite values: [below lo, bins..., above hi]; the bins split [lo, hi] evenly
    hist_range: tuple[float, float]
    histogram: np.ndarray
    #: per channel (the last axis) over finite values; None below rank 2
    channels: Moments | None = field(default=None)

    def merge(self, other: Distribution) -> Distribution:
        if self.hist_range != other.hist_range or self.histogram.shape != other.histogram.shape:
            raise ValueError(f"histograms over {self.hist_range} and {other.hist_range} do not add")
        if (self.channels is None) != (other.channels is None) or (
            self.channels is not None
            and other.channels is not None
            and np.shape(self.channels.count) != np.shape(other.channels.count)
        ):
            raise ValueError("per-channel statistics of different channel counts do not merge")
        channels = None
        if self.channels is not None and other.channels is not None:
            channels = self.channels.merge(other.channels)
        return replace(
            self,
            size=self.size + other.size,
            nan=self.nan + other.nan,
            inf=self.inf + other.inf,
            zeros=self.zeros + other.zeros,
            moments=self.moments.merge(other.moments),
            histogram=self.histogram + other.histogram,
            channels=channels,
        )

    def summary(self) -> dict[str, Any]:
        """min/max/mean/std and NaN/Inf counts, as ``show`` and ``dump`` print them."""
        m = self.moments
        known = int(m.count) > 0
        return {
            "min": float(m.low) if known else None,
            "max": float(m.high) if known else None,
            "mean": float(m.mean) if known else None,
            "std": float(m.std) if known else None,
            "nan": int(self.nan),
            "inf": int(self.inf),
        }

    @property
    def zero_share(self) -> float:
        return self.zeros / self.size if self.size else 0.0

    def bin_edges(self) -> np.ndarray:
        """The edges of the bins between the two overflow bins: one more than there are of them."""
        return np.linspace(self.hist_range[0], self.hist_range[1], len(self.histogram) - 1)


def _moments(values: np.ndarray, axis: tuple[int, ...] | None) -> Moments:
    """Moments of the finite entries of ``values`` (float64) reduced over ``axis``."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    safe = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, safe.sum(axis=axis) / np.where(count > 0, count, 1), 0.0)
        deviation = np.where(finite, values - mean, 0.0)  # a channel's mean broadcasts along the last axis
    m2 = (deviation * deviation).sum(axis=axis)
    low = np.where(finite, values, np.inf).min(axis=axis, initial=np.inf)
    high = np.where(finite, values, -np.inf).max(axis=axis, initial=-np.inf)
    return Moments(count, low, high, mean, m2)


def resolve_range(hist_range: tuple[float, float] | None, low: float, high: float) -> tuple[float, float]:
    """The histogram's range: the given one, else this (first) batch's finite min and max, never empty."""
    if hist_range is not None:
        return hist_range
    if not np.isfinite(low) or not np.isfinite(high):
        return (0.0, 1.0)
    return (float(low), float(high)) if high > low else (float(low) - 0.5, float(high) + 0.5)


def of_array(
    array: np.ndarray, hist_range: tuple[float, float] | None = None, bins: int = DEFAULT_BINS
) -> Distribution:
    """The distribution of one batch of values, computed with NumPy (the in-graph reductions' reference)."""
    values = np.asarray(array).astype(np.float64)
    finite = np.isfinite(values)
    whole = _moments(values, None)
    lo, hi = resolve_range(hist_range, float(whole.low), float(whole.high))
    kept = values[finite]
    picked = kept[(kept >= lo) & (kept <= hi)]
    position = np.minimum(np.floor((picked - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)  # hi: last bin
    inside = np.bincount(position, minlength=bins)
    histogram = np.concatenate([[np.count_nonzero(kept < lo)], inside, [np.count_nonzero(kept > hi)]]).astype(np.int64)
    channels = _moments(values, tuple(range(values.ndim - 1))) if values.ndim >= 2 else None
    return Distribution(
        size=int(values.size),
        nan=int(np.isnan(values).sum()),
        inf=int(np.isinf(values).sum()),
        zeros=int(np.count_nonzero(values == 0)),
        moments=Moments(int(whole.count), float(whole.low), float(whole.high), float(whole.mean), float(whole.m2)),
        hist_range=(lo, hi),
        histogram=histogram,
        channels=channels,
    )
