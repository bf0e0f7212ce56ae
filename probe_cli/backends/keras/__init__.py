"""Keras models: ``.h5`` and ``.keras`` files, and ``keras.Model`` objects held in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probe_cli.backends.base import Executor, LoadedModel, LoaderBackend, TracedModel
from probe_cli.backends.keras import loader
from probe_cli.backends.keras.capture import Capturer
from probe_cli.backends.keras.tracer import trace_keras
from probe_cli.backends.tfgraph import GraphBackend, Runner
from probe_cli.core.types import Execution, Feed, Region, TensorInfo


class KerasBackend(LoaderBackend, GraphBackend):
    describes = loader.DESCRIBES
    _loader = loader

    def from_memory(self, model: Any) -> LoadedModel:
        return loader.from_memory(model)

    def trace(self, loaded: LoadedModel) -> TracedModel:
        return trace_keras(loaded, self)

    def executors(self, traced: TracedModel, selection: Sequence[TensorInfo]) -> list[Executor]:
        """One pruned execution for top-level tensors; with loop-body tensors, the re-traced model,
        whose one execution records them and returns the top-level ones too."""
        if not any(info.region is Region.BODY for info in selection):
            return [Runner(traced, selection)]
        capturer = Capturer(traced, selection)
        top = [info.name for info in selection if info.region is Region.TOP]

        def capture(fed: Sequence[Feed]) -> dict[str, Any]:
            values: dict[str, Any] = capturer(fed)
            for name in top:  # one Execution each: the value itself
                execution: Execution = values[name][0]
                values[name] = execution.value
            return values

        return [capture]
