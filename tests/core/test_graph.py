"""The model graph pairing reads: built from a backend's op inputs, kept in archives as JSON (no TensorFlow)."""

from __future__ import annotations

from typing import Any

from probe_cli.backends.base import Hashed, LoadedModel, TracedModel
from probe_cli.core.graph import ModelGraph
from probe_cli.core.types import InputSpec, LayerInfo, ModelIndex, TensorInfo


def info(name: str, op: str, order: int) -> TensorInfo:
    return TensorInfo(name, f"m_1/{name}", op, "float32", (1, 2), name.partition("/")[0], order)


INDEX = ModelIndex(
    "test",
    (InputSpec("x", "float32", (None, 2), "m_1/x:0"),),
    ("d/Relu:0",),
    (LayerInfo("d", "Dense", 6, ("d/Relu:0",)),),
    (info("x:0", "Placeholder", 0), info("d/MatMul:0", "MatMul", 1), info("d/Relu:0", "Relu", 2)),
)


class Backend:
    """Knows what MatMul reads, and fails on Relu as a backend may on a tensor it cannot trace through."""

    def op_inputs(self, traced: TracedModel, t: TensorInfo) -> list[TensorInfo]:
        reads = {"d/MatMul:0": ["x:0"], "x:0": []}
        return [traced.index.tensor(n) for n in reads[t.name]]  # KeyError for d/Relu:0


def test_a_traced_models_graph_and_a_tensor_its_backend_cannot_trace_through() -> None:
    loaded = LoadedModel(None, "test", Hashed("0" * 64))
    backend: Any = Backend()
    graph = TracedModel(loaded, INDEX, None, {}, {}, backend).graph()
    assert graph.inputs == ("x:0",) and graph.outputs == ("d/Relu:0",) and graph.layer_outputs == ("d/Relu:0",)
    reads = {node.name: node.op_inputs for node in graph.nodes}
    assert reads == {"x:0": (), "d/MatMul:0": ("x:0",), "d/Relu:0": ()}
    assert ModelGraph.from_json(graph.to_json()) == graph
