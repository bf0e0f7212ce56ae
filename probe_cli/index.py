"""What a loaded model contains: inputs, layers and op tensors, under probe's names.

Pure data (no TensorFlow), so the resolver, the feeds and the renderers can be
tested without loading a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

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
    #: lives in (``"loop ROI/map/while/body"``, ``"branch gate/cond/then"``). None at top level.
    context: str | None = None

    @property
    def op_name(self) -> str:
        return self.name.rpartition(":")[0]


@dataclass(frozen=True)
class LayerInfo:
    """One Keras layer (nested layers as ``outer/inner``) and the tensors it outputs."""

    name: str
    class_name: str
    params: int
    outputs: tuple[str, ...]
    output_shapes: tuple[Shape | None, ...] = ()


@dataclass(frozen=True)
class ModelIndex:
    """Everything ``probe list`` shows, in graph order."""

    model_format: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    layers: tuple[LayerInfo, ...]
    tensors: tuple[TensorInfo, ...]
    extra: dict[str, str] = field(default_factory=dict)

    @cached_property
    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    def tensor(self, name: str) -> TensorInfo:
        return self.by_name[name]

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def layer_outputs(self, layers: Iterable[LayerInfo]) -> list[TensorInfo]:
        return [self.by_name[n] for layer in layers for n in layer.outputs if n in self.by_name]
