"""TensorFlow graphs on disk: SavedModel directories and frozen GraphDef ``.pb`` files.

Both become a GraphDef (a SavedModel's signature frozen into one), so one tracer serves both.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import LoadedModel, Source
from probe_cli.core.errors import ModelLoadError, UsageProblem

SAVED_MODEL = "saved-model"
GRAPH_DEF = "graph-def"
DESCRIBES = "TensorFlow SavedModel directories, frozen GraphDef .pb"
DEFAULT_SIGNATURE = "serving_default"


def detect(path: Path, head: bytes) -> str | None:
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return SAVED_MODEL
        return None
    if head and _parsed(path) is not None:
        return GRAPH_DEF
    if _starts_like_graph_def(head):
        raise ModelLoadError(f"cannot parse GraphDef {str(path)!r}: its nodes are broken (truncated or corrupt?)")
    return None


def load(source: Source) -> LoadedModel:
    path = source.path
    loaded = LoadedModel(path, source.model_format, source.digest, origin=str(path.resolve()))
    if source.model_format == SAVED_MODEL:
        loaded.graph_def, loaded.signature = load_saved_model(path, source.signature)
    else:
        loaded.graph_def = read_graph_def(path)
    return loaded


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def _parsed(path: Path) -> Any | None:
    """The file's GraphDef if it parses as one with nodes; parsed once for detection and loading."""
    return _parse(*_stamp(path))


@functools.lru_cache(maxsize=1)
def _parse(path: str, mtime_ns: int, size: int) -> Any | None:
    graph_def = tfenv.tf().compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
        return None
    return graph_def if len(graph_def.node) > 0 and all(node.op for node in graph_def.node) else None


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """The protobuf varint at ``pos`` and the position after it; None if it runs off the end."""
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def _starts_like_graph_def(head: bytes) -> bool:
    """Whether ``head`` opens as a GraphDef does: a node (field 1) whose first field is its printable name."""
    node = _varint(head, 1) if head[:1] == b"\n" else None
    if node is None or head[node[1] : node[1] + 1] != b"\n":
        return False
    name = _varint(head, node[1] + 1)
    if name is None or name[0] == 0 or name[0] + name[1] - node[1] > node[0]:
        return False
    text = head[name[1] : name[1] + name[0]]
    return bool(text) and all(32 < byte < 127 for byte in text)


def read_graph_def(path: Path) -> Any:
    parsed = _parsed(path)
    if parsed is not None:
        return parsed
    graph_def = tfenv.tf().compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
        raise ModelLoadError(f"cannot parse GraphDef {str(path)!r}: {exc}") from None
    return graph_def


def load_saved_model(path: Path, signature: str = DEFAULT_SIGNATURE) -> tuple[Any, dict[str, Any]]:
    """The signature's function frozen into a GraphDef, and its input/output names."""
    tf = tfenv.tf()
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
