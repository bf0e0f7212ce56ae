"""A TensorFlow graph (a frozen ``.pb``, or a SavedModel's frozen signature) traced and indexed.

The GraphDef is imported into a ``wrap_function`` graph, so the same
prune-and-run path serves them as Keras models. Names are the graph's own
(``ROI_3/rpn_non_max_suppression/NonMaxSuppressionV2:0``), except that ops in the
layer scopes of a graph exported from Keras get the Keras file's names
(:func:`probe_cli.core.graph_names.keras_names`); inputs are the placeholders (for a
SavedModel, named as in its signature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import Backend, LoadedModel, TracedModel
from probe_cli.backends.tfgraph import index_graph, shape_of
from probe_cli.core.errors import ModelLoadError
from probe_cli.core.graph_names import keras_names
from probe_cli.core.types import InputSpec, LayerInfo, ModelIndex, Region, TensorInfo

DEFAULT_SIGNATURE = "serving_default"
#: Ops that end a graph without producing values worth calling outputs.
_NOT_OUTPUTS = {"NoOp", "Assert", "SaveV2", "RestoreV2", "MergeV2Checkpoints"}


def lowered_loop_frames(ops: Any) -> dict[str, str]:
    """Ops inside while loops that freezing lowered to Enter/Merge/Switch/NextIteration/Exit.

    Such an op runs once per iteration in one graph execution; a Session or a
    pruned function cannot return its values ("Retval[0] has already been
    set"), so probe marks it as a :attr:`Region.LOWERED_LOOP` tensor, which
    :mod:`~probe_cli.backends.graphdef.tfdbg_capture` computes instead.
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


def trace_graph_def(loaded: LoadedModel, backend: Backend) -> TracedModel:
    """Imports the GraphDef once into a prunable function and indexes it."""
    tf = tfenv.tf()
    graph_def = loaded.graph_def

    def import_graph() -> None:
        tf.import_graph_def(graph_def, name="")

    try:
        function = tf.compat.v1.wrap_function(import_graph, [])
    except Exception as exc:  # noqa: BLE001 - invalid graphs fail at import
        raise ModelLoadError(f"cannot import graph of {loaded.where()}: {' '.join(str(exc).split())[:300]}") from None
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
        raise ModelLoadError(f"graph of {loaded.where()} has no outputs")
    by_op = {t.op.name: name for name, t in placeholders.items()}
    keras = keras_names((op.name for op in ops), loaded.layer_names)

    def name_of(op: Any) -> tuple[str, str | None]:
        if op.name in by_op:
            return op.name, by_op[op.name]
        return keras.get(op.name, (op.name, None))

    index, graph_tensors = index_graph(graph, outputs, name_of, loaded.model_format)
    frames = lowered_loop_frames(ops)
    tensors = tuple(
        replace(t, context=f"lowered loop {frames[op]}", region=Region.LOWERED_LOOP)
        if (op := t.graph_name.rpartition(":")[0]) in frames
        else t
        for t in index.tensors
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
    ) + _keras_layers(tensors, graph_tensors, index.outputs)
    index = ModelIndex(
        model_format=loaded.model_format,
        inputs=inputs,
        outputs=index.outputs,
        layers=layers,
        tensors=tensors,
        extra={"signature": loaded.signature["signature"]} if loaded.signature else {},
    )
    return TracedModel(loaded, index, function, graph_tensors, placeholders, backend)


def _keras_layers(
    tensors: Sequence[TensorInfo], graph_tensors: dict[str, Any], outputs: Sequence[str]
) -> tuple[LayerInfo, ...]:
    """The Keras layers the names were mapped to, each with its outputs: the tensors it hands to an op
    of another layer, or that the model returns; in the graph order of those outputs. Class and
    parameters are not in the graph."""
    layer_of = {t.graph_name: t.layer for t in tensors}
    returned = set(outputs)
    found: dict[str, list[TensorInfo]] = {}
    for t in tensors:
        if t.layer is None or t.region is not Region.TOP or t.op_type == "Placeholder":
            continue
        consumers = graph_tensors[t.name].consumers()
        if t.name in returned or any(layer_of.get(f"{c.name}:0") != t.layer for c in consumers):
            found.setdefault(t.layer, []).append(t)
    ordered = sorted(found.items(), key=lambda item: item[1][0].order)
    return tuple(
        LayerInfo(layer, "", 0, tuple(t.name for t in outs), tuple(t.shape for t in outs)) for layer, outs in ordered
    )
