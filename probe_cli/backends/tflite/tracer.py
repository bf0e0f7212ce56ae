"""A TensorFlow Lite model indexed from its interpreter: inputs, every tensor an op produces, layers.

Ops and their tensors come from the interpreter (``_get_ops_details()``, ``get_tensor_details()``)
of the main subgraph, in op (execution) order. Constants and weights are no op's output and are
not listed, as in the other formats; the delegate nodes the interpreter adds at run time
(``DELEGATE``) are no ops of the model. Names: :func:`probe_cli.core.graph_names.tflite_names`.

The :class:`~probe_cli.backends.base.TracedModel` fields named after TensorFlow hold TFLite's
counterparts here: ``function`` is the :class:`TFLiteGraph` (interpreter and op table),
``graph_tensors`` maps probe names to tensor indices, ``placeholders`` input names to the input
tensors' indices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe_cli.backends.base import Backend, TracedModel, named_layers
from probe_cli.backends.tflite.loader import TFLiteLoaded
from probe_cli.core.errors import ModelLoadError
from probe_cli.core.graph_names import activation_name, input_name, tflite_names
from probe_cli.core.types import InputSpec, ModelIndex, Shape, TensorInfo

#: The op type of a model input's tensor (no op produces it).
INPUT_OP = "INPUT"
#: Nodes the interpreter adds when a delegate takes ops over; not ops of the model.
DELEGATE_OP = "DELEGATE"
#: The raw name of a tensor the converter named after the SavedModel signature's output it feeds
#: (``StatefulPartitionedCall_1:0``, or ``StatefulPartitionedCall_1:01`` for the int8 value a DEQUANTIZE
#: turns into it): it says nothing of the op that computed it.
SIGNATURE_OUTPUT = re.compile(r"^(StatefulPartitionedCall|PartitionedCall|Identity)(_\d+)?(:\d+)?$")
#: TensorFlow Lite activation ops and the TensorFlow op a Keras layer's activation is traced as.
ACTIVATIONS = {
    "SOFTMAX": "Softmax",
    "LOGISTIC": "Sigmoid",
    "TANH": "Tanh",
    "RELU": "Relu",
    "RELU6": "Relu6",
    "ELU": "Elu",
    "GELU": "Gelu",
    "HARD_SWISH": "HardSwish",
    "LOG_SOFTMAX": "LogSoftmax",
}


@dataclass
class InputBinding:
    """One model input as the executor feeds it."""

    name: str
    index: int
    dtype: np.dtype
    #: the interpreter's input shape after loading, and its signature (-1: resizable)
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    #: whether axis 0 runs over samples (a batch of 1, or a dynamic batch)
    batched: bool
    #: (scale, zero_point) of a quantized input, to quantize real values fed to it
    quantization: tuple[float, int] | None = None


@dataclass
class TFLiteGraph:
    """The interpreter and what the executors need to know about its tensors."""

    interpreter: Any
    inputs: list[InputBinding]
    #: probe name -> tensor indices of the op inputs that produced it (inputs' tensors: none)
    op_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: tensor index -> probe name of every listed tensor
    names: dict[int, str] = field(default_factory=dict)
    #: probe names of tensors whose axis 0 runs over samples (stacked along it when run sample by sample)
    batched: set[str] = field(default_factory=set)
    #: whether a batch that does not fit the inputs' current shape was refused by a resize once
    resize_failed: bool = False
    #: input tensor index -> the shape the interpreter's input has now (executors share the interpreter)
    current: dict[int, tuple[int, ...]] = field(default_factory=dict)


def _dtype_name(dtype: Any) -> str | None:
    """The dtype as probe writes it (``float32``, ``int8``, ``string``), None for handles (resources, variants),
    which are no values and are not listed."""
    try:
        value = np.dtype(dtype)
    except TypeError:
        return None
    if value.kind in "SU":  # the interpreter gives kTfLiteString as bytes
        return "string"
    if value.kind in "OV":  # resources (VAR_HANDLE's) and variants: reading one crashes the interpreter
        return None
    return value.name


def quantization_of(details: dict[str, Any], dtype: str | None) -> dict[str, Any] | None:
    """``scale``/``zero_point``/``quantized_dimension`` of a quantized integer tensor; None otherwise.

    ``quantization_parameters`` is read: the older ``quantization`` tuple reads ``(0.0, 0)`` even for
    quantized tensors. Scales are float32 in the model and stay exact as Python floats.
    """
    if dtype is None or dtype == "string" or np.dtype(dtype).kind not in "iu":
        return None
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=np.float32).ravel()
    zero_points = np.asarray(params.get("zero_points", ()), dtype=np.int64).ravel()
    if not scales.size or not np.any(scales != 0):
        return None
    if not zero_points.size:
        zero_points = np.zeros(1, dtype=np.int64)
    axis = int(params.get("quantized_dimension", 0) or 0)
    if scales.size == 1 and zero_points.size == 1:
        return {"scale": float(scales[0]), "zero_point": int(zero_points[0]), "quantized_dimension": axis}
    return {
        "scale": [float(s) for s in scales],
        "zero_point": [int(z) for z in zero_points],
        "quantized_dimension": axis,
    }


def _shapes(details: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A tensor's shape as allocated, and its signature (-1 for a dimension known only at run time; the
    allocated shape of such a tensor is a placeholder until ``invoke()``)."""
    static = tuple(int(x) for x in details["shape"])
    sig = tuple(int(x) for x in details.get("shape_signature", ()))
    return static, sig if len(sig) == len(static) else static


