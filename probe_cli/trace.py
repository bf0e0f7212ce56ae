"""Stage 2: trace the model once into a graph and index every op tensor under probe's names.

Keras 3 has no symbolic graph tensors, so probe traces ``model(x, training=False)``
with ``tf.compat.v1.wrap_function``: variables stay captured (no freezing) and
the wrapped function can later be pruned to any set of tensors. While tracing,
each layer's ``call`` is wrapped to record the name scope it ran in and the
tensors it returned; :mod:`probe_cli.names` turns those into stable names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from probe_cli import _tf
from probe_cli.errors import ModelLoadError
from probe_cli.index import InputSpec, LayerInfo, ModelIndex, Shape, TensorInfo
from probe_cli.load import LoadedModel
from probe_cli.names import Frame, LayerCall, call_owners, display_name, unique_names

#: Tensors of these dtypes are handles, not values: nothing to dump.
_UNFETCHABLE = {"resource", "variant"}


@dataclass
class TracedModel:
    """The traced graph and its index; what resolve, feed and run work on."""

    loaded: LoadedModel
    index: ModelIndex
    function: Any  # tf.compat.v1 WrappedFunction
    #: probe name -> graph tensor
    graph_tensors: dict[str, Any]
    #: input name -> placeholder
    placeholders: dict[str, Any]

    def op_inputs(self, info: TensorInfo) -> list[TensorInfo]:
        """The listed tensors feeding the op that produced ``info`` (handles and the like omitted)."""
        by_graph = {t.graph_name: t for t in self.index.tensors}
        op = self.graph_tensors[info.name].op
        return [by_graph[t.name] for t in op.inputs if t.name in by_graph]


def shape_of(tensor: Any) -> Shape | None:
    if tensor.shape.rank is None:
        return None
    return tuple(tensor.shape.as_list())


def _op_name(name: str) -> str:
    """A valid TensorFlow op name for a Keras input name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)
    return cleaned if re.match(r"[A-Za-z0-9.]", cleaned) else f"input_{cleaned}"


