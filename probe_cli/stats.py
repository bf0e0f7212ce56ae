"""Summary statistics of a tensor, shared by ``dump``'s table and the JSON output."""

from __future__ import annotations

from typing import Any

import numpy as np


def summarize(array: np.ndarray) -> dict[str, Any]:
    """min/max/mean/std over the finite values, and how many are NaN or infinite.

    Non-numeric tensors (strings) get None for the statistics.
    """
    array = np.asarray(array)
    out: dict[str, Any] = {"min": None, "max": None, "mean": None, "std": None, "nan": 0, "inf": 0}
    if array.dtype.kind not in "biuf" or array.size == 0:
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
    out["std"] = float(values.std(dtype=np.float64))
    return out
