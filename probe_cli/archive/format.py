"""The archive's layout: group names and the attributes every stored tensor carries.

See docs/archive-format.md. Shared by the writer and the reader, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from probe_cli.core.types import TensorInfo

FORMAT_VERSION = 1
TENSORS = "tensors"
INPUTS = "inputs"


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
    return attrs


def layout(batched: bool, batches: int) -> str:
    """How a top-level tensor is stored (see ``ArchiveWriter.stream``): one growing dataset, one
    plain dataset, or a dataset per batch."""
    if batched:
        return "batch"
    return "per_batch" if batches > 1 else "single"


def dataset_path(tensor_name: str) -> str:
    """The HDF5 path of a tensor: its name under /tensors (``conv1/Relu:0`` -> ``tensors/conv1/Relu:0``)."""
    return f"{TENSORS}/{tensor_name}"
