"""Summary statistics of a tensor, shared by ``dump``'s table and the JSON output."""

from __future__ import annotations

from typing import Any

import numpy as np


def _mean_std(flat: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """Mean and std in float64, a chunk at a time, so a 2 GB float32 tensor is never copied whole."""
    mean = float(flat.mean(dtype=np.float64))
    squares = 0.0
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk].astype(np.float64) - mean
        squares += float(np.dot(part, part))
    return mean, float(np.sqrt(squares / flat.size))


def _mean(flat: np.ndarray, block: int = 4096) -> float:
    """Mean of a float32 vector: float32 sums of blocks (NumPy sums pairwise), then float64 across them.

    Twice as fast as ``mean(dtype=float64)``, which converts every value first
    (``dump`` computes it for every stored tensor); the error stays near float32
    rounding of the values' scale. Only called on finite values.
    """
    whole = flat.size - flat.size % block
    total = float(flat[:whole].reshape(-1, block).sum(axis=1).sum(dtype=np.float64)) if whole else 0.0
    total += float(flat[whole:].sum(dtype=np.float64))
    if not np.isfinite(total):  # a block's float32 sum overflowed (values near 3.4e38)
        return float(flat.mean(dtype=np.float64))
    return total / flat.size


def summarize(array: np.ndarray, with_std: bool = True) -> dict[str, Any]:
    """min/max/mean/std over the finite values, and how many are NaN or infinite.

    Non-numeric tensors (strings) get None for the statistics. ``with_std=False``
    skips the one statistic that needs a second pass over the data (``dump``
    reports min/max/mean; ``show`` adds std). float64 values so large that their
    sums overflow (from about 1e154 for the std) are scaled by the largest
    magnitude first, so the statistics stay finite whenever they can be.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = _summarize(np.asarray(array), with_std)
        if out["min"] is not None and not all(np.isfinite(out[k]) for k in ("mean", "std") if out[k] is not None):
            out.update(_scaled(np.asarray(array), out, with_std))
        return out


def _scaled(array: np.ndarray, out: dict[str, Any], with_std: bool) -> dict[str, Any]:
    """mean (and std) of the finite values computed on ``values / s``, s the largest magnitude."""
    values = array.astype(np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    scale = max(abs(out["min"]), abs(out["max"]))
    if scale == 0 or values.size == 0:
        return {}
    scaled = values / scale
    result = {"mean": float(scaled.mean()) * scale}
    if with_std:
        result["std"] = float(scaled.std()) * scale
    return result


def _summarize(array: np.ndarray, with_std: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"min": None, "max": None, "mean": None, "std": None, "nan": 0, "inf": 0}
    if array.dtype.kind not in "biuf" or array.size == 0:
        return out
    if array.dtype in (np.float32, np.float64):
        low, high = array.min(), array.max()
        if np.isfinite(low) and np.isfinite(high):  # no NaN/Inf: no masks, no float64 copy
            out["min"], out["max"] = float(low), float(high)
            if with_std:
                out["mean"], out["std"] = _mean_std(array.reshape(-1))
            elif array.dtype == np.float32:
                out["mean"] = _mean(array.reshape(-1))
            else:
                out["mean"] = float(array.mean())
            return out
    values = array.astype(np.float64) if array.dtype.kind in "bf" and array.dtype != np.float64 else array
    if array.dtype.kind == "f":
        nan = np.isnan(values)
        inf = np.isinf(values)
        out["nan"], out["inf"] = int(nan.sum()), int(inf.sum())
        if out["nan"] or out["inf"]:
            values = values[~(nan | inf)]
        if values.size == 0:
            return out
    out["min"] = float(values.min())
    out["max"] = float(values.max())
    out["mean"] = float(values.mean(dtype=np.float64))
    if with_std:
        out["std"] = float(values.std(dtype=np.float64))
    return out


class RunningStats:
    """:func:`summarize` over a tensor that arrives batch by batch, without keeping the batches.

    Batches are merged with Chan et al.'s pairwise update of (count, mean, M2),
    which stays accurate when the mean is large against the spread.
    """

    def __init__(self, with_std: bool = True) -> None:
        self.with_std = with_std
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.nan = 0
        self.inf = 0
        self.numeric = True

    def update(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            self.numeric = False
            return
        part = summarize(array, self.with_std)
        self.nan += part["nan"]
        self.inf += part["inf"]
        if part["min"] is None:
            return
        n = int(array.size) - part["nan"] - part["inf"]
        total = self.count + n
        delta = part["mean"] - self.mean
        # a weighted sum of two finite means cannot overflow, as mean + delta * n / total can
        self.mean = self.mean * (self.count / total) + part["mean"] * (n / total)
        if self.with_std:
            # products, not **: float ** raises OverflowError where * gives inf (and inf * 0 is NaN);
            # a spread beyond about 1e154 gives an infinite std
            cross = delta * delta * (self.count * n / total) if self.count else 0.0
            self.m2 += part["std"] * part["std"] * n + cross
        self.count = total
        self.low = part["min"] if self.low is None else min(self.low, part["min"])
        self.high = part["max"] if self.high is None else max(self.high, part["max"])

    def result(self) -> dict[str, Any]:
        if not self.numeric or self.count == 0:
            return {"min": None, "max": None, "mean": None, "std": None, "nan": self.nan, "inf": self.inf}
        return {
            "min": self.low,
            "max": self.high,
            "mean": self.mean,
            "std": float(np.sqrt(self.m2 / self.count)) if self.with_std else None,
            "nan": self.nan,
            "inf": self.inf,
        }
