"""A model's dataflow as pairing needs it: each tensor with the tensors its op reads, and the model's
inputs and outputs in order.

Backends build it from what they know about producers (``Backend.op_inputs``); archives store it
(``/graph``), so ``diff`` pairs two archives as ``compare`` pairs two models. Pure Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from probe_cli.core.types import ModelIndex, TensorInfo

GRAPH_VERSION = 1


@dataclass(frozen=True)
class GraphNode:
    """One tensor: its names, the type of the op producing it, and the tensors that op reads."""

    name: str
    graph_name: str
    op_type: str = ""
    op_inputs: tuple[str, ...] = ()
    dtype: str = ""
    layer: str | None = None
    shape: tuple[int | None, ...] | None = None


@dataclass(frozen=True)
class ModelGraph:
    """Tensors in graph (topological) order; ``inputs``/``outputs`` are tensor names in signature order."""

    nodes: tuple[GraphNode, ...]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    format: str = ""
    #: the tensors layers output (Keras layers, or what a backend groups as one)
    layer_outputs: tuple[str, ...] = ()

    @cached_property
    def by_name(self) -> dict[str, GraphNode]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def consumers(self) -> dict[str, tuple[str, ...]]:
        """Tensor name -> the tensors whose ops read it, in graph order."""
        found: dict[str, list[str]] = {}
        for node in self.nodes:
            for source in dict.fromkeys(node.op_inputs):
                found.setdefault(source, []).append(node.name)
        return {name: tuple(users) for name, users in found.items()}

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": GRAPH_VERSION,
                "format": self.format,
                "inputs": list(self.inputs),
                "outputs": list(self.outputs),
                "layer_outputs": list(self.layer_outputs),
                "tensors": [
                    {
                        "name": n.name,
                        "graph_name": n.graph_name,
                        "op_type": n.op_type,
                        "op_inputs": list(n.op_inputs),
                        "dtype": n.dtype,
                        "layer": n.layer,
                        "shape": None if n.shape is None else list(n.shape),
                    }
                    for n in self.nodes
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelGraph:
        data = json.loads(text)
        nodes = tuple(
            GraphNode(
                name=str(t["name"]),
                graph_name=str(t.get("graph_name", t["name"])),
                op_type=str(t.get("op_type", "")),
                op_inputs=tuple(str(x) for x in t.get("op_inputs", ())),
                dtype=str(t.get("dtype", "")),
                layer=t.get("layer"),
                shape=None if t.get("shape") is None else tuple(t["shape"]),
            )
            for t in data.get("tensors", ())
        )
        return cls(
            nodes,
            tuple(data.get("inputs", ())),
            tuple(data.get("outputs", ())),
            str(data.get("format", "")),
            tuple(data.get("layer_outputs", ())),
        )


def graph_of(index: ModelIndex, op_inputs: Iterable[tuple[TensorInfo, Iterable[TensorInfo]]]) -> ModelGraph:
    """The graph of an index, given each tensor's op inputs (as a backend lists them)."""
    reads = {info.name: tuple(t.name for t in sources) for info, sources in op_inputs}
    by_graph = index.by_graph_name
    inputs = tuple(by_graph[spec.graph_name].name for spec in index.inputs if spec.graph_name in by_graph)
    nodes = tuple(
        GraphNode(
            name=t.name,
            graph_name=t.graph_name,
            op_type=t.op_type,
            op_inputs=reads.get(t.name, ()),
            dtype=t.dtype,
            layer=t.layer,
            shape=t.shape,
        )
        for t in index.tensors
    )
    layer_outputs = tuple(name for layer in index.layers for name in layer.outputs if name in index.by_name)
    return ModelGraph(nodes, inputs, tuple(index.outputs), index.model_format, layer_outputs)
