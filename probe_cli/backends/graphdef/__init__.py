"""TensorFlow graphs: SavedModel directories and frozen GraphDef ``.pb`` files."""

from __future__ import annotations

from collections.abc import Sequence

from probe_cli.backends.base import Executor, LoadedModel, LoaderBackend, TracedModel
from probe_cli.backends.graphdef import loader
from probe_cli.backends.graphdef.tfdbg_capture import LoweredLoopCapturer
from probe_cli.backends.graphdef.tracer import trace_graph_def
from probe_cli.backends.tfgraph import GraphBackend, Runner
from probe_cli.core.types import Region, TensorInfo


class GraphDefBackend(LoaderBackend, GraphBackend):
    describes = loader.DESCRIBES
    _loader = loader

    def trace(self, loaded: LoadedModel) -> TracedModel:
        return trace_graph_def(loaded, self)

    def executors(self, traced: TracedModel, selection: Sequence[TensorInfo]) -> list[Executor]:
        """A pruned execution for top-level tensors; TF1's debugger for those of lowered loops."""
        top = [info for info in selection if info.region is Region.TOP]
        lowered = [info for info in selection if info.region is Region.LOWERED_LOOP]
        executors: list[Executor] = [Runner(traced, top)] if top or not lowered else []
        if lowered:
            executors.append(LoweredLoopCapturer(traced, lowered))
        return executors
