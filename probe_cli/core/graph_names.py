"""Keras names for the ops of a graph exported from a Keras model (a SavedModel, a frozen ``.pb``).

Exporting wraps the traced model in call ops and keeps the scopes Keras opened while
tracing: layer ``conv1`` of model ``cnn`` becomes ``StatefulPartitionedCall/cnn_1/conv1_1/Relu``,
where probe's Keras backend names it ``conv1/Relu``. Here the call wrappers and the model scope
are dropped and the layer scope's uniquifying suffix removed, so both forms share a name. When
the file lists its layers (``keras_metadata.pb`` of tf.keras 2), only scopes of those layers are
renamed. Anything that does not have that shape keeps its graph name. Pure string logic.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

#: Ops that call a function; freezing keeps them as scopes of the function's ops.
CALL_WRAPPERS = ("StatefulPartitionedCall", "PartitionedCall")
_SUFFIX = re.compile(r"^(.+?)_(\d+)$")


def strip_wrappers(name: str) -> str:
    """``StatefulPartitionedCall/StatefulPartitionedCall/m_1/d_1/Relu`` -> ``m_1/d_1/Relu``."""
    parts = name.split("/")
    cut = 0
    while cut < len(parts) - 1 and parts[cut] in CALL_WRAPPERS:
        cut += 1
    return "/".join(parts[cut:])


def unsuffixed(component: str) -> str:
    """``conv1_1`` -> ``conv1``: a scope without the counter TensorFlow adds to reused names."""
    match = _SUFFIX.match(component)
    return match.group(1) if match else component


def model_scope(op_names: Iterable[str]) -> str | None:
    """The scope the model was called in: the most common first scope with a counter (``cnn_1``)."""
    parts = (strip_wrappers(name).split("/") for name in op_names)
    firsts = Counter(p[0] for p in parts if len(p) >= 3 and _SUFFIX.match(p[0]))
    return firsts.most_common(1)[0][0] if firsts else None


def layer_of(component: str, layers: Collection[str] | None) -> str | None:
    """The layer a scope was opened by: with the file's layer names, only those; else any counted scope."""
    if layers is not None:
        if component in layers:
            return component
        base = unsuffixed(component)
        return base if base != component and base in layers else None
    base = unsuffixed(component)
    return base if base != component else None


def keras_names(op_names: Iterable[str], layers: Collection[str] | None = None) -> dict[str, tuple[str, str]]:
    """graph op name -> (probe op name, layer) for each op inside a layer scope of the model scope."""
    names = list(op_names)
    scope = model_scope(names)
    if scope is None:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for name in names:
        parts = strip_wrappers(name).split("/")
        if len(parts) < 3 or parts[0] != scope:
            continue
        layer = layer_of(parts[1], layers)
        if layer is not None:
            found[name] = ("/".join([layer, *parts[2:]]), layer)
    return found


def pairing_key(graph_name: str) -> str:
    """A graph tensor name with call wrappers, the model scope and scope counters removed, for pairing
    tensors of two forms of one model when their probe names differ (``cnn_1/conv1_1/Relu:0`` and
    ``StatefulPartitionedCall/cnn_1/conv1_1/Relu:0`` -> ``conv1/Relu:0``). The op's own name keeps
    its counter (``add_1`` is not ``add``)."""
    parts = strip_wrappers(graph_name).split("/")
    if len(parts) >= 3 and _SUFFIX.match(parts[0]):
        parts = parts[1:]
    return "/".join([*(unsuffixed(p) for p in parts[:-1]), parts[-1]])


