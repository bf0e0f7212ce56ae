"""TensorFlow graphs on disk: SavedModel directories and frozen GraphDef ``.pb`` files.

Both become a GraphDef (a SavedModel's signature frozen into one), so one tracer serves both.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import LoadedModel, Source
from probe_cli.core.errors import ModelLoadError, UsageProblem

SAVED_MODEL = "saved-model"
GRAPH_DEF = "graph-def"
DESCRIBES = "TensorFlow SavedModel directories, frozen GraphDef .pb"
DEFAULT_SIGNATURE = "serving_default"

log = logging.getLogger(__name__)


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
        loaded.layer_names = keras_metadata_layers(path)
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _revive(path: Path) -> Any:
    """The SavedModel as TensorFlow 2 revives it, or, when its object graph cannot be revived (a
    tf.keras 2 model's optimizer slots: ``'_UserObject' object has no attribute 'add_slot'``), its
    MetaGraph and variables loaded as ``saved_model_cli`` does; its signatures are the same."""
    tf = tfenv.tf()
    try:
        saved = tf.saved_model.load(str(path))
        log.info("SavedModel %s: loaded through its object graph (tf.saved_model.load)", path)
        return saved
    except Exception as exc:  # noqa: BLE001 - a broken SavedModel raises anything
        revive_error = exc
    from tensorflow.python.saved_model import load_v1_in_v2

    try:
        saved = load_v1_in_v2.load(str(path), tags=_serving_tags(path))
    except Exception:  # noqa: BLE001 - the first error says more about the file
        raise ModelLoadError(f"cannot load SavedModel {str(path)!r}: {_first_line(revive_error)}") from None
    log.info(
        "SavedModel %s: its object graph could not be revived (%s); loaded its MetaGraph and variables instead",
        path,
        _first_line(revive_error),
    )
    return saved


def _serving_tags(path: Path) -> list[str] | None:
    """The tags of the MetaGraph to load: ``serve`` when there is one, else the only one (None: let TF pick)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError; TF reports it better
        return None
    tag_sets = [list(meta.meta_info_def.tags) for meta in saved_model.meta_graphs]
    return next((tags for tags in tag_sets if "serve" in tags), tag_sets[0] if len(tag_sets) == 1 else None)


def keras_metadata_layers(path: Path) -> frozenset[str] | None:
    """Names of the layers a tf.keras 2 SavedModel lists in ``keras_metadata.pb``; None without one."""
    import json

    file = path / "keras_metadata.pb"
    if not file.is_file():
        return None
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(file.read_bytes())
    except Exception:  # noqa: BLE001 - unreadable metadata: names are derived without it
        return None
    names = set()
    for node in metadata.nodes:
        try:
            name = json.loads(node.metadata).get("name")
        except (ValueError, AttributeError):
            continue
        is_layer = node.identifier.startswith("_tf_keras") and node.identifier != "_tf_keras_metric"
        if isinstance(name, str) and is_layer and node.node_path != "root":
            names.add(name)
    return frozenset(names) or None


def load_saved_model(path: Path, signature: str = DEFAULT_SIGNATURE) -> tuple[Any, dict[str, Any]]:
    """The signature's function frozen into a GraphDef, and its input/output names."""
    tf = tfenv.tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    saved = _revive(path)
    # The TF1 loader also lists the init op ("__saved_model_init_op"), which is no signature to run.
    signatures = {k: v for k, v in (getattr(saved, "signatures", {}) or {}).items() if not k.startswith("__")}
    if signature not in signatures:
        known = ", ".join(sorted(signatures)) or "none"
        raise UsageProblem(f"SavedModel {str(path)!r} has no signature {signature!r}", f"signatures: {known}")
    function = signatures[signature]
    try:
        frozen = convert_variables_to_constants_v2(function)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot freeze signature {signature!r}: {_first_line(exc)}") from None
    _, kwargs = function.structured_input_signature
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    names = list(kwargs) if len(kwargs) == len(placeholders) else [t.op.name for t in placeholders]
    outputs = tf.nest.flatten(frozen.structured_outputs, expand_composites=True)
    return frozen.graph.as_graph_def(), {
        "signature": signature,
        "inputs": {name: t.name for name, t in zip(names, placeholders)},
        "outputs": [t.name for t in outputs if hasattr(t, "name")],
    }
