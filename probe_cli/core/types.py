"""The types every stage shares: what a model contains, what is fed to it, what a run returns.

Pure data (no TensorFlow), so the resolver, the feeds and the renderers can be
tested without loading a model.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

Shape = tuple[int | None, ...]


def format_shape(shape: Shape | None) -> str:
    """``(None, 28, 28, 1)`` -> ``(?, 28, 28, 1)``; unknown rank -> ``?``."""
    if shape is None:
        return "?"
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


@dataclass(frozen=True)
class InputSpec:
    """One model input: the placeholder probe feeds."""

    name: str
    dtype: str
    shape: Shape
    graph_name: str
    #: Exclusive upper bound for random integers (an Embedding's ``input_dim``).
    int_limit: int | None = None

    def record(self) -> dict[str, Any]:
        """As ``probe list --json`` and the Python API show it."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "graph_name": self.graph_name}


class Region(str, enum.Enum):
    """Where a tensor runs, which decides what can compute it (each backend supplies the executors)."""

    #: In the top-level graph: one value per execution, fetched from a pruned function.
    TOP = "top"
    #: Inside a loop body or branch function traced from a Keras model: one value per iteration.
    BODY = "body"
    #: Inside a while loop that freezing lowered into a GraphDef (Enter/Merge/.../Exit): one value per iteration.
    LOWERED_LOOP = "lowered_loop"


@dataclass(frozen=True)
class TensorInfo:
    """One op output, under the name probe shows, accepts and stores."""

    name: str
    graph_name: str
    op_type: str
    dtype: str
    shape: Shape | None
    layer: str | None
    #: Position in graph (topological) order.
    order: int
    #: For a tensor inside a loop body or branch: ``"<kind> <path>"`` where kind is
    #: ``loop`` or ``branch`` and path the probe name prefix of the function graph it
    #: lives in (``"loop ROI/map/while/body"``, ``"branch gate/cond/then"``). None at top level, except
    #: ``"inserted"`` for an ONNX tensor of a node the converter added (``Conv__29``), no op of the source model.
    context: str | None = None
    region: Region = Region.TOP
    #: For a quantized tensor (TensorFlow Lite int8/uint8/int16): ``scale`` and ``zero_point`` (floats and
    #: ints, or lists of them for per-axis quantization) and ``quantized_dimension``; its values are the
    #: integers, the real values ``scale * (value - zero_point)``. None for any other tensor.
    quantization: dict[str, Any] | None = field(default=None, hash=False)
    #: The order of its axes where the backend tracked it through the graph (``"NCHW"`` after an ONNX
    #: convolution, ``"NHWC"`` for the image before its Transpose); None where unknown. ``diff`` aligns
    #: two tensors by it, since shapes cannot tell when H == W == C.
    layout: str | None = None

    @property
    def op_name(self) -> str:
        return self.name.rpartition(":")[0]

    @property
    def per_execution(self) -> bool:
        """Whether a run gives a list of values, one per loop iteration or branch execution."""
        return self.region is not Region.TOP

    def record(self) -> dict[str, Any]:
        """As ``probe list --json`` and the Python API show it."""
        return {
            "name": self.name,
            "graph_name": self.graph_name,
            "op_type": self.op_type,
            "dtype": self.dtype,
            "shape": None if self.shape is None else list(self.shape),
            "layer": self.layer,
            "context": self.context,
            **({"quantization": self.quantization} if self.quantization is not None else {}),
            **({"layout": self.layout} if self.layout is not None else {}),
        }


@dataclass(frozen=True)
class LayerInfo:
    """One Keras layer (nested layers as ``outer/inner``) and the tensors it outputs."""

    name: str
    class_name: str
    params: int
    outputs: tuple[str, ...]
    output_shapes: tuple[Shape | None, ...] = ()

    def record(self) -> dict[str, Any]:
        """As ``probe list --json`` and the Python API show it."""
        return {
            "name": self.name,
            "class_name": self.class_name,
            "params": self.params,
            "output_shapes": [None if s is None else list(s) for s in self.output_shapes],
            "outputs": list(self.outputs),
        }


@dataclass(frozen=True)
class ModelIndex:
    """Everything ``probe list`` shows, in graph order."""

    model_format: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    layers: tuple[LayerInfo, ...]
    tensors: tuple[TensorInfo, ...]
    extra: dict[str, str] = field(default_factory=dict)
    #: Tensors listed but not computable, each with its context (ONNX Loop/If bodies); no command selects them.
    unfetchable: tuple[TensorInfo, ...] = ()
    #: Why they cannot be computed.
    unfetchable_why: str = ""

    @cached_property
    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    @cached_property
    def by_graph_name(self) -> dict[str, TensorInfo]:
        return {t.graph_name: t for t in self.tensors}

    def tensor(self, name: str) -> TensorInfo:
        return self.by_name[name]

    def layer_outputs(self, layers: Iterable[LayerInfo]) -> list[TensorInfo]:
        return [self.by_name[n] for layer in layers for n in layer.outputs if n in self.by_name]


@dataclass(frozen=True)
class Feed:
    """The array fed to one input and where it came from (a path, ``path:key``, ``array`` or ``random``)."""

    name: str
    array: Any  # a numpy array, or a lazily read file (probe_cli.feed.LazyArray)
    source: str
    #: the dtype it was given in, when converted to the input's by a cast that can change values
    converted_from: str | None = None


@dataclass(frozen=True)
class Execution:
    """One value of a tensor inside a loop body or branch: which iteration produced it."""

    #: Loop counter of the innermost enclosing loop (0 when no loop encloses it, e.g. a top-level branch).
    iteration: int
    #: Loop counters of every enclosing loop, outermost first (``()`` outside loops).
    path: tuple[int, ...]
    value: np.ndarray
