"""TensorFlow Lite models (``.tflite`` flatbuffers, detected by content), run by the LiteRT interpreter.

See :mod:`~probe_cli.backends.tflite.loader` (detection, the interpreter, refusals),
:mod:`~probe_cli.backends.tflite.tracer` (the index and names) and
:mod:`~probe_cli.backends.tflite.executor` (one ``invoke()`` per batch, or per sample).
"""

from __future__ import annotations

from collections.abc import Sequence

from probe_cli.backends.base import Executor, LoadedModel, LoaderBackend, TracedModel
from probe_cli.backends.tflite import loader
from probe_cli.backends.tflite.executor import TFLiteRunner
from probe_cli.backends.tflite.loader import TFLiteLoaded
from probe_cli.backends.tflite.tracer import TFLiteGraph, trace_tflite
from probe_cli.core.types import TensorInfo


class TFLiteBackend(LoaderBackend):
    describes = loader.DESCRIBES
    _loader = loader

    def trace(self, loaded: LoadedModel) -> TracedModel:
        assert isinstance(loaded, TFLiteLoaded)
        return trace_tflite(loaded, self)

    def executors(self, traced: TracedModel, selection: Sequence[TensorInfo]) -> list[Executor]:
        """One interpreter run per batch (or per sample, see the executor) for the whole selection."""
        return [TFLiteRunner(traced, selection)]

    def op_inputs(self, traced: TracedModel, info: TensorInfo) -> list[TensorInfo]:
        """The listed tensors the op that produced ``info`` read (its weights and constants are not listed)."""
        graph: TFLiteGraph = traced.function
        names = [graph.names.get(index) for index in graph.op_inputs.get(info.name, ())]
        return [traced.index.tensor(name) for name in dict.fromkeys(names) if name is not None]
