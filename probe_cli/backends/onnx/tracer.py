"""An ONNX model's index: every node output of the main graph, in node (topological) order.

Names: a node's output is named after the TensorFlow op it was converted from (``<op>:<i>``), so the
rules that name exported and TFLite tensors (:func:`probe_cli.core.graph_names.tflite_names`) give
Keras names: ``cnn_1/conv2_1/Relu:0`` -> ``conv2/Relu:0`` in layer ``conv2``. A graph output renamed
after the signature (``Identity:0``, ``output_0``) is named through its node; a file converted from
TFLite names its nodes after fused ops, which :func:`_source` splits again. Nodes the converter
inserted end in ``__<N>`` (``Conv__29``, a counter that changes per conversion) and keep their own
names with ``inserted`` noted in their context. Constants are no node output listed.

Layout: ONNX's convolutions and pools work on NCHW, so their outputs are ``NCHW``; ops that keep
their input's layout pass it on, a Transpose permutes it, anything else (Reshape, Flatten, ...)
leaves it unknown. A Conv's input is NCHW too, which gives a Transpose's input its layout (the
model's NHWC image). Never guessed from a shape (H == W == C is common).

Loop/If/Scan bodies are listed apart (:attr:`ModelIndex.unfetchable`): ONNX Runtime returns only
values of the main graph.

The :class:`~probe_cli.backends.base.TracedModel` fields named after TensorFlow hold ONNX's
counterparts here: ``function`` is the :class:`ONNXGraph`, ``graph_tensors`` maps probe names to
ONNX tensor names, ``placeholders`` input names to the graph inputs' names.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe_cli.backends.base import Backend, TracedModel, named_layers
from probe_cli.backends.onnx.loader import ONNXLoaded, ValueType, one_line
from probe_cli.core.errors import ModelLoadError
from probe_cli.core.graph_names import (
    ACTIVATION,
    ANCHOR,
    OFFSET,
    activation_name,
    input_name,
    split_fused_source,
    tflite_names,
)
from probe_cli.core.types import InputSpec, ModelIndex, TensorInfo

#: The op type of a model input's tensor (no node produces it).
INPUT_OP = "INPUT"
#: The context of a tensor a converter inserted (its node name ends in ``__<N>``).
INSERTED = "inserted"
_INSERTED_NAME = re.compile(r"__\d+(:\d+)?$")
#: Nodes whose first output is channel-first whatever their input was (ONNX defines them on NCHW).
CHANNEL_FIRST_OPS = frozenset(
    {
        "Conv",
        "ConvInteger",
        "QLinearConv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "LpPool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "GlobalLpPool",
        "MaxRoiPool",
        "BatchNormalization",
        "InstanceNormalization",
        "LRN",
        "DepthToSpace",
        "SpaceToDepth",
    }
)
#: Ops whose outputs keep the layout of their inputs (elementwise, normalizing, slicing along axes).
LAYOUT_KEEPING_OPS = frozenset(
    {
        "Abs", "Add", "And", "BitShift", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat", "Cos", "Div",
        "Dropout", "Elu", "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid",
        "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean",
        "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "Pad", "Pow", "PRelu", "Reciprocal", "Relu", "Resize",
        "Round", "Selu", "Sigmoid", "Sign", "Sin", "Softplus", "Softsign", "Split", "Sqrt", "Sub", "Sum",
        "Tanh", "ThresholdedRelu", "Upsample", "Where", "Xor", "Slice", "QuantizeLinear", "DequantizeLinear",
        "QLinearAdd", "QLinearMul",
    }
)  # fmt: skip
#: Channel-first layouts by rank.
CHANNEL_FIRST = {3: "NCW", 4: "NCHW", 5: "NCDHW"}
#: Nodes holding subgraphs, and what probe calls them in a context.
SUBGRAPH_OPS = {"Loop": "loop", "Scan": "loop", "If": "branch"}
NOT_FETCHABLE = "inside a Loop/If/Scan subgraph: ONNX Runtime returns values of the main graph only"
#: Nodes whose output is quantized, and the positions of its scale and zero point among their inputs
#: (QDQ's QuantizeLinear; the QOperator form's QLinear* ops, ONNX's and ONNX Runtime's contrib ones).
QUANTIZING_OPS = {
    "QuantizeLinear": (1, 2),
    "QLinearConv": (6, 7),
    "QLinearMatMul": (6, 7),
    "QLinearAdd": (6, 7),
    "QLinearMul": (6, 7),
    "QLinearConcat": (0, 1),
    "QLinearAveragePool": (3, 4),
    "QLinearGlobalAveragePool": (3, 4),
    "QLinearSigmoid": (3, 4),
    "QLinearLeakyRelu": (3, 4),
}
#: Nodes whose integer output keeps the quantization of their (per-tensor quantized) first input.
QUANTIZATION_KEEPING_OPS = frozenset(
    {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Slice", "MaxPool"}
)


@dataclass(frozen=True)
class InputBinding:
    """One model input as the executor feeds it."""

    name: str
    graph_name: str
    dtype: str


@dataclass
class ONNXGraph:
    """The model and what the executors and ``op_inputs`` need to know about its tensors."""

    loaded: ONNXLoaded
    inputs: list[InputBinding]
    #: ONNX tensor name -> probe name of every listed tensor
    names: dict[str, str] = field(default_factory=dict)
    #: probe name -> ONNX tensor names its node read (initializers and constants included)
    op_inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: held while an executor swaps the model's outputs to serialize it (:func:`executor.marked`)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _attribute(node: Any, name: str) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return attr
    return None


def _layouts(nodes: Sequence[Any], ranks: Mapping[str, int]) -> dict[str, str]:
    """ONNX tensor name -> layout letters, tracked through the graph (see the module docstring)."""
    layout: dict[str, str] = {}
    # Backward first: a Conv-family node reads its data input as channel-first; a Transpose feeding one
    # was given the inverse of its permutation (tf2onnx's NHWC -> NCHW of the model input).
    for node in reversed(nodes):
        if node.op_type in CHANNEL_FIRST_OPS and node.input and node.op_type != "DepthToSpace":
            rank = ranks.get(node.input[0])
            if rank in CHANNEL_FIRST:
                layout.setdefault(node.input[0], CHANNEL_FIRST[rank])
        elif node.op_type == "Transpose" and node.output and node.output[0] in layout:
            perm = _perm(node, len(layout[node.output[0]]))
            if perm is not None:
                out = layout[node.output[0]]
                letters = [""] * len(perm)
                for position, axis in enumerate(perm):
                    letters[axis] = out[position]
                layout.setdefault(node.input[0], "".join(letters))
    for node in nodes:
        outputs = [name for name in node.output if name]
        if not outputs:
            continue
        if node.op_type in CHANNEL_FIRST_OPS:
            rank = ranks.get(outputs[0])
            if rank in CHANNEL_FIRST:
                layout[outputs[0]] = CHANNEL_FIRST[rank]
        elif node.op_type == "Transpose" and node.input and node.input[0] in layout:
            source = layout[node.input[0]]
            perm = _perm(node, len(source))
            if perm is not None:
                layout[outputs[0]] = "".join(source[axis] for axis in perm)
        elif node.op_type in LAYOUT_KEEPING_OPS:
            known = {layout[name] for name in node.input if name in layout}
            if len(known) == 1:
                (found,) = known
                for name in outputs:
                    if ranks.get(name) == len(found):
                        layout[name] = found
    return layout


def _perm(node: Any, rank: int) -> list[int] | None:
    attr = _attribute(node, "perm")
    perm = list(attr.ints) if attr is not None else list(reversed(range(rank)))
    return perm if sorted(perm) == list(range(rank)) else None


def _subgraph_nodes(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(context, node) of every node inside ``node``'s subgraphs, nested ones too."""
    kind = SUBGRAPH_OPS.get(node.op_type, "subgraph")
    for attr in node.attribute:
        graphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
        for graph in graphs:
            where = f"{path}/{attr.name}"
            for inner in graph.node:
                yield f"{kind} {where}", inner
                yield from _subgraph_nodes(inner, f"{where}/{inner.name or inner.op_type}")


