"""ONNX models: detected by the opening of their ``ModelProto``, read with ``onnx``, run by ONNX Runtime.

Both come from the ``onnx`` extra (``pip install 'probe-cli[onnx]'``); the file is recognised without
them, so a missing extra is a one-line error that names it. Weights kept in external data files are
not read here: the graph alone is loaded, and each session is built from a copy of the model saved
next to the data (see :mod:`~probe_cli.backends.onnx.executor`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe_cli.backends.base import LoadedModel, Source
from probe_cli.core.errors import MissingExtra, ModelLoadError

ONNX = "onnx"
DESCRIBES = "ONNX .onnx"
INSTALL_HINT = "pip install 'probe-cli[onnx]' (onnx and onnxruntime)"
#: Tags of the fields a ``ModelProto`` may hold after ``ir_version`` (field 1), which protobuf writes
#: first: producer name/version, domain, model version, doc string, graph, opset imports, metadata,
#: training info, functions. A GraphDef opens with a node (``0x0a``), a flatbuffer with an offset.
_NEXT_FIELDS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A, 0x8A})
#: IR versions that exist (1 in 2017 ... 11 in 2025), with room for the next few.
_IR_VERSIONS = range(1, 32)

log = logging.getLogger(__name__)


def detect(path: Path, head: bytes) -> str | None:
    """``onnx`` when ``head`` opens as a ``ModelProto``: field 1 (``ir_version``) with a known version, then
    another of its fields (or the end, for a file cut just after it)."""
    if path.is_dir() or len(head) < 2 or head[0] != 0x08 or head[1] not in _IR_VERSIONS:
        return None
    if len(head) == 2 or head[2] in _NEXT_FIELDS:
        return ONNX
    return None


@dataclass
class ONNXLoaded(LoadedModel):
    """A loaded ``.onnx``: its ``ModelProto`` (external data not read) with shapes inferred."""

    model: Any = None
    #: whether weights live in external data files (sessions are then built from a file beside them)
    external_data: bool = False


def modules() -> tuple[Any, Any]:
    """``onnx`` and ``onnxruntime``; without them a one-line :class:`MissingExtra` naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingExtra("reading ONNX models needs onnx and onnxruntime", INSTALL_HINT) from None
    return onnx, onnxruntime


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load(source: Source) -> ONNXLoaded:
    onnx, _ = modules()
    path = source.path
    where = f"ONNX model {str(path)!r}"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ValueError, ...
        raise ModelLoadError(f"cannot load {where}: {one_line(exc)} (truncated or corrupt?)") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelLoadError(f"cannot load {where}: it holds no graph (truncated or corrupt?)")
    external = any(_is_external(t) for t in _initializers(model.graph))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # noqa: BLE001 - a model shape inference cannot follow still runs
        log.info("ONNX model %s: shape inference failed (%s); shapes from the graph only", path, one_line(exc))
        inferred = model
    log.info("ONNX model %s: IR %s, %d nodes", path, model.ir_version, len(model.graph.node))
    return ONNXLoaded(
        path,
        source.model_format,
        source.digest,
        origin=str(path.resolve()),
        model=inferred,
        external_data=external,
    )


def _initializers(graph: Any) -> list[Any]:
    return list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]


def _is_external(tensor: Any) -> bool:
    return int(tensor.data_location) == 1  # TensorProto.EXTERNAL
