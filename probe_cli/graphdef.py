"""TensorFlow-native formats: frozen GraphDef ``.pb`` files and SavedModel directories.

Both become a GraphDef imported into a ``wrap_function`` graph, so the same
prune-and-run path serves them as Keras models. Names are the graph's own
(``ROI_3/rpn_non_max_suppression/NonMaxSuppressionV2:0``); inputs are the
placeholders (for a SavedModel, named as in its signature).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli import _tf
from probe_cli.errors import ModelLoadError, RunError, UsageProblem
from probe_cli.index import InputSpec, LayerInfo, ModelIndex, TensorInfo
from probe_cli.load import LoadedModel

DEFAULT_SIGNATURE = "serving_default"
#: Ops that end a graph without producing values worth calling outputs.
_NOT_OUTPUTS = {"NoOp", "Assert", "SaveV2", "RestoreV2", "MergeV2Checkpoints"}


def read_graph_def(path: Path) -> Any:
    tf = _tf.tf()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
        raise ModelLoadError(f"cannot parse GraphDef {str(path)!r}: {exc}") from None
    return graph_def


def load_saved_model(path: Path, signature: str = DEFAULT_SIGNATURE) -> tuple[Any, dict[str, Any]]:
    """The signature's function frozen into a GraphDef, and its input/output names."""
    tf = _tf.tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        saved = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a broken SavedModel raises anything
        raise ModelLoadError(f"cannot load SavedModel {str(path)!r}: {str(exc).strip().splitlines()[0]}") from None
    signatures = dict(getattr(saved, "signatures", {}) or {})
    if signature not in signatures:
        known = ", ".join(signatures) or "none"
        raise UsageProblem(f"SavedModel {str(path)!r} has no signature {signature!r}", f"signatures: {known}")
    function = signatures[signature]
    try:
        frozen = convert_variables_to_constants_v2(function)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot freeze signature {signature!r}: {str(exc).strip().splitlines()[0]}") from None
    _, kwargs = function.structured_input_signature
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    names = list(kwargs) if len(kwargs) == len(placeholders) else [t.op.name for t in placeholders]
    outputs = tf.nest.flatten(frozen.structured_outputs, expand_composites=True)
    return frozen.graph.as_graph_def(), {
        "signature": signature,
        "inputs": {name: t.name for name, t in zip(names, placeholders)},
        "outputs": [t.name for t in outputs if hasattr(t, "name")],
    }


def lowered_loop_frames(ops: Any) -> dict[str, str]:
    """Ops inside while loops that freezing lowered to Enter/Merge/Switch/NextIteration/Exit.

    Such an op runs once per iteration in one graph execution; a Session or a
    pruned function cannot return its values ("Retval[0] has already been
    set"), so probe lists it marked with its frame and refuses to fetch it
    with a reason instead of a TensorFlow stack trace.
    """
    frames: dict[str, str] = {}
    for enter in (op for op in ops if op.type in ("Enter", "RefEnter")):
        frame = enter.get_attr("frame_name")
        frame = frame.decode() if isinstance(frame, bytes) else str(frame)
        stack = [enter]
        while stack:
            op = stack.pop()
            if op.name in frames or op.type in ("Exit", "RefExit"):
                continue
            frames[op.name] = frame
            stack.extend(c for t in op.outputs for c in t.consumers())
            stack.extend(op._control_outputs)  # noqa: SLF001 - no public accessor for control consumers
    return frames