def _quantization(node: Any, constants: Mapping[str, Any], dtype: str, rank: int | None) -> dict[str, Any] | None:
    """``scale``/``zero_point``/``quantized_dimension`` of a quantizing node's integer output, as TensorFlow
    Lite's are recorded, when its scale and zero point are constants; None otherwise."""
    from probe_cli.backends.onnx import proto

    positions = QUANTIZING_OPS.get(node.op_type)
    if positions is None or not dtype or np.dtype(dtype).kind not in "iu":
        return None
    if _attribute(node, "block_size") is not None:  # blocked quantization (opset 21): no scale per axis entry
        return None
    at_scale, at_zero = positions
    given = list(node.input) + [""] * (at_zero + 1 - len(node.input))
    scale = proto.array(constants[given[at_scale]]) if given[at_scale] in constants else None
    if not given[at_zero]:  # no zero point given: 0
        zero: np.ndarray | None = np.zeros(1, np.int64)
    else:
        zero = proto.array(constants[given[at_zero]]) if given[at_zero] in constants else None
    if scale is None or zero is None or not scale.size:
        return None
    scales, zeros = scale.astype(np.float32).ravel(), zero.astype(np.int64).ravel()
    if scales.size == 1 and zeros.size == 1:
        return {"scale": float(scales[0]), "zero_point": int(zeros[0]), "quantized_dimension": 0}
    attr = _attribute(node, "axis")
    axis = int(attr.i) if attr is not None else 1
    if axis < 0:
        if rank is None:
            return None
        axis += rank
    return {"scale": [float(x) for x in scales], "zero_point": [int(z) for z in zeros], "quantized_dimension": axis}


