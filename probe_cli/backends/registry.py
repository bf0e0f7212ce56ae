"""The model formats probe reads, one backend per family, and the entry points that open a model.

A format is detected from the file's content, never its extension: each backend in
:data:`BACKENDS` is asked in turn. Adding a format means adding a backend package and
listing it here.
"""

from __future__ import annotations

from pathlib import Path

from probe_cli.backends.base import (
    Backend,
    Digest,
    OpenOptions,
    Source,
    TracedModel,
    describe,
    import_custom_objects,
    unreadable,
)
from probe_cli.backends.graphdef import GraphDefBackend
from probe_cli.backends.keras import KerasBackend
from probe_cli.backends.onnx import ONNXBackend
from probe_cli.backends.tflite import TFLiteBackend
from probe_cli.core.errors import FileProblem, UnsupportedFormat

#: Asked in order; the first to recognise a file reads it. TFLite and ONNX before GraphDef: their checks
#: read the first bytes (the flatbuffer identifier, a ModelProto's opening), while GraphDef's parses the file.
BACKENDS: tuple[Backend, ...] = (KerasBackend(), TFLiteBackend(), ONNXBackend(), GraphDefBackend())

SUPPORTED = ", ".join(backend.describes for backend in BACKENDS)


def detect(path: Path) -> tuple[Backend, str]:
    """The backend that reads ``path`` and the model format it found there."""
    if not path.exists():
        raise FileProblem(f"model {str(path)!r} does not exist")
    head = b""
    if not path.is_dir():
        try:
            with path.open("rb") as handle:
                head = handle.read(64)
        except OSError as exc:
            raise unreadable(path, exc) from None
    for backend in BACKENDS:
        model_format = backend.detect(path, head)
        if model_format is not None:
            return backend, model_format
    if path.is_dir():
        raise UnsupportedFormat(
            f"directory {str(path)!r} holds no model (no saved_model.pb)", f"probe reads {SUPPORTED}"
        )
    raise UnsupportedFormat(f"{str(path)!r} is {describe(head)}, not a model", f"probe reads {SUPPORTED}")


def detect_format(path: Path) -> str:
    """Which format ``path`` holds; decided by content, not by extension."""
    return detect(path)[1]


def open_model(path: str | Path, options: OpenOptions | None = None) -> TracedModel:
    """Load and trace a model file: everything ``list`` needs, and what ``dump`` runs."""
    path, options = Path(path), options or OpenOptions()
    backend, model_format = detect(path)
    digest = Digest(path)
    objects = import_custom_objects(options.custom_objects)  # imported (and checked) whatever the format
    source = Source(path, model_format, digest, objects, options.unsafe, options.signature)
    return backend.trace(backend.load(source))


def open_keras_model(model: object) -> TracedModel:
    """Trace a ``keras.Model`` the caller holds in memory."""
    backend = BACKENDS[0]
    assert isinstance(backend, KerasBackend)
    return backend.trace(backend.from_memory(model))