#: A TensorFlow Lite tensor name that ends in an output index (``model_1/split_1/split:1``).
_OUTPUT_INDEX = re.compile(r"^(.+):(\d+)$")
#: TensorFlow Lite ops that can absorb the ops after them: a bias or batch-norm offset (convolutions and
#: matrix products) and an activation (``fused_activation_function``). The tensor such an op outputs
#: holds the value of the last op fused into it, whichever its name lists first.
_FUSING_OPS = frozenset(
    {
        "CONV_2D",
        "CONV_3D",
        "DEPTHWISE_CONV_2D",
        "TRANSPOSE_CONV",
        "FULLY_CONNECTED",
        "BATCH_MATMUL",
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "CONCATENATION",
        "AVERAGE_POOL_2D",
        "MAX_POOL_2D",
    }
)
#: TensorFlow ops a fusing op takes in as its activation: the last op of what it computes.
_ACTIVATION_OPS = frozenset(
    {"Relu", "Relu6", "Relu1", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu", "Softplus", "Softsign", "Gelu"}
)
#: TensorFlow ops a convolution or matrix product takes in after its product: bias, batch-norm offset.
_OFFSET_OPS = frozenset({"BiasAdd", "add_1", "FusedBatchNormV3", "FusedBatchNorm", "AddV2", "Add", "add"})


def _fusion_rank(op_name: str) -> int:
    """How late in a fused op's computation a listed source op comes: activation 2, offset 1, else 0."""
    leaf = unsuffixed(op_name.rpartition("/")[2])
    if leaf in _ACTIVATION_OPS or op_name.rpartition("/")[2] in _ACTIVATION_OPS:
        return 2
    return 1 if op_name.rpartition("/")[2] in _OFFSET_OPS else 0


def _ranked(part: str) -> int:
    return _fusion_rank(strip_wrappers(_OUTPUT_INDEX.sub(r"\1", part)))


#: What a node a converter split off a fused TensorFlow Lite op holds: its activation, its offset (a bias or
#: batch-norm offset), or what the op computes before them (its anchor).
ACTIVATION, OFFSET, ANCHOR = "activation", "offset", "anchor"


def split_fused_source(raw_name: str, holds: str) -> str | None:
    """The source op a node holds when a converter split a fused TensorFlow Lite op again: tf2onnx makes a
    ``CONV_2D`` with a fused ReLU a ``Conv`` (the bias kept in it) and a ``Relu``, a ``FULLY_CONNECTED`` a
    ``MatMul``, an ``Add`` and a ``Relu``, and names the first after the fused tensor
    (``c_1/Relu;c_1/BiasAdd;c_1/Conv2D``). ``holds`` is :data:`ACTIVATION`, :data:`OFFSET` or
    :data:`ANCHOR`; None when the name lists no such op (an anchor: the first listed, then)."""
    listed = [part.strip() for part in raw_name.split(";") if part.strip()]
    rank = {ACTIVATION: 2, OFFSET: 1, ANCHOR: 0}[holds]
    found = next((part for part in listed if _ranked(part) == rank), None)
    return found if found is not None or holds != ANCHOR else (listed[0] if listed else None)


def activation_name(name: str, activation: str, layer: str | None, taken: set[str]) -> tuple[str, str | None]:
    """A model output named after the signature (``Identity:0``) that an activation op computed from a
    layer's tensor is that layer's activation, named as Keras traces it (``probs/Softmax:0``), unless that
    name is taken (``taken`` is updated)."""
    if layer is None:
        return name, None
    candidate = f"{layer}/{activation}:0"
    if candidate in taken:
        return name, None
    taken.discard(name)
    taken.add(candidate)
    return candidate, layer


def tflite_source(raw_name: str, op_type: str | None = None) -> str:
    """The source op a TensorFlow Lite tensor stands for, with its output index if it has one, call
    wrappers stripped. The converter names a tensor after the ops fused into it, joined by ``;``, usually
    the last op first; for an op that absorbs a bias and an activation (``CONV_2D``,
    ``FULLY_CONNECTED``, ...) the listed activation (``Relu``), else the listed offset (``BiasAdd``,
    ``batchnorm/add_1``), is what the tensor holds, wherever it is listed:
    ``m_1/c_1/Relu;m_1/c_1/BiasAdd;m_1/c_1/Conv2D`` -> ``m_1/c_1/Relu``,
    ``m_1/d_1/MatMul;m_1/d_1/Relu`` (``FULLY_CONNECTED``) -> ``m_1/d_1/Relu``."""
    listed = [strip_wrappers(part.strip()) for part in raw_name.split(";") if part.strip()]
    if not listed:
        return ""
    if op_type not in _FUSING_OPS or len(listed) == 1:
        return listed[0]
    return max(listed, key=_fusion_rank)  # max keeps the first of equals


def tflite_names(
    raw_names: Sequence[str], op_types: Sequence[str | None] | None = None, taken: Collection[str] = ()
) -> list[tuple[str, str | None]]:
    """``(probe name, layer)`` for each TensorFlow Lite tensor name (of an op of type ``op_types[i]``),
    in order: all distinct, none in ``taken``.

    A tensor is named after its source op (:func:`tflite_source`) as :func:`keras_names` names that op
    in an exported Keras model, with its output index (``:0`` unless the name has one):
    ``model_1/conv1_1/Relu;model_1/conv1_1/BiasAdd`` -> ``conv1/Relu:0`` in layer ``conv1``, as the
    Keras file and its SavedModel name that tensor. Names that say nothing (``tfl.quantize``,
    ``arith.constant12``, ``StatefulPartitionedCall_1:0``) keep their own, so stay stable.

    When several tensors come to one derived name (an op the converter split in two: a Dense on a
    sequence is a FULLY_CONNECTED on the flattened input, then a RESHAPE back), the last of them gets
    it, as it holds the op's final value; the others keep their raw names (the converter keeps those
    distinct). A name still taken (two tensors with one raw name) becomes ``<name>#<k>``, k = 2, 3, ...
    """
    types = list(op_types) if op_types is not None else [None] * len(raw_names)
    parsed: list[tuple[str, str]] = []
    for raw, op_type in zip(raw_names, types):
        source = tflite_source(raw, op_type)
        match = _OUTPUT_INDEX.match(source)
        parsed.append((match.group(1), match.group(2)) if match else (source, "0"))
    keras = keras_names(op for op, _ in parsed if op)
    wanted: list[tuple[str | None, str | None]] = []
    for op, index in parsed:
        probe_op, layer = keras.get(op, (op, None))
        wanted.append((f"{probe_op}:{index}" if probe_op else None, layer))
    last = {name: position for position, (name, _) in enumerate(wanted) if name is not None}
    used = set(taken)
    named: list[tuple[str, str | None]] = []
    for position, (raw, (name, layer)) in enumerate(zip(raw_names, wanted)):
        own = raw if _OUTPUT_INDEX.match(raw) else f"{raw}:0"
        derived = name is not None and name != own
        if name is None or name in used or (derived and last[name] != position):
            name = own
            if name in used or name in last:  # a raw name that is another tensor's probe name
                k = 2
                while f"{own}#{k}" in used or f"{own}#{k}" in last:
                    k += 1
                name = f"{own}#{k}"
        used.add(name)
        named.append((name, layer))
    return named


def input_name(raw: str, taken: Collection[str]) -> str:
    """A model input's name from its graph tensor's, without ``serving_default_`` and ``:0``, and not in ``taken``."""
    name = raw.removeprefix("serving_default_")
    if name.endswith(":0"):
        name = name[:-2]
    name = name or "input"
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