def trace_graph_def(loaded: LoadedModel, index_graph: Callable[..., tuple[ModelIndex, dict[str, Any]]]) -> Any:
    """Imports the GraphDef once into a prunable function and indexes it."""
    from probe_cli.trace import TracedModel, shape_of

    tf = _tf.tf()
    graph_def = loaded.graph_def

    def import_graph() -> None:
        tf.import_graph_def(graph_def, name="")

    try:
        function = tf.compat.v1.wrap_function(import_graph, [])
    except Exception as exc:  # noqa: BLE001 - invalid graphs fail at import
        raise ModelLoadError(
            f"cannot import graph of {str(loaded.path)!r}: {' '.join(str(exc).split())[:300]}"
        ) from None
    graph = function.graph
    ops = graph.get_operations()
    if loaded.signature is not None:
        input_names = loaded.signature["inputs"]
        outputs = [graph.get_tensor_by_name(name) for name in loaded.signature["outputs"]]
    else:
        # Freezing leaves "unused_control_flow_input" placeholders behind: no consumers, not inputs.
        input_names = {
            op.name: op.outputs[0].name
            for op in ops
            if op.type in ("Placeholder", "PlaceholderV2")
            and op.outputs[0].dtype not in (tf.resource, tf.variant)
            and op.outputs[0].consumers()
        }
        consumed = {t.op for op in ops for t in op.inputs} | {c for op in ops for c in op.control_inputs}
        outputs = [
            t
            for op in ops
            if op not in consumed and op.type not in _NOT_OUTPUTS and op.type not in ("Placeholder", "PlaceholderV2")
            for t in op.outputs
        ]
    placeholders = {name: graph.get_tensor_by_name(tensor) for name, tensor in input_names.items()}
    if not outputs:
        raise ModelLoadError(f"graph of {str(loaded.path)!r} has no outputs")
    by_op = {t.op.name: name for name, t in placeholders.items()}

    def name_of(op: Any) -> tuple[str, str | None]:
        return op.name, by_op.get(op.name)

    index, graph_tensors = index_graph(graph, outputs, name_of, loaded.model_format)
    frames = lowered_loop_frames(ops)
    tensors = tuple(
        replace(t, context=f"lowered loop {frames[t.op_name]}") if t.op_name in frames else t for t in index.tensors
    )
    inputs = tuple(
        InputSpec(name=name, dtype=t.dtype.name, shape=shape_of(t) or (), graph_name=t.name)
        for name, t in placeholders.items()
    )
    # Display names of placeholders are the graph names; make the input tensors' probe names agree.
    layers = tuple(
        LayerInfo(
            name=spec.name, class_name="Placeholder", params=0, outputs=(spec.graph_name,), output_shapes=(spec.shape,)
        )
        for spec in inputs
        if spec.graph_name in index.by_name
    )
    index = ModelIndex(
        model_format=loaded.model_format,
        inputs=inputs,
        outputs=index.outputs,
        layers=layers,
        tensors=tensors,
        extra={"signature": loaded.signature["signature"]} if loaded.signature else {},
    )
    return TracedModel(loaded, index, function, graph_tensors, placeholders)


class LoweredLoopCapturer:
    """Values of ops inside lowered while loops, one per execution, from TF1's debugger.

    A Session cannot fetch such an op, but tfdbg v1 can watch it: with
    ``debug_utils.watch_graph`` the runtime writes every execution of the
    watched tensors to a dump directory, each with a timestamp. The capture
    graph runs every loop one iteration at a time (``parallel_iterations=1``),
    so that order is the iteration order; executions are numbered 0, 1, ...
    The graph runs once per batch, driven by fetching the model's outputs.
    """

    def __init__(self, traced: Any, infos: list[TensorInfo]) -> None:
        tf = _tf.tf()
        self.infos = infos
        # One iteration at a time, so the order executions are recorded in is the iteration order.
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(traced.loaded.graph_def)
        for node in graph_def.node:
            if node.op in ("Enter", "RefEnter") and "parallel_iterations" in node.attr:
                node.attr["parallel_iterations"].i = 1
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name="")
        self.outputs = [traced.index.tensor(name).graph_name for name in traced.index.outputs]
        self.feeds = {spec.name: spec.graph_name for spec in traced.index.inputs}
        names = sorted({info.graph_name.rpartition(":")[0] for info in infos})
        self.allow = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        self.session = tf.compat.v1.Session(graph=self.graph, config=_tf.session_config())

    def __call__(self, feeds: Sequence[Any]) -> dict[str, list[Any]]:
        import shutil
        import tempfile

        from tensorflow.python.debug.lib import debug_data, debug_utils

        from probe_cli.control_flow import Execution

        tf = _tf.tf()
        root = tempfile.mkdtemp(prefix="probe-tfdbg-")
        try:
            options = tf.compat.v1.RunOptions()
            debug_utils.watch_graph(
                options, self.graph, debug_urls=f"file://{root}", node_name_regex_allowlist=self.allow
            )
            try:
                self.session.run(self.outputs, feed_dict={self.feeds[f.name]: f.array for f in feeds}, options=options)
            except tf.errors.OpError as exc:
                raise RunError.from_exception(exc) from None
            dump = debug_data.DebugDumpDir(root)
            result = {}
            for info in self.infos:
                op, _, slot = info.graph_name.rpartition(":")
                try:
                    data = dump.watch_key_to_data(f"{op}:{slot}:DebugIdentity")
                except ValueError:  # never executed (a branch not taken)
                    data = []
                data = sorted(data, key=lambda d: d.timestamp)
                result[info.name] = [Execution(k, (k,), np.asarray(d.get_tensor())) for k, d in enumerate(data)]
            return result
        finally:
            shutil.rmtree(root, ignore_errors=True)
