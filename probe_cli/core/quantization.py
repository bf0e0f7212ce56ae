"""Quantized tensors (TensorFlow Lite int8/uint8/int16): how a stored integer maps to its real value.

Pure NumPy. The archive stores the integers with their ``scale``/``zero_point`` attributes and
readers see the real values; ``--stats-only`` summarizes the real values too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The dtype of a quantized tensor's real values (what TensorFlow Lite's DEQUANTIZE produces).
REAL_DTYPE = "float32"


@dataclass(frozen=True)
class Quantization:
    """How a stored integer maps to its real value: ``scale * (q - zero_point)``, per axis when the
    arrays have more than one entry (along ``axis``)."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int

    @property
    def per_axis(self) -> bool:
        return self.scale.size > 1 or self.zero_point.size > 1


def _numbers(value: Any, dtype: type) -> np.ndarray | None:
    if isinstance(value, str):  # written as JSON by another tool
        try:
            value = json.loads(value)
        except ValueError:
            return None
    try:
        array: np.ndarray = np.asarray(value, dtype=dtype).ravel()
    except (TypeError, ValueError):
        return None
    return array if array.size else None


def quantization_of(attrs: Mapping[str, Any]) -> Quantization | None:
    """The quantization a tensor's attributes record (``scale``, ``zero_point``, ``quantized_dimension``),
    or None for a tensor stored as its real values."""
    if "scale" not in attrs:
        return None
    scale = _numbers(attrs["scale"], np.float64)
    zero_point = _numbers(attrs.get("zero_point", 0), np.int64)
    if scale is None or zero_point is None:
        return None
    try:
        axis = int(attrs.get("quantized_dimension", 0) or 0)
    except (TypeError, ValueError):
        axis = 0
    return Quantization(scale, zero_point, axis)


def dequantized(values: np.ndarray, attrs: Mapping[str, Any] | Quantization | None, rows: Any = ()) -> np.ndarray:
    """The real values of stored quantized integers, ``scale * (q - zero_point)`` computed in float64 and
    rounded to float32 as TensorFlow Lite's DEQUANTIZE does; ``values`` unchanged when ``attrs`` record
    no quantization (or the values are not integers).

    ``rows``: the slice of axis 0 that ``values`` are (as :func:`row_slices` yields), which picks the
    scales when the quantization runs along axis 0.
    """
    quantization = attrs if isinstance(attrs, Quantization) or attrs is None else quantization_of(attrs)
    values = np.asarray(values)
    if quantization is None or values.dtype.kind not in "iu":
        return values
    scale, zero_point = quantization.scale, quantization.zero_point
    if quantization.per_axis and values.ndim:
        axis = quantization.axis if 0 <= quantization.axis < values.ndim else 0
        count = max(scale.size, zero_point.size)
        if axis == 0 and isinstance(rows, slice) and values.shape[0] != count:
            scale = scale[rows] if scale.size > 1 else scale
            zero_point = zero_point[rows] if zero_point.size > 1 else zero_point
        shape = [1] * values.ndim
        shape[axis] = -1
        if scale.size > 1:
            scale = scale.reshape(shape)
        if zero_point.size > 1:
            zero_point = zero_point.reshape(shape)
    else:
        scale, zero_point = scale[:1].reshape(()), zero_point[:1].reshape(())
    return (scale * (values.astype(np.int64) - zero_point)).astype(np.float32)