def trace_onnx(loaded: ONNXLoaded, backend: Backend) -> TracedModel:
    """Indexes the model's main graph."""
    try:
        return _trace(loaded, backend)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged model breaks anywhere in the protos
        raise ModelLoadError(f"cannot read the graph of {loaded.where()}: {one_line(exc)}") from None


def _trace(loaded: ONNXLoaded, backend: Backend) -> TracedModel:
    model = loaded.model
    graph = model.graph
    types = loaded.types
    unknown = ValueType(None, None)
    initialized = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    ranks = {name: len(t.shape) for name, t in types.items() if t.shape is not None}
    layouts = _layouts(list(graph.node), ranks)

    specs: list[InputSpec] = []
    bindings: list[InputBinding] = []
    tensors: list[TensorInfo] = []
    names: dict[str, str] = {}
    taken: set[str] = set()
    for value in graph.input:
        if value.name in initialized:  # IR < 4 lists initializers as inputs: weights, not inputs
            continue
        typed = types.get(value.name, unknown)
        if typed.dtype is None:
            raise ModelLoadError(f"input {value.name!r} of {loaded.where()} is no tensor probe can feed")
        dtype, shape = typed.dtype, typed.shape or ()
        name = input_name(value.name, taken)
        taken.add(name)
        specs.append(InputSpec(name=name, dtype=dtype, shape=shape, graph_name=value.name))
        bindings.append(InputBinding(name, value.name, dtype))
        info = TensorInfo(
            name=f"{name}:0",
            graph_name=value.name,
            op_type=INPUT_OP,
            dtype=dtype,
            shape=shape,
            layer=name,
            order=len(tensors),
            layout=layouts.get(value.name),
        )
        tensors.append(info)
        names[value.name] = info.name

    produced: list[tuple[Any, int, str, str]] = []  # node, output index, tensor name, dtype
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        for position, output in enumerate(node.output):
            if not output or output in names:
                continue
            typed = types.get(output, unknown)
            if not typed.tensor:
                continue  # a sequence, map or optional: no array a batch can be stored as
            produced.append((node, position, output, typed.dtype or ""))
    constants = {t.name: t for t in graph.initializer}
    constants.update(
        {n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"}
    )
    returned = {value.name for value in graph.output}
    producer = {output: node for node in graph.node for output in node.output if output}
    sources = [_source(node, position, output, output in returned, producer) for node, position, output, _ in produced]
    named = tflite_names([raw for raw, _ in sources], None, {t.name for t in tensors})
    taken_names = {t.name for t in tensors} | {name for name, _ in named}
    onnx_graph = ONNXGraph(loaded, bindings)
    layer_of: dict[str, str | None] = {}
    quantized: dict[str, dict[str, Any]] = {}  # ONNX tensor name -> its quantization
    for (node, _position, output, dtype), (name, layer), (raw, inserted) in zip(produced, named, sources):
        if layer is None and node.op_type in ACTIVATIONS and SIGNATURE_OUTPUT.match(raw):
            first = next((layer_of[i] for i in node.input if layer_of.get(i) is not None), None)
            name, layer = activation_name(name, node.op_type, first, taken_names)
        layer_of[output] = layer
        out_shape = types.get(output, unknown).shape
        quantization = _quantization(node, constants, dtype, None if out_shape is None else len(out_shape))
        kept = quantized.get(node.input[0]) if node.op_type in QUANTIZATION_KEEPING_OPS and node.input else None
        if quantization is None and kept is not None and not isinstance(kept["scale"], list) and dtype:
            quantization = kept if np.dtype(dtype).kind in "iu" else None
        if quantization is not None:
            quantized[output] = quantization
        info = TensorInfo(
            name=name,
            graph_name=output,
            op_type=node.op_type,
            dtype=dtype,
            shape=out_shape,
            layer=None if inserted else layer,
            order=len(tensors),
            context=INSERTED if inserted else None,
            layout=layouts.get(output),
            quantization=quantization,
        )
        tensors.append(info)
        names[output] = name
        onnx_graph.op_inputs[name] = tuple(node.input)
    onnx_graph.names = names

    unfetchable: list[TensorInfo] = []
    for node in graph.node:
        if node.op_type in ("Constant",) or not any(a.HasField("g") or a.graphs for a in node.attribute):
            continue
        owner = names[node.output[0]].rpartition(":")[0] if node.output and node.output[0] in names else node.name
        for context, inner in _subgraph_nodes(node, owner):
            for output in inner.output:
                if output and inner.op_type != "Constant":
                    unfetchable.append(
                        TensorInfo(
                            name=output,
                            graph_name=output,
                            op_type=inner.op_type,
                            dtype="",
                            shape=None,
                            layer=None,
                            order=len(tensors) + len(unfetchable),
                            context=context,
                        )
                    )

    outputs = tuple(names[value.name] for value in graph.output if value.name in names)
    layers = named_layers(tensors, specs, onnx_graph.op_inputs, names, outputs, INPUT_OP)
    extra = {"producer": f"{model.producer_name} {model.producer_version}".strip(), "ir_version": str(model.ir_version)}
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    if opsets:
        extra["opsets"] = opsets
    if loaded.external_data:
        extra["external_data"] = "yes"
    index = ModelIndex(
        model_format=loaded.model_format,
        inputs=tuple(specs),
        outputs=outputs,
        layers=layers,
        tensors=tuple(tensors),
        extra=extra,
        unfetchable=tuple(unfetchable),
        unfetchable_why=NOT_FETCHABLE if unfetchable else "",
    )
    placeholders: dict[str, Any] = {b.name: b.graph_name for b in bindings}
    graph_tensors = {probe: onnx_name for onnx_name, probe in names.items()}
    return TracedModel(loaded, index, onnx_graph, graph_tensors, placeholders, backend)


#: A graph output the converter named after the signature (``Identity:0``, ``output_0``,
#: ``StatefulPartitionedCall_1:0``): it says nothing of the node that computes it.
SIGNATURE_OUTPUT = re.compile(r"^(Identity|StatefulPartitionedCall|PartitionedCall|output)(_\d+)?(:\d+)?$")
#: ONNX activation ops; each is named as TensorFlow names the op a Keras activation is traced as.
ACTIVATIONS = frozenset(
    {
        "Relu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
        "Elu",
        "Selu",
        "LeakyRelu",
        "Softplus",
        "Softsign",
        "HardSwish",
        "Gelu",
    }
)


#: Nodes that absorb a bias input beside what they compute (their third input).
BIASED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "QLinearConv"})
#: Nodes that apply a bias or a batch norm's scale and offset.
AFFINE_OPS = frozenset({"Add", "Sub", "Mul", "BatchNormalization"})


