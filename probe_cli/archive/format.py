"""The archive's layout: group names and the attributes every stored tensor carries.

See docs/archive-format.md. Shared by the writer and the reader, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from probe_cli.core.distribution import Distribution, Moments
from probe_cli.core.types import Feed, TensorInfo

FORMAT_VERSION = 1
TENSORS = "tensors"
INPUTS = "inputs"
#: ``dump --stats-only``: where each input came from (JSON), as ``/inputs`` records it beside the values elsewhere
INPUT_SOURCES = "input_sources"
#: ``dump --stats-only``: one group per tensor holding its distribution instead of its values
STATS = "stats"
#: The model's dataflow (a ModelGraph as JSON), so ``diff`` pairs archives as ``compare`` pairs models
GRAPH = "graph"
#: Per-channel arrays of a distribution, as stored under ``/stats/<name>/`` (see :func:`distribution_arrays`).
CHANNEL_FIELDS = ("count", "min", "max", "mean", "m2")


def input_attrs(feed: Feed, seed: int | None, layout: str | None = None) -> dict[str, Any]:
    """The attributes of a fed input: its provenance, the dtype it was converted from (if a cast could
    change its values), and its layout where the backend tracked it (``diff`` lines up NCHW and NHWC inputs)."""
    attrs = {"name": feed.name, "source": feed.source, "seed": seed, "dtype": str(feed.array.dtype)}
    if feed.converted_from is not None:
        attrs["converted_from"] = feed.converted_from
    if layout is not None:
        attrs["layout_axes"] = layout
    return attrs


def tensor_attrs(info: TensorInfo) -> dict[str, Any]:
    """The attributes every stored tensor carries, whatever its layout."""
    attrs = {
        "name": info.name,
        "graph_name": info.graph_name,
        "op_type": info.op_type,
        "layer": info.layer,
        "dtype": info.dtype,
        "order": info.order,
    }
    if info.context is not None:
        attrs["context"] = info.context
    if info.quantization is not None:
        attrs.update(quantization_attrs(info.quantization))
    if info.layout is not None:
        attrs["layout_axes"] = info.layout
    return attrs


def quantization_attrs(quantization: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a quantized tensor (docs/archive-format.md, "Quantized tensors"): ``scale``
    (float64), ``zero_point`` (int64) and ``quantized_dimension``; scalars for a tensor quantized as a
    whole, arrays (one entry per index along ``quantized_dimension``) per axis."""
    scale, zero_point = quantization["scale"], quantization["zero_point"]
    per_axis = isinstance(scale, (list, tuple, np.ndarray))
    return {
        "scale": np.asarray(scale, dtype=np.float64) if per_axis else float(scale),
        "zero_point": np.asarray(zero_point, dtype=np.int64) if per_axis else int(zero_point),
        "quantized_dimension": int(quantization.get("quantized_dimension", 0)),
    }


def layout(batched: bool, batches: int) -> str:
    """How a top-level tensor is stored (see ``ArchiveWriter.stream``): one growing dataset, one
    plain dataset, or a dataset per batch."""
    if batched:
        return "batch"
    return "per_batch" if batches > 1 else "single"


def dataset_path(tensor_name: str) -> str:
    """The HDF5 path of a tensor: its name under /tensors (``conv1/Relu:0`` -> ``tensors/conv1/Relu:0``)."""
    return f"{TENSORS}/{tensor_name}"


def distribution_attrs(dist: Distribution) -> dict[str, Any]:
    """The scalar attributes of ``/stats/<name>``: sizes, counts, moments (M2 too, so parts merge exactly)."""
    m = dist.moments
    attrs: dict[str, Any] = {
        "layout": "stats",
        "size": dist.size,
        "nan": dist.nan,
        "inf": dist.inf,
        "zeros": dist.zeros,
        "count": int(m.count),
        "min": float(m.low),
        "max": float(m.high),
        "mean": float(m.mean),
        "m2": float(m.m2),
        "std": float(m.std),
    }
    if dist.negative is not None and dist.neg_inf is not None:
        attrs.update(negative=dist.negative, positive=dist.positive, neg_inf=dist.neg_inf, pos_inf=dist.pos_inf)
    if dist.hist_range is not None:
        attrs.update(hist_lo=dist.hist_range[0], hist_hi=dist.hist_range[1])
    return attrs


def distribution_arrays(dist: Distribution) -> dict[str, np.ndarray]:
    """The datasets of ``/stats/<name>``: the histogram and per-channel moments (``channel_<field>``), when
    computed."""
    arrays = {} if dist.histogram is None else {"histogram": np.asarray(dist.histogram, np.int64)}
    if dist.channels is not None:
        c = dist.channels
        for field, values in zip(CHANNEL_FIELDS, (c.count, c.low, c.high, c.mean, c.m2)):
            arrays[f"channel_{field}"] = np.asarray(values, np.int64 if field == "count" else np.float64)
        arrays["channel_std"] = np.asarray(c.std, np.float64)
    return arrays


def distribution_from(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Distribution:
    """The :class:`Distribution` that :func:`distribution_attrs` and :func:`distribution_arrays` stored."""
    channels = None
    if "channel_count" in arrays:
        channels = Moments(*(np.asarray(arrays[f"channel_{field}"]) for field in CHANNEL_FIELDS))
    moments = Moments(
        int(attrs["count"]), float(attrs["min"]), float(attrs["max"]), float(attrs["mean"]), float(attrs["m2"])
    )
    return Distribution(
        size=int(attrs["size"]),
        nan=int(attrs["nan"]),
        inf=int(attrs["inf"]),
        zeros=int(attrs["zeros"]),
        moments=moments,
        hist_range=(float(attrs["hist_lo"]), float(attrs["hist_hi"])) if "histogram" in arrays else None,
        histogram=np.asarray(arrays["histogram"], np.int64) if "histogram" in arrays else None,
        channels=channels,
        negative=int(attrs["negative"]) if "negative" in attrs else None,
        neg_inf=int(attrs["neg_inf"]) if "neg_inf" in attrs else None,
    )
