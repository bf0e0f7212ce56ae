"""Computing a selection of an ONNX model's tensors for one batch: one ONNX Runtime run.

One session per selection: the graph's outputs are replaced by the selected tensors (as Polygraphy's
``mark_layerwise`` marks every node output), so ONNX Runtime computes what is asked and keeps only
that; the session is built once and kept by the traced model's executor cache. Outputs are marked
untyped, as Polygraphy marks them: ONNX Runtime infers their types. A model with
external data is saved beside its data files, so the session finds them by their relative paths (a
session built from bytes refuses them: "escapes working directory"), and that copy is removed once the
session holds the weights. Model inputs are not marked: their values are the fed arrays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli.backends.base import TracedModel
from probe_cli.backends.onnx.loader import modules, one_line
from probe_cli.backends.onnx.tracer import INPUT_OP, ONNXGraph
from probe_cli.core.errors import FeedError, ModelLoadError, RunError
from probe_cli.core.types import Feed, TensorInfo


def marked(graph: ONNXGraph, outputs: Sequence[str]) -> bytes:
    """The model, serialized with ``outputs`` (ONNX tensor names) as its graph outputs, in that order.

    The loaded model's outputs are swapped for the time of one ``SerializeToString`` and put back, rather than
    the model copied: a copy would hold the weights twice. One model's swaps take turns (``graph.lock``)."""
    from probe_cli.backends.onnx import proto

    model = graph.loaded.model
    with graph.lock:
        kept = [proto.ValueInfoProto.FromString(value.SerializeToString()) for value in model.graph.output]
        try:
            del model.graph.output[:]
            model.graph.output.extend(proto.ValueInfoProto(name=name) for name in outputs)
            data: bytes = model.SerializeToString()
            return data
        finally:
            del model.graph.output[:]
            model.graph.output.extend(kept)


def session(graph: ONNXGraph, outputs: Sequence[str]) -> Any:
    """An ONNX Runtime session (CPU) computing ``outputs`` of the model."""
    ort = modules()
    loaded = graph.loaded
    data = marked(graph, outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ONNX Runtime warns on stderr about unused initializers
    # Idle workers sleep instead of spinning: after each run probe writes and takes statistics on the same two
    # cores, which spinning workers slowed by a fifth (the run itself is ~10% slower on a small model).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    try:
        if not loaded.external_data:
            return ort.InferenceSession(data, options, providers=providers)
        assert loaded.path is not None
        beside = loaded.path.resolve().parent
        handle, name = tempfile.mkstemp(prefix=".probe-", suffix=".onnx", dir=beside)
        os.close(handle)
        try:
            Path(name).write_bytes(data)
            return ort.InferenceSession(name, options, providers=providers)
        finally:
            Path(name).unlink(missing_ok=True)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot write the marked copy of {loaded.where()} beside its external data: {exc.strerror or exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelLoadError(f"ONNX Runtime cannot run {loaded.where()}: {one_line(exc)}") from None


class ONNXRunner:
    """One session computing ``fetches``; call it with the feeds of one batch."""

    def __init__(self, traced: TracedModel, fetches: Sequence[TensorInfo]) -> None:
        self.graph: ONNXGraph = traced.function
        self.fed = {info.name: traced.graph_tensors[info.name] for info in fetches if info.op_type == INPUT_OP}
        #: probe name -> ONNX tensor name of each computed tensor
        self.to_onnx = {info.name: traced.graph_tensors[info.name] for info in fetches if info.op_type != INPUT_OP}
        self.outputs = list(dict.fromkeys(self.to_onnx.values()))
        self.session = session(self.graph, self.outputs) if self.outputs else None
        self.dtypes = {
            b.graph_name: np.dtype(b.dtype) if b.dtype != "string" else np.dtype(object) for b in self.graph.inputs
        }

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, Any]:
        given = {feed.name: feed.array for feed in feeds}
        arrays: dict[str, np.ndarray] = {}
        for binding in self.graph.inputs:
            if binding.name not in given:
                raise FeedError(f"input {binding.name!r} is not fed")
            array = np.asarray(given[binding.name])
            try:
                arrays[binding.graph_name] = array.astype(self.dtypes[binding.graph_name], copy=False)
            except (TypeError, ValueError):
                raise FeedError(f"input {binding.name!r}: dtype {array.dtype} cannot feed {binding.dtype}") from None
        values: dict[str, Any] = {}
        if self.session is not None:
            try:
                results = self.session.run(self.outputs, arrays)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidArgument/... types
                raise RunError(f"running the model failed: {one_line(exc)}") from None
            by_onnx = dict(zip(self.outputs, results))
            values = {name: by_onnx[onnx_name] for name, onnx_name in self.to_onnx.items()}
        for name, graph_name in self.fed.items():
            values[name] = arrays[graph_name]
        return values
