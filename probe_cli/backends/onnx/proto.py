"""The part of ONNX's protobuf schema probe reads, as message classes of a private descriptor pool.

probe needs the graph (nodes, their attributes, value types, initializers' types and shapes) and a way to
write the model back with other outputs; the ``onnx`` package brings both but costs 0.5 s to import
(most of it ``ml_dtypes``), more than a whole dump of a small model. Fields are numbered as in
``onnx/onnx.proto`` (proto2); fields left out are kept as unknown fields, so a model parsed and written
again keeps them byte for byte. A private pool cannot clash with ``onnx``'s own classes in one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "float": _F.TYPE_FLOAT,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "enum": _F.TYPE_INT32,  # read as its number: probe needs no enum names, and unknown values stay readable
}
#: message -> fields (name, number, type or ``.onnx.Message``, repeated, oneof index); a nested message is
#: ``Outer.Inner``.
_SCHEMA: dict[str, list[tuple[str, int, str, bool, int | None]]] = {
    "ModelProto": [
        ("ir_version", 1, "int64", False, None),
        ("opset_import", 8, ".onnx.OperatorSetIdProto", True, None),
        ("producer_name", 2, "string", False, None),
        ("producer_version", 3, "string", False, None),
        ("graph", 7, ".onnx.GraphProto", False, None),
        ("functions", 25, "bytes", True, None),  # model-local functions, kept whole for ONNX Runtime
    ],
    "OperatorSetIdProto": [("domain", 1, "string", False, None), ("version", 2, "int64", False, None)],
    "GraphProto": [
        ("node", 1, ".onnx.NodeProto", True, None),
        ("name", 2, "string", False, None),
        ("initializer", 5, ".onnx.TensorProto", True, None),
        ("sparse_initializer", 15, ".onnx.SparseTensorProto", True, None),
        ("input", 11, ".onnx.ValueInfoProto", True, None),
        ("output", 12, ".onnx.ValueInfoProto", True, None),
        ("value_info", 13, ".onnx.ValueInfoProto", True, None),
    ],
    "NodeProto": [
        ("input", 1, "string", True, None),
        ("output", 2, "string", True, None),
        ("name", 3, "string", False, None),
        ("op_type", 4, "string", False, None),
        ("domain", 7, "string", False, None),
        ("attribute", 5, ".onnx.AttributeProto", True, None),
    ],
    "AttributeProto": [
        ("name", 1, "string", False, None),
        ("type", 20, "enum", False, None),
        ("f", 2, "float", False, None),
        ("i", 3, "int64", False, None),
        ("s", 4, "bytes", False, None),
        ("t", 5, ".onnx.TensorProto", False, None),
        ("g", 6, ".onnx.GraphProto", False, None),
        ("floats", 7, "float", True, None),
        ("ints", 8, "int64", True, None),
        ("strings", 9, "bytes", True, None),
        ("tensors", 10, ".onnx.TensorProto", True, None),
        ("graphs", 11, ".onnx.GraphProto", True, None),
    ],
    "ValueInfoProto": [("name", 1, "string", False, None), ("type", 2, ".onnx.TypeProto", False, None)],
    "TypeProto": [
        ("tensor_type", 1, ".onnx.TypeProto.Tensor", False, 0),
        ("sequence_type", 4, ".onnx.TypeProto.Other", False, 0),
        ("map_type", 5, ".onnx.TypeProto.Other", False, 0),
        ("opaque_type", 7, ".onnx.TypeProto.Other", False, 0),
        ("sparse_tensor_type", 8, ".onnx.TypeProto.Other", False, 0),
        ("optional_type", 9, ".onnx.TypeProto.Other", False, 0),
    ],
    "TypeProto.Tensor": [("elem_type", 1, "int32", False, None), ("shape", 2, ".onnx.TensorShapeProto", False, None)],
    "TypeProto.Other": [],  # a sequence, map, ...: only which kind matters, its content stays unknown fields
    "TensorShapeProto": [("dim", 1, ".onnx.TensorShapeProto.Dimension", True, None)],
    "TensorShapeProto.Dimension": [("dim_value", 1, "int64", False, 0), ("dim_param", 2, "string", False, 0)],
    "TensorProto": [
        ("dims", 1, "int64", True, None),
        ("data_type", 2, "int32", False, None),
        ("float_data", 4, "float", True, None),
        ("int32_data", 5, "int32", True, None),
        ("int64_data", 7, "int64", True, None),
        ("name", 8, "string", False, None),
        ("raw_data", 9, "bytes", False, None),
        ("data_location", 14, "enum", False, None),
    ],
    "SparseTensorProto": [
        ("values", 1, ".onnx.TensorProto", False, None),
        ("dims", 3, "int64", True, None),
    ],
}
#: Repeated numbers ONNX declares ``[packed = true]``, so a model written again keeps their encoding.
_PACKED = frozenset({("TensorProto", "float_data"), ("TensorProto", "int32_data"), ("TensorProto", "int64_data")})
#: ``TensorProto.DataType`` numbers -> numpy dtype names (those numpy has; ``string`` for strings).
ELEMENT_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
}
#: ``TensorProto.DataLocation.EXTERNAL``
EXTERNAL = 1


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="probe/onnx-subset.proto", package="onnx", syntax="proto2")
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for full, fields in _SCHEMA.items():
        outer, _, inner = full.partition(".")
        message = messages[outer].nested_type.add(name=inner) if inner else file.message_type.add(name=outer)
        messages[full] = message
        if any(oneof is not None for *_, oneof in fields):
            message.oneof_decl.add(name="value")
        for name, number, kind, repeated, oneof in fields:
            field = message.field.add(
                name=name, number=number, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            )
            if kind.startswith("."):
                field.type, field.type_name = _F.TYPE_MESSAGE, kind
            else:
                field.type = _TYPES[kind]
            if oneof is not None:
                field.oneof_index = oneof
            if (full, name) in _PACKED:
                field.options.packed = True
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(_file().SerializeToString())


def _message(name: str) -> Any:
    descriptor = _pool.FindMessageTypeByName(f"onnx.{name}")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(_pool).GetPrototype(descriptor)


ModelProto = _message("ModelProto")
ValueInfoProto = _message("ValueInfoProto")
TensorProto = _message("TensorProto")


def array(tensor: Any) -> np.ndarray | None:
    """A ``TensorProto``'s values (an initializer, a ``Constant``'s); None for external data and for element
    types probe does not read this way (strings, float16 and doubles in typed fields)."""
    dtype = ELEMENT_TYPES.get(tensor.data_type)
    if dtype is None or dtype == "string" or tensor.data_location == EXTERNAL:
        return None
    shape = tuple(tensor.dims)
    if tensor.raw_data:
        return np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    if dtype in ("float32", "complex64"):
        values = np.asarray(tensor.float_data, dtype=np.float32)
        return (values.view(np.complex64) if dtype == "complex64" else values).reshape(shape)
    if dtype == "int64":
        return np.asarray(tensor.int64_data, dtype=np.int64).reshape(shape)
    if dtype in ("int32", "int16", "int8", "uint16", "uint8", "bool"):
        return np.asarray(tensor.int32_data, dtype=np.int64).astype(dtype).reshape(shape)
    return None
