"""Trace a Keras model once into a graph and index every op tensor under probe's names.

Keras 3 has no symbolic graph tensors, so probe traces ``model(x, training=False)``
with ``tf.compat.v1.wrap_function``: variables stay captured (no freezing) and
the wrapped function can later be pruned to any set of tensors. While tracing,
each layer's ``call`` is wrapped to record the name scope it ran in and the
tensors it returned; :mod:`probe_cli.core.names` turns those into stable names.
The model object is left as it was found: the wrappers are removed afterwards.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import Backend, LoadedModel, TracedModel
from probe_cli.backends.tfgraph import index_graph, shape_of
from probe_cli.core.errors import ModelLoadError
from probe_cli.core.names import Frame, LayerCall, call_owners, display_name
from probe_cli.core.types import InputSpec, LayerInfo, ModelIndex, Region


def _op_name(name: str) -> str:
    """A valid TensorFlow op name for a Keras input name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)
    return cleaned if re.match(r"[A-Za-z0-9.]", cleaned) else f"input_{cleaned}"


def _source_placeholder(tensor: Any) -> Any | None:
    """The placeholder a tensor is, or is a cast/identity of."""
    op = tensor.op
    while op.type in ("Cast", "Identity") and op.inputs:
        op = op.inputs[0].op
    return op if op.type == "Placeholder" else None


@contextmanager
def untouched(model: Any) -> Iterator[None]:
    """The caller's model object as it was after a trace: tracing calls the model, and Keras records
    that on it (``_called``, built shapes). Attributes added are removed, replaced ones put back, and
    lists and dicts changed in place get their old items back."""
    saved = [(layer, dict(vars(layer))) for layer in model._flatten_layers(include_self=True, recursive=True)]
    items = {
        id(value): list(value.items()) if isinstance(value, dict) else list(value)
        for _, attrs in saved
        for value in attrs.values()
        if isinstance(value, (list, dict))
    }
    try:
        yield
    finally:
        for layer, attrs in saved:
            current = vars(layer)
            for key in [key for key in current if key not in attrs]:
                del current[key]
            for key, value in attrs.items():
                current[key] = value
                if id(value) in items:
                    _restore_items(value, items[id(value)])


def _same(a: Any, b: Any) -> bool:
    """Identity, or equality of plain values (arrays and tensors compare element-wise, or not at all)."""
    if a is b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):  # a dict's items
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "shape") or hasattr(b, "shape"):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object whose == cannot answer is taken as changed
        return False


def _restore_items(container: Any, old: list[Any]) -> None:
    now = list(container.items()) if isinstance(container, dict) else list(container)
    if len(now) == len(old) and all(_same(a, b) for a, b in zip(now, old)):
        return
    if isinstance(container, dict):
        dict.clear(container)
        dict.update(container, old)
    else:
        list.__setitem__(container, slice(None), old)


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
        tf = tfenv.tf()
        keras = tfenv.keras()
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


def _keras_input_specs(model: Any) -> tuple[list[tuple[str, Any]], Any]:
    """Name and ``tf.TensorSpec`` of each model input, in the order ``forward`` receives them, and
    the structure (list, dict) to pack them into, if any.

    Functional and Sequential models know their inputs; a subclassed model only
    knows the shapes it was built with (its build config), from which the specs
    are derived with a free batch dimension.
    """
    tf = tfenv.tf()
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        specs = [(t.name, tf.TensorSpec(t.shape, t.dtype, name=_op_name(t.name))) for t in inputs]
        return specs, getattr(model, "_inputs_struct", None)
    built = _built_input_specs(model)
    if built is None:
        raise ModelLoadError(
            f"model {model.name!r} ({type(model).__name__}) has no known inputs: "
            "it was saved before it was built or called, so its input shapes were never recorded",
            "call it once on data (or model.build(shape)) before saving it as .keras, or save it as a functional model",
        )
    return built


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


def _built_input_specs(model: Any) -> tuple[list[tuple[str, Any]], Any] | None:
    """Input specs of a subclassed model from the shapes it was built with (as Keras' own export does).

    The batch dimension becomes None, the dtype is the model's input dtype
    (``float32`` unless its dtype policy says otherwise). When the input is a
    list or dict, its structure comes too, so the traced forward packs the
    placeholders back into it. None when nothing is recorded.
    """
    tf = tfenv.tf()
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
    packing = None if _is_shape(structure) else getattr(model, "_inputs_struct", None) or _plain_structure(structure)
    return specs, packing


def _input_spec_shapes(model: Any) -> Any:
    """Fully known shapes declared in ``model.input_spec``; None otherwise."""
    declared = getattr(model, "input_spec", None)
    if declared is None:
        return None
    many = isinstance(declared, (list, tuple))
    shapes = [getattr(spec, "shape", None) for spec in (declared if many else [declared])]
    known = [tuple(shape) for shape in shapes if shape is not None]
    if not known or len(known) < len(shapes):
        return None
    return known if many else known[0]


def trace_keras(loaded: LoadedModel, backend: Backend) -> TracedModel:
    tf = tfenv.tf()
    keras = tfenv.keras()
    model = loaded.keras_model
    specs, structure = _keras_input_specs(model)

    def forward(*xs: Any) -> Any:
        if structure is not None:
            args = keras.tree.pack_sequence_as(structure, list(xs))
        else:  # Sequential and subclassed models take a single tensor, or a list
            args = xs[0] if len(xs) == 1 else list(xs)
        return model(args, training=False)

    with untouched(model), _CallRecorder(model) as recorder:
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
    index, graph_tensors = index_graph(graph, list(function.outputs), name_of, "keras", owners)

    by_graph_name = {t.graph_name: t.name for t in index.tensors if t.region is Region.TOP}
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
    return TracedModel(loaded, index, function, graph_tensors, placeholders, backend, forward, signature)