#: Nodes that quantize or dequantize the value of the node before them (tf2onnx's QDQ form of an int8 model).
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def _holds(node: Any) -> str:
    """What a node made of a fused TensorFlow Lite op holds (see :func:`split_fused_source`)."""
    if node.op_type in ACTIVATIONS or node.op_type == "Clip":
        return ACTIVATION
    if node.op_type in AFFINE_OPS or (node.op_type in BIASED_OPS and len([i for i in node.input if i]) >= 3):
        return OFFSET
    return ANCHOR


def _quantized(node: Any, producer: Mapping[str, Any]) -> Any:
    """The node whose value a QuantizeLinear/DequantizeLinear carries (tf2onnx names the QuantizeLinear of
    an int8 model after the fused op, ``conv1/Relu;conv1/convolution``: it holds what the ReLU before it
    computes); any other node itself."""
    for _ in range(4):
        if node.op_type not in QDQ_OPS or not node.input or node.input[0] not in producer:
            break
        node = producer[node.input[0]]
    return node


def _fused_origin(node: Any, producer: Mapping[str, Any]) -> str | None:
    """The fused TensorFlow Lite name of the op a converter-inserted node was split off, through the other
    inserted nodes between them (``Relu__102`` <- ``Add__105`` <- ``MatMul;BiasAdd``); None if there is none."""
    for _ in range(4):
        if not node.input or node.input[0] not in producer:
            return None
        node = producer[node.input[0]]
        inserted = bool(_INSERTED_NAME.search(node.name))
        if ";" in node.output[0] and not inserted:
            return str(node.output[0])
        if not inserted:
            return None
    return None


