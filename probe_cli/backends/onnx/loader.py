"""ONNX models: detected by the opening of their ``ModelProto``, parsed by probe's own schema
(:mod:`~probe_cli.backends.onnx.proto`), typed and run by ONNX Runtime.

ONNX Runtime comes from the ``onnx`` extra (``pip install 'probe-cli[onnx]'``); the file is recognised
without it, so a missing extra is a one-line error that names it. Weights kept in external data files
are not read here: the graph alone is loaded, and each session is built from a copy of the model saved
next to the data (see :mod:`~probe_cli.backends.onnx.executor`).

Types and shapes of the values no file declares (tf2onnx declares none between input and output) are
ONNX Runtime's: a session of the graph with every node output marked and the weights replaced by typed
inputs (so it holds no weights and reads no external data), never run; ``get_outputs()`` then gives what
its shape inference found. That is ONNX's own shape inference (plus ONNX Runtime's contrib ops), at a
fifth of the cost of ``onnx.shape_inference`` and without importing ``onnx``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe_cli.backends.base import LoadedModel, Source
from probe_cli.core.errors import MissingExtra, ModelLoadError
from probe_cli.core.types import Shape

ONNX = "onnx"
DESCRIBES = "ONNX .onnx"
INSTALL_HINT = "pip install 'probe-cli[onnx]'"
#: Tags of the fields a ``ModelProto`` may hold after ``ir_version`` (field 1), which protobuf writes
#: first: producer name/version, domain, model version, doc string, graph, opset imports, metadata,
#: training info, functions. A GraphDef opens with a node (``0x0a``), a flatbuffer with an offset.
_NEXT_FIELDS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A, 0x8A})
#: IR versions that exist (1 in 2017 ... 11 in 2025), with room for the next few.
_IR_VERSIONS = range(1, 32)
#: Initializers up to this many elements stay in the typing session: shape inference reads the values of
#: shape, axes, pads and scales inputs (a Reshape's output shape is its shape input's value).
_KEPT_ELEMENTS = 1024
#: ONNX Runtime's element type names that differ from numpy's (others, int8 ... uint64, bool, string, are alike).
_ORT_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "complex64": "complex64"}

log = logging.getLogger(__name__)


def detect(path: Path, head: bytes) -> str | None:
    """``onnx`` when ``head`` opens as a ``ModelProto``: field 1 (``ir_version``) with a known version, then
    another of its fields (or the end, for a file cut just after it)."""
    if path.is_dir() or len(head) < 2 or head[0] != 0x08 or head[1] not in _IR_VERSIONS:
        return None
    if len(head) == 2 or head[2] in _NEXT_FIELDS:
        return ONNX
    return None


@dataclass(frozen=True)
class ValueType:
    """What is known of one value of the graph."""

    #: numpy dtype name (``string`` for strings); None when unknown or with no numpy dtype (bfloat16, float8)
    dtype: str | None
    shape: Shape | None
    #: False for a sequence, map or optional: nothing a batch can be stored as
    tensor: bool = True


@dataclass
class ONNXLoaded(LoadedModel):
    """A loaded ``.onnx``: its ``ModelProto`` (external data not read) and the types of its values."""

    model: Any = None
    #: whether weights live in external data files (sessions are then built from a file beside them)
    external_data: bool = False
    #: ONNX value name -> its type: declared in the file, else inferred by ONNX Runtime
    types: dict[str, ValueType] = field(default_factory=dict)


def modules() -> Any:
    """``onnxruntime``; without it a one-line :class:`MissingExtra` naming the extra."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtra("reading ONNX models needs onnxruntime", INSTALL_HINT) from None
    return onnxruntime


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load(source: Source) -> ONNXLoaded:
    ort = modules()
    from probe_cli.backends.onnx import proto  # here, not on import: every command loads the registry

    path = source.path
    where = f"ONNX model {str(path)!r}"
    try:
        model = proto.ModelProto.FromString(path.read_bytes())
    except OSError as exc:
        raise ModelLoadError(f"cannot read {where}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ValueError, ...
        raise ModelLoadError(f"cannot load {where}: {one_line(exc)} (truncated or corrupt?)") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelLoadError(f"cannot load {where}: it holds no graph (truncated or corrupt?)")
    external = any(t.data_location == proto.EXTERNAL for t in _initializers(model.graph))
    types = declared_types(model.graph)
    try:
        inferred = _inferred_types(model, ort)
        # what the file declares in full stands (ONNX Runtime gives a scalar and an unknown rank alike)
        types.update({n: t for n, t in inferred.items() if n not in types or None in (types[n].dtype, types[n].shape)})
    except Exception as exc:  # noqa: BLE001 - a model ONNX Runtime cannot type is listed untyped; a run says why
        log.info("ONNX model %s: ONNX Runtime cannot type its values (%s)", path, one_line(exc))
    log.info("ONNX model %s: IR %s, %d nodes", path, model.ir_version, len(model.graph.node))
    return ONNXLoaded(
        path,
        source.model_format,
        source.digest,
        origin=str(path.resolve()),
        model=model,
        external_data=external,
        types=types,
    )


def declared_types(graph: Any) -> dict[str, ValueType]:
    """The types the graph itself declares: its inputs, outputs and ``value_info``."""
    from probe_cli.backends.onnx import proto

    types: dict[str, ValueType] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        kind = info.type.WhichOneof("value")
        if info.name in types or kind is None:
            continue
        if kind != "tensor_type":
            types[info.name] = ValueType(None, None, tensor=False)
            continue
        tensor = info.type.tensor_type
        shape = (
            tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
            if tensor.HasField("shape")
            else None
        )
        types[info.name] = ValueType(proto.ELEMENT_TYPES.get(tensor.elem_type), shape)
    return types


def _inferred_types(model: Any, ort: Any) -> dict[str, ValueType]:
    """Every main-graph value's type as ONNX Runtime infers it (see the module docstring)."""
    from probe_cli.backends.onnx import proto

    graph = model.graph
    typing = proto.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions)
    shell = typing.graph
    shell.node.extend(graph.node)
    shell.input.extend(graph.input)
    shell.value_info.extend(graph.value_info)
    shell.sparse_initializer.extend(graph.sparse_initializer)
    declared = {value.name for value in graph.input}
    for tensor in graph.initializer:
        if tensor.data_location != proto.EXTERNAL and math.prod(tensor.dims) <= _KEPT_ELEMENTS:
            shell.initializer.append(tensor)
        elif tensor.name not in declared:
            value = shell.input.add(name=tensor.name)
            value.type.tensor_type.elem_type = tensor.data_type
            for size in tensor.dims:
                value.type.tensor_type.shape.dim.add(dim_value=size)
    shell.output.extend(graph.output)  # as declared; then every other node output, untyped
    marked = {value.name for value in graph.output}
    for name in dict.fromkeys(name for node in graph.node for name in node.output if name):
        if name not in marked:
            shell.output.append(proto.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # types only: nothing runs
    session = ort.InferenceSession(typing.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {arg.name: _ort_type(arg.type, arg.shape) for arg in session.get_outputs()}


def _ort_type(name: str, dims: list[Any]) -> ValueType:
    """``tensor(float)`` and ``[None, 'unk__3', 32]`` as a :class:`ValueType`. ONNX Runtime gives ``[]`` for a
    scalar and for an unknown rank alike, so ``[]`` is an unknown shape."""
    if not name.startswith("tensor(") or not name.endswith(")"):
        return ValueType(None, None, tensor=False)
    element = name[len("tensor(") : -1]
    dtype = _ORT_TYPES.get(element, element if element in _NUMPY_ALIKE else None)
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in dims) if dims else None
    return ValueType(dtype, shape)


_NUMPY_ALIKE = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string", "complex128"}
)


def _initializers(graph: Any) -> list[Any]:
    return list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