def _listed_shape(sig: tuple[int, ...], batched: bool) -> Shape:
    """The shape probe lists: unknown (None) where the signature says -1, and on a batch axis."""
    return tuple(None if (s == -1 or (axis == 0 and batched)) else s for axis, s in enumerate(sig))


def _natural(key: str) -> list[Any]:
    """``output_2`` before ``output_10``, ``keras_tensor_9`` before ``keras_tensor_14``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _ordered_io(indices: Sequence[int], by_name: dict[str, int] | None) -> list[tuple[str | None, int]]:
    """The model's inputs (or outputs): its signature's, by name (natural order: ``output_0``,
    ``output_1``, ... are a Keras model's outputs in order), else the interpreter's, in its order."""
    if by_name is None:
        return [(None, int(i)) for i in indices]
    return [(name, int(by_name[name])) for name in sorted(by_name, key=_natural)]


def trace_tflite(loaded: TFLiteLoaded, backend: Backend) -> TracedModel:
    """Indexes the interpreter's main subgraph."""
    interpreter = loaded.interpreter
    try:
        details = {int(d["index"]): d for d in interpreter.get_tensor_details()}
        ops = [op for op in interpreter._get_ops_details() if op.get("op_name") != DELEGATE_OP]  # noqa: SLF001
        input_indices = [int(d["index"]) for d in interpreter.get_input_details()]
        output_indices = [int(d["index"]) for d in interpreter.get_output_details()]
    except Exception as exc:  # noqa: BLE001 - a damaged model fails anywhere in the interpreter's accessors
        raise ModelLoadError(f"cannot read the tensors of {loaded.where()}: {' '.join(str(exc).split())}") from None
    signature = loaded.signature
    inputs_io = _ordered_io(input_indices, signature["inputs"] if signature else None)
    outputs_io = _ordered_io(output_indices, signature["outputs"] if signature else None)

    # Inputs: the batch axis (a batch of 1, or a dynamic one) takes any number of samples.
    specs: list[InputSpec] = []
    bindings: list[InputBinding] = []
    tensors: list[TensorInfo] = []
    graph_tensors: dict[str, int] = {}
    input_names: set[str] = set()
    for key, index in inputs_io:
        d = details.get(index)
        if d is None:
            raise ModelLoadError(f"input tensor {index} of {loaded.where()} has no type")
        dtype = _dtype_name(d["dtype"])
        if dtype is None:
            raise ModelLoadError(f"input {d['name']!r} of {loaded.where()} is a handle, not a value probe can feed")
        name = key if key is not None else input_name(str(d["name"]), input_names)
        input_names.add(name)
        static, sig = _shapes(d)
        batched = bool(sig) and sig[0] in (-1, 1)
        shape = _listed_shape(sig, batched)
        quantization = quantization_of(d, dtype)
        spec = InputSpec(name=name, dtype=dtype, shape=shape, graph_name=str(d["name"]))
        specs.append(spec)
        scalar = quantization if quantization and not isinstance(quantization["scale"], list) else None
        bindings.append(
            InputBinding(
                name,
                index,
                np.dtype(d["dtype"]),
                static,
                sig,
                batched,
                (scalar["scale"], scalar["zero_point"]) if scalar else None,
            )
        )
        info = TensorInfo(
            name=f"{name}:0",
            graph_name=str(d["name"]),
            op_type=INPUT_OP,
            dtype=dtype,
            shape=shape,
            layer=name,
            order=len(tensors),
            quantization=quantization,
        )
        tensors.append(info)
        graph_tensors[info.name] = index
    model_batched = any(b.batched for b in bindings)
    model_batch = next((b.shape[0] for b in bindings if b.batched), None)

    # Every tensor an op produces, in op order.
    produced: list[tuple[dict[str, Any], int, dict[str, Any], str]] = []
    listed_inputs = {b.index for b in bindings}
    for op in ops:
        for index in (int(i) for i in op.get("outputs", ())):
            d = details.get(index)
            dtype = _dtype_name(d["dtype"]) if d is not None else None
            if d is None or dtype is None or index in listed_inputs:
                continue
            listed_inputs.add(index)
            produced.append((op, index, d, dtype))
    raw_names = [str(d["name"]) or f"tensor_{index}" for _, index, d, _ in produced]
    named = tflite_names(raw_names, [str(op.get("op_name", "")) for op, *_ in produced], {t.name for t in tensors})
    names = {t_index: t.name for t, t_index in ((t, graph_tensors[t.name]) for t in tensors)}
    graph = TFLiteGraph(interpreter, bindings, current={b.index: b.shape for b in bindings})
    for b in bindings:
        if b.batched:
            graph.batched.add(f"{b.name}:0")
    layer_of_index: dict[int, str | None] = {}  # of op outputs
    taken = {t.name for t in tensors} | {name for name, _ in named}
    for (op, index, d, dtype), (name, layer) in zip(produced, named):
        op_type = str(op.get("op_name", ""))
        op_inputs = tuple(int(i) for i in op.get("inputs", ()) if int(i) >= 0)
        if layer is None and op_type in ACTIVATIONS and SIGNATURE_OUTPUT.match(str(d["name"])):
            name, layer = _activation_name(name, op_type, op_inputs, layer_of_index, taken)
        _, sig = _shapes(d)
        batched = bool(sig) and model_batched and (sig[0] == -1 or (model_batch == 1 and sig[0] == 1))
        shape = _listed_shape(sig, batched)
        info = TensorInfo(
            name=name,
            graph_name=str(d["name"]),
            op_type=op_type,
            dtype=dtype,
            shape=shape,
            layer=layer,
            order=len(tensors),
            quantization=quantization_of(d, dtype),
        )
        tensors.append(info)
        graph_tensors[name] = index
        names[index] = name
        layer_of_index[index] = layer
        graph.op_inputs[name] = op_inputs
        if batched:
            graph.batched.add(name)
    graph.names = names
    outputs = tuple(names[index] for _, index in outputs_io if index in names)
    layers = named_layers(tensors, specs, graph.op_inputs, names, outputs, INPUT_OP)
    extra = {"interpreter": loaded.runtime}
    if signature:
        extra["signature"] = signature["signature"]
    model_index = ModelIndex(
        model_format=loaded.model_format,
        inputs=tuple(specs),
        outputs=outputs,
        layers=layers,
        tensors=tuple(tensors),
        extra=extra,
    )
    placeholders: dict[str, Any] = {b.name: b.index for b in bindings}
    return TracedModel(loaded, model_index, graph, dict(graph_tensors), placeholders, backend)


def _activation_name(
    name: str, op_type: str, op_inputs: Sequence[int], layer_of_index: dict[int, str | None], taken: set[str]
) -> tuple[str, str | None]:
    """A tensor named after the signature's output (:data:`SIGNATURE_OUTPUT`) that an activation op computed
    from a layer's tensor: see :func:`~probe_cli.core.graph_names.activation_name`."""
    layer = next((layer_of_index.get(i) for i in op_inputs if layer_of_index.get(i) is not None), None)
    return activation_name(name, ACTIVATIONS[op_type], layer, taken)
