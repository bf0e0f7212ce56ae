"""ONNX models (``.onnx`` protobufs, detected by content), run by ONNX Runtime.

See :mod:`~probe_cli.backends.onnx.loader` (detection, the extra, external data),
:mod:`~probe_cli.backends.onnx.tracer` (the index, names, layouts) and
:mod:`~probe_cli.backends.onnx.executor` (one session per selection, one run per batch).
"""

from __future__ import annotations

from collections.abc import Sequence

from probe_cli.backends.base import Executor, LoadedModel, LoaderBackend, TracedModel
from probe_cli.backends.onnx import loader
from probe_cli.backends.onnx.executor import ONNXRunner
from probe_cli.backends.onnx.loader import ONNXLoaded
from probe_cli.backends.onnx.tracer import ONNXGraph, trace_onnx
from probe_cli.core.types import TensorInfo


class ONNXBackend(LoaderBackend):
    describes = loader.DESCRIBES
    _loader = loader

    def trace(self, loaded: LoadedModel) -> TracedModel:
        assert isinstance(loaded, ONNXLoaded)
        return trace_onnx(loaded, self)

    def executors(self, traced: TracedModel, selection: Sequence[TensorInfo]) -> list[Executor]:
        """One ONNX Runtime run per batch for the whole selection."""
        return [ONNXRunner(traced, selection)]

    def op_inputs(self, traced: TracedModel, info: TensorInfo) -> list[TensorInfo]:
        """The listed tensors the node that produced ``info`` read (initializers and constants are not listed)."""
        graph: ONNXGraph = traced.function
        names = [graph.names.get(name) for name in graph.op_inputs.get(info.name, ())]
        return [traced.index.tensor(name) for name in dict.fromkeys(names) if name is not None]