def _source(node: Any, position: int, output: str, returned: bool, producer: Mapping[str, Any]) -> tuple[str, bool]:
    """The name a tensor's probe name is derived from, and whether that is the name of a node the converter
    inserted (``__<N>``).

    Its own name, except: a graph output renamed after the signature is named through its node and
    position; a TFLite tensor's fused name (``c_1/Relu;c_1/BiasAdd;c_1/Conv2D``) gives the op its node
    computes, and the nodes tf2onnx split off that op (``Add__105``, ``Relu__102``) the offset and the
    activation it lists (:func:`~probe_cli.core.graph_names.split_fused_source`). Without a leading ``/``
    (PyTorch's names), which the archive would drop."""
    base = output
    if returned and node.name and SIGNATURE_OUTPUT.match(output) and not SIGNATURE_OUTPUT.match(node.name):
        base = f"{node.name}:{position}"
    inserted = bool(_INSERTED_NAME.search(node.name or output))
    holds = _holds(node)
    if ";" in base and inserted:  # a node the converter added beside a fused op: the part with its counter
        base = base.rpartition(";")[2]
    elif ";" in base:
        held = _holds(_quantized(node, producer))
        base = split_fused_source(base, held) or split_fused_source(base, ANCHOR) or base
    elif inserted and holds != ANCHOR and (fused := _fused_origin(node, producer)) is not None:
        chosen = split_fused_source(fused, holds)
        if chosen is not None:
            base, inserted = chosen, False
    return base.lstrip("/") or output, inserted and bool(_INSERTED_NAME.search(base))