def _reachable_ops(outputs: Sequence[Any]) -> set[Any]:
    """Every op the outputs depend on; each op visited once, no depth cap."""
    seen: set[Any] = set()
    stack = [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def _source_placeholder(tensor: Any) -> Any | None:
    """The placeholder a tensor is, or is a cast/identity of."""
    op = tensor.op
    while op.type in ("Cast", "Identity") and op.inputs:
        op = op.inputs[0].op
    return op if op.type == "Placeholder" else None


class _CallRecorder:
    """Wraps every layer's ``call`` for one trace; restores them afterwards."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[LayerCall] = []
        self.outputs: dict[int, list[Any]] = {}
        self.layers: dict[int, Any] = {}
        self.paths: dict[int, str] = {}
        self.int_limits: dict[str, int] = {}
        self._stack: list[Frame] = []
        self._count: dict[int, int] = {}
        self._patched: list[Any] = []

    def __enter__(self) -> _CallRecorder:
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            if "call" in vars(layer):
                continue  # already an instance attribute: leave it alone
            object.__setattr__(layer, "call", self._wrap(layer, layer.call))
            self._patched.append(layer)
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self._patched:
            vars(layer).pop("call", None)

    def _wrap(self, layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
        tf = _tf.tf()
        keras = _tf.keras()
        is_top = layer is self.model
        is_embedding = isinstance(layer, keras.layers.Embedding)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = tf.compat.v1.get_default_graph().get_name_scope()
            key = id(layer)
            if not is_top:
                number = self._count.get(key, 0)
                self._count[key] = number + 1
                self._stack.append(Frame(key, layer.name, number))
            stack = tuple(self._stack)
            if not is_top:  # registered on entry, so an outer layer is listed before its sublayers
                self.layers.setdefault(key, layer)
                self.paths.setdefault(key, "/".join(f.name for f in stack))
            if is_embedding and args:
                self._note_embedding(layer, args[0])
            try:
                result = call(*args, **kwargs)
            finally:
                if not is_top:
                    self._stack.pop()
            self.calls.append(LayerCall(scope, stack))
            if not is_top:
                self.outputs.setdefault(key, []).extend(t for t in tf.nest.flatten(result) if isinstance(t, tf.Tensor))
            return result

        return wrapper

    def _note_embedding(self, layer: Any, tensor: Any) -> None:
        placeholder = _source_placeholder(tensor) if hasattr(tensor, "op") else None
        if placeholder is not None:
            name = placeholder.name
            limit = int(layer.input_dim)
            self.int_limits[name] = min(limit, self.int_limits.get(name, limit))


def _keras_input_specs(model: Any) -> list[tuple[str, Any]]:
    tf = _tf.tf()
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ModelLoadError(
            f"model {model.name!r} has no known inputs (a subclassed model that was never built?)",
            "save it after calling it once on data, or as a functional model",
        )
    specs = []
    for tensor in inputs:
        name = tensor.name
        specs.append((name, tf.TensorSpec(tensor.shape, tensor.dtype, name=_op_name(name))))
    return specs


def _trace_keras(loaded: LoadedModel) -> TracedModel:
    tf = _tf.tf()
    keras = _tf.keras()
    model = loaded.keras_model
    specs = _keras_input_specs(model)
    structure = getattr(model, "_inputs_struct", None)

    def forward(*xs: Any) -> Any:
        if structure is not None:
            args = keras.tree.pack_sequence_as(structure, list(xs))
        else:  # Sequential and subclassed models take a single tensor, or a list
            args = xs[0] if len(xs) == 1 else list(xs)
        return model(args, training=False)

    with _CallRecorder(model) as recorder:
        try:
            function = tf.compat.v1.wrap_function(forward, [spec for _, spec in specs])
        except Exception as exc:  # noqa: BLE001 - tracing runs arbitrary layer code
            raise ModelLoadError(f"cannot trace model {model.name!r}: {str(exc).splitlines()[0]}") from exc
    graph = function.graph
    placeholders = {name: graph.get_tensor_by_name(spec.name + ":0") for name, spec in specs}
    owners = call_owners(recorder.calls)
    input_of = {t.op.name: name for name, t in placeholders.items()}

    def name_of(op: Any) -> tuple[str, str | None]:
        if op.name in input_of:
            return input_of[op.name], input_of[op.name]
        return display_name(op.name, owners)

    inputs = tuple(
        InputSpec(
            name=name,
            dtype=placeholders[name].dtype.name,
            shape=shape_of(placeholders[name]) or (),
            graph_name=placeholders[name].name,
            int_limit=recorder.int_limits.get(placeholders[name].op.name),
        )
        for name, _ in specs
    )
    index, graph_tensors = _index_graph(graph, list(function.outputs), name_of, "keras")

    by_graph_name = {t.graph_name: t.name for t in index.tensors}
    layers = [
        LayerInfo(
            name=spec.name,
            class_name="InputLayer",
            params=0,
            outputs=(by_graph_name[spec.graph_name],),
            output_shapes=(spec.shape,),
        )
        for spec in inputs
    ]
    for key, layer in recorder.layers.items():
        outs = [t for t in recorder.outputs[key] if t.name in by_graph_name]
        try:
            params = int(layer.count_params())
        except (ValueError, AttributeError):
            params = 0
        layers.append(
            LayerInfo(
                name=recorder.paths[key],
                class_name=type(layer).__name__,
                params=params,
                outputs=tuple(dict.fromkeys(by_graph_name[t.name] for t in outs)),
                output_shapes=tuple(shape_of(t) for t in outs),
            )
        )
    index = ModelIndex(
        model_format=loaded.model_format,
        inputs=inputs,
        outputs=index.outputs,
        layers=tuple(layers),
        tensors=index.tensors,
        extra={"model_name": model.name, "model_class": type(model).__name__},
    )
    return TracedModel(loaded, index, function, graph_tensors, placeholders)


def _index_graph(
    graph: Any, outputs: list[Any], name_of: Callable[[Any], tuple[str, str | None]], model_format: str
) -> tuple[ModelIndex, dict[str, Any]]:
    """Every value tensor the outputs depend on, in graph (creation, hence topological) order."""
    reachable = _reachable_ops(outputs)
    ops = [op for op in graph.get_operations() if op in reachable]
    op_names = unique_names((op.name, name_of(op)[0]) for op in ops)
    tensors: list[TensorInfo] = []
    graph_tensors: dict[str, Any] = {}
    for op in ops:
        base = op_names[op.name]
        layer = name_of(op)[1]
        for tensor in op.outputs:
            if tensor.dtype.name in _UNFETCHABLE:
                continue
            name = f"{base}:{tensor.value_index}"
            tensors.append(
                TensorInfo(
                    name=name,
                    graph_name=tensor.name,
                    op_type=op.type,
                    dtype=tensor.dtype.name,
                    shape=shape_of(tensor),
                    layer=layer,
                    order=len(tensors),
                )
            )
            graph_tensors[name] = tensor
    by_graph = {t.graph_name: t.name for t in tensors}
    index = ModelIndex(
        model_format=model_format,
        inputs=(),
        outputs=tuple(by_graph[t.name] for t in outputs if t.name in by_graph),
        layers=(),
        tensors=tuple(tensors),
    )
    return index, graph_tensors


def trace(loaded: LoadedModel) -> TracedModel:
    """Traces a loaded model; the one place probe builds a graph."""
    if loaded.keras_model is not None:
        return _trace_keras(loaded)
    from probe_cli.graphdef import trace_graph_def

    return trace_graph_def(loaded, _index_graph)
