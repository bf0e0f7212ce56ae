"""Stage 2: trace the model once into a graph and index every op tensor under probe's names.

Keras 3 has no symbolic graph tensors, so probe traces ``model(x, training=False)``
with ``tf.compat.v1.wrap_function``: variables stay captured (no freezing) and
the wrapped function can later be pruned to any set of tensors. While tracing,
each layer's ``call`` is wrapped to record the name scope it ran in and the
tensors it returned; :mod:`probe_cli.names` turns those into stable names.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probe_cli import _tf, control_flow
from probe_cli.errors import ModelLoadError
from probe_cli.index import InputSpec, LayerInfo, ModelIndex, Shape, TensorInfo
from probe_cli.load import LoadedModel
from probe_cli.names import Frame, LayerCall, Owner, call_owners, display_name, unique_names


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
    #: Keras models: the traced forward function and its input signature, so
    #: :mod:`probe_cli.control_flow` can trace it again to capture loop-body values.
    forward: Callable[..., Any] | None = None
    signature: tuple[Any, ...] | None = None

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


def reachable_ops(outputs: Sequence[Any], stop: Collection[str] = ()) -> set[Any]:
    """Every op the outputs depend on; each op visited once, no depth cap.

    Ops named in ``stop`` (fed or captured tensors' ops) are neither included nor walked through.
    """
    seen: set[Any] = set()
    stack = [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen or op.name in stop:
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
    """Name and ``tf.TensorSpec`` of each model input, in the order ``forward`` receives them.

    Functional and Sequential models know their inputs; a subclassed model only
    knows the shapes it was built with (its build config), from which the specs
    are derived with a free batch dimension.
    """
    tf = _tf.tf()
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        return [(t.name, tf.TensorSpec(t.shape, t.dtype, name=_op_name(t.name))) for t in inputs]
    specs = _built_input_specs(model)
    if specs is None:
        raise ModelLoadError(
            f"model {model.name!r} ({type(model).__name__}) has no known inputs: "
            "it was saved before it was built or called, so its input shapes were never recorded",
            "call it once on data (or model.build(shape)) before saving it as .keras, or save it as a functional model",
        )
    return specs


def _is_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)


def _shape_leaves(structure: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], tuple[int | None, ...]]]:
    """(path, shape) of every shape in a nested build-shape structure, in ``keras.tree`` flattening order."""
    if _is_shape(structure):
        return [(path, tuple(structure))]
    if isinstance(structure, Mapping):
        return [leaf for key in sorted(structure) for leaf in _shape_leaves(structure[key], (*path, str(key)))]
    if isinstance(structure, (list, tuple)):
        return [leaf for i, item in enumerate(structure) for leaf in _shape_leaves(item, (*path, str(i)))]
    raise ValueError(f"unsupported build shape {structure!r}")


def _plain_structure(structure: Any) -> Any:
    """The build-shape structure with every shape replaced by 0 (a packing template; wrappers made plain)."""
    if _is_shape(structure):
        return 0
    if isinstance(structure, Mapping):
        return {key: _plain_structure(structure[key]) for key in structure}
    return [_plain_structure(item) for item in structure]


def _first_call_argument(model: Any) -> str:
    """Name of the first argument of ``model.call`` (e.g. ``inputs``)."""
    try:
        parameters = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return "inputs"
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return next((p.name for p in parameters if p.kind in kinds and p.name != "self"), "inputs")


def _built_input_specs(model: Any) -> list[tuple[str, Any]] | None:
    """Input specs of a subclassed model from the shapes it was built with (as Keras' own export does).

    The batch dimension becomes None, the dtype is the model's input dtype
    (``float32`` unless its dtype policy says otherwise). When the input is a
    list or dict, ``model._inputs_struct`` is set so the traced forward packs
    the placeholders back into that structure. None when nothing is recorded.
    """
    tf = _tf.tf()
    try:
        config = model.get_build_config() or {}
    except Exception:  # noqa: BLE001 - user code may override get_build_config
        config = {}
    if "input_shape" in config:
        structure = config["input_shape"]
    elif len(config.get("shapes_dict") or {}) > 1:
        names = ", ".join(str(k).removesuffix("_shape") for k in config["shapes_dict"])
        raise ModelLoadError(
            f"model {model.name!r} ({type(model).__name__}) takes its inputs as separate arguments ({names})",
            "probe feeds one argument (a tensor, list or dict of tensors): wrap the model so call() takes one",
        )
    else:
        structure = _input_spec_shapes(model)
    if structure is None:
        return None
    try:
        leaves = _shape_leaves(structure)
    except ValueError:
        return None
    if not leaves or any(len(shape) == 0 for _, shape in leaves):
        return None
    argument = _first_call_argument(model)
    dtype = tf.as_dtype(getattr(model, "input_dtype", None) or "float32")
    specs = []
    for path, shape in leaves:
        name = "_".join(path) if isinstance(structure, Mapping) else "_".join((argument, *path))
        specs.append((name, tf.TensorSpec((None, *shape[1:]), dtype, name=_op_name(name))))
    if not _is_shape(structure) and getattr(model, "_inputs_struct", None) is None:
        object.__setattr__(model, "_inputs_struct", _plain_structure(structure))
    return specs


def _input_spec_shapes(model: Any) -> Any:
    """Fully known shapes declared in ``model.input_spec``; None otherwise."""
    declared = getattr(model, "input_spec", None)
    if declared is None:
        return None
    many = isinstance(declared, (list, tuple))
    shapes = [getattr(spec, "shape", None) for spec in (declared if many else [declared])]
    if not shapes or any(shape is None for shape in shapes):
        return None
    return [tuple(s) for s in shapes] if many else tuple(shapes[0])


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
    index, graph_tensors = _index_graph(graph, list(function.outputs), name_of, "keras", owners)

    by_graph_name = {t.graph_name: t.name for t in index.tensors if t.context is None}
    # tensors inside loop bodies and branches (an RNN cell's outputs), found by identity
    by_ref = {t.ref(): name for name, t in graph_tensors.items() if t.graph is not graph}

    def probe_name(tensor: Any) -> str | None:
        return by_graph_name.get(tensor.name) if tensor.graph is graph else by_ref.get(tensor.ref())

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
        named = {name: t for t in recorder.outputs[key] if (name := probe_name(t)) is not None}  # each tensor once
        outs = list(named.values())
        try:
            params = int(layer.count_params())
        except (ValueError, AttributeError):
            params = 0
        layers.append(
            LayerInfo(
                name=recorder.paths[key],
                class_name=type(layer).__name__,
                params=params,
                outputs=tuple(named),
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
    signature = tuple(spec for _, spec in specs)
    return TracedModel(loaded, index, function, graph_tensors, placeholders, forward, signature)


def _index_graph(
    graph: Any,
    outputs: list[Any],
    name_of: Callable[[Any], tuple[str, str | None]],
    model_format: str,
    owners: Mapping[str, Owner] | None = None,
) -> tuple[ModelIndex, dict[str, Any]]:
    """Every value tensor the outputs depend on, in graph (creation, hence topological) order.

    With ``owners`` (Keras models), the ops inside loop bodies and branches are
    listed too (:func:`probe_cli.control_flow.expand`), right before the outputs
    of the While/If/Case op that runs them.
    """
    reachable = reachable_ops(outputs)
    ops = [op for op in graph.get_operations() if op in reachable]
    inner: dict[Any, list[control_flow.BodyOp]] = {}
    if owners is not None:
        for op in ops:
            if op.type in control_flow.CONTROL_FLOW_TYPES:
                name, layer = name_of(op)
                inner[op] = control_flow.expand(op, name, layer, owners)
    pairs = [(op.name, name_of(op)[0]) for op in ops]
    pairs += [(entry.key, entry.name) for entries in inner.values() for entry in entries]
    op_names = unique_names(pairs)
    tensors: list[TensorInfo] = []
    graph_tensors: dict[str, Any] = {}
    for op in ops:
        base = op_names[op.name]
        layer = name_of(op)[1]
        for entry in inner.get(op, ()):
            for tensor in control_flow.value_outputs(entry.op):
                name = f"{op_names[entry.key]}:{tensor.value_index}"
                tensors.append(
                    TensorInfo(
                        name=name,
                        graph_name=f"{entry.key}:{tensor.value_index}",
                        op_type=entry.op.type,
                        dtype=tensor.dtype.name,
                        shape=shape_of(tensor),
                        layer=entry.layer,
                        order=len(tensors),
                        context=entry.context,
                    )
                )
                graph_tensors[name] = tensor
        for tensor in control_flow.value_outputs(op):
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
