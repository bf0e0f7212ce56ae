"""The distribution of a tensor's values over many samples, in a form that merges exactly.

``dump --stats-only`` computes one :class:`Distribution` per batch inside the graph execution
(see :mod:`probe_cli.backends.tfgraph`), or with :func:`of_array` where values come back as arrays,
and merges them: over batches, and over shards in ``probe merge``. Moments merge with Chan et
al.'s pairwise update of (count, mean, M2); counts and histograms of the same bins add. The
histogram and the per-channel moments are optional (``--histogram``, ``--channels``): they cost
more than everything else together (docs/performance.md). Pure NumPy.
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
    #: -Inf and +Inf together (``neg_inf`` of them negative)
    inf: int
    zeros: int
    moments: Moments
    #: histogram of finite values: [below lo, bins..., above hi]; the bins split [lo, hi] evenly.
    #: None when not asked for (``--histogram``)
    hist_range: tuple[float, float] | None = None
    histogram: np.ndarray | None = None
    #: per channel (the last axis) over finite values; None below rank 2 or when not asked for
    channels: Moments | None = field(default=None)
    #: finite values below zero, and -Inf values; None in archives written before probe counted them
    negative: int | None = None
    neg_inf: int | None = None

    @property
    def positive(self) -> int | None:
        """Finite values above zero (FULL_HEALTH's third count beside negative and zero)."""
        return None if self.negative is None else int(self.moments.count) - self.negative - self.zeros

    @property
    def pos_inf(self) -> int | None:
        return None if self.neg_inf is None else self.inf - self.neg_inf

    def merge(self, other: Distribution) -> Distribution:
        if (self.histogram is None) != (other.histogram is None) or (
            self.histogram is not None
            and other.histogram is not None
            and (self.hist_range != other.hist_range or self.histogram.shape != other.histogram.shape)
        ):
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
            histogram=None if self.histogram is None or other.histogram is None else self.histogram + other.histogram,
            channels=channels,
            negative=_add(self.negative, other.negative),
            neg_inf=_add(self.neg_inf, other.neg_inf),
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
        if self.hist_range is None or self.histogram is None:
            return np.zeros(0)
        return np.linspace(self.hist_range[0], self.hist_range[1], len(self.histogram) - 1)


def _add(a: int | None, b: int | None) -> int | None:
    """A count of two parts; unknown when either part lacks it (an archive from before it was counted)."""
    return None if a is None or b is None else a + b


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
    array: np.ndarray,
    hist_range: tuple[float, float] | None = None,
    bins: int = DEFAULT_BINS,
    *,
    histogram: bool = True,
    channels: bool = True,
) -> Distribution:
    """The distribution of one batch of values, computed with NumPy (the in-graph reductions' reference);
    the histogram and the per-channel moments only when asked for."""
    values = np.asarray(array).astype(np.float64)
    finite = np.isfinite(values)
    whole = _moments(values, None)
    kept = values[finite]
    counts, span = None, None
    if histogram:
        lo, hi = span = resolve_range(hist_range, float(whole.low), float(whole.high))
        picked = kept[(kept >= lo) & (kept <= hi)]
        position = np.minimum(np.floor((picked - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)  # hi: last bin
        inside = np.bincount(position, minlength=bins)
        counts = np.concatenate([[np.count_nonzero(kept < lo)], inside, [np.count_nonzero(kept > hi)]]).astype(np.int64)
    return Distribution(
        size=int(values.size),
        nan=int(np.isnan(values).sum()),
        inf=int(np.isinf(values).sum()),
        zeros=int(np.count_nonzero(values == 0)),
        moments=Moments(int(whole.count), float(whole.low), float(whole.high), float(whole.mean), float(whole.m2)),
        hist_range=span,
        histogram=counts,
        channels=_moments(values, tuple(range(values.ndim - 1))) if channels and values.ndim >= 2 else None,
        negative=int(np.count_nonzero(kept < 0)),
        neg_inf=int(np.count_nonzero(values == -np.inf)),
    )
