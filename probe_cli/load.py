"""Stage 1: a file on disk -> a loaded model, its format detected from content.

Safe by default: Keras' ``safe_mode`` stays on unless the caller passes
``unsafe=True``, and only the ``--custom-objects`` files the user names are
imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import lzma
import re
import shutil
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe_cli import _tf
from probe_cli.errors import (
    FileProblem,
    MissingCustomObject,
    ModelLoadError,
    UnsafeModel,
    UnsupportedFormat,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
SUPPORTED = "Keras .h5 (legacy HDF5), Keras .keras, TensorFlow SavedModel directories, frozen GraphDef .pb"

KERAS_H5 = "keras-h5"
KERAS_ZIP = "keras"
SAVED_MODEL = "saved-model"
GRAPH_DEF = "graph-def"


class Digest:
    """The SHA-256 of a model file, computed on a background thread while the model loads.

    hashlib releases the GIL, so the hash (0.1-0.2 s for ResNet50) costs
    nothing on a second core; ``probe list``, which never asks, never waits.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._value = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="probe-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = sha256_of(self._path)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asks
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if isinstance(self._error, OSError):
            raise _unreadable(Path(self._error.filename or self._path), self._error)
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class LoadedModel:
    """A model ready to trace: a Keras model, or a GraphDef for TF-native formats."""

    path: Path
    model_format: str
    digest: Digest
    keras_model: Any = None
    graph_def: Any = None
    #: For SavedModels: the signature's input names -> graph tensor names, and outputs.
    signature: dict[str, Any] | None = None

    @property
    def sha256(self) -> str:
        return self.digest.result()


def _describe(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "an image"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "binary data of no known model format"


def _is_graph_def(path: Path) -> bool:
    tf = _tf.tf()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError
        return False
    return len(graph_def.node) > 0 and all(node.op for node in graph_def.node)


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


def _unreadable(path: Path, exc: OSError) -> FileProblem:
    return FileProblem(f"cannot read model {str(path)!r}: {exc.strerror or type(exc).__name__}")


def detect_format(path: Path) -> str:
    """Which loader reads this path; decided by content, not by extension."""
    if not path.exists():
        raise FileProblem(f"model {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return SAVED_MODEL
        raise UnsupportedFormat(
            f"directory {str(path)!r} holds no model (no saved_model.pb)", f"probe reads {SUPPORTED}"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if head.startswith(HDF5_MAGIC):
        return KERAS_H5
    if head.startswith(ZIP_MAGIC):
        return KERAS_ZIP
    if head and _is_graph_def(path):
        return GRAPH_DEF
    if _starts_like_graph_def(head):
        raise ModelLoadError(f"cannot parse GraphDef {str(path)!r}: its nodes are broken (truncated or corrupt?)")
    raise UnsupportedFormat(f"{str(path)!r} is {_describe(head)}, not a model", f"probe reads {SUPPORTED}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def import_custom_objects(files: Sequence[str | Path]) -> dict[str, Any]:
    """Imports the user's files; every class and function they define becomes a custom object."""
    objects: dict[str, Any] = {}
    for number, file in enumerate(files):
        path = Path(file)
        if not path.is_file():
            raise FileProblem(f"--custom-objects file {str(path)!r} does not exist")
        module_name = f"probe_custom_objects_{number}_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise FileProblem(f"--custom-objects file {str(path)!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        _tf.keras()  # the file will import keras/tensorflow; keep their noise hidden
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in user code is the user's to fix
            del sys.modules[module_name]
            raise FileProblem(
                f"--custom-objects file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module_name:
                objects[name] = obj
    return objects


_MISSING_CLASS = re.compile(r"[Cc]ould not (?:locate|deserialize) (?:class|function) '?([\w.>:<-]+)'?")
_NOT_SAVEABLE = re.compile(r"Could not deserialize '(?:[\w.]+\.)?(\w+)' because it is not a KerasSaveable")
_UNKNOWN_OBJECT = re.compile(r"Unknown (?:layer|object|class|function)[^']*'([\w.>:<-]+)'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def _is_keras_builtin(name: str) -> bool:
    """Whether Keras itself exports a class of this name (``Sequential``, ``Dense``, ...)."""
    keras = _tf.keras()
    return any(inspect.isclass(getattr(module, name, None)) for module in (keras, keras.layers, keras.models))


def _translate_keras_error(path: Path, exc: Exception) -> Exception:
    text = str(exc)
    if "arbitrary code execution" in text or "safe_mode" in text:
        return UnsafeModel(
            f"{str(path)!r} holds Python code (a Lambda layer or similar) that probe will not run by default",
            "pass --unsafe if you trust this file",
        )
    missing = _MISSING_CLASS.search(text) or _UNKNOWN_OBJECT.search(text) or _NOT_SAVEABLE.search(text)
    if missing:
        package, _, name = missing.group(1).rpartition(">")
        registered = bool(package) or bool(re.search(r"registered_name\W+[^'\">]*>" + re.escape(name) + r"\b", text))
        if not registered and _is_keras_builtin(name):
            # Keras could not place a class it ships: the config around it is malformed.
            return ModelLoadError(
                f"cannot load {str(path)!r}: the model config is malformed (Keras could not rebuild its "
                f"built-in {name!r})"
            )
        kind = "function" if re.search(r"(?:locate|deserialize|Unknown) function", text) else "class"
        return MissingCustomObject(
            f"model uses {kind} {name!r}, which is neither built into Keras nor given",
            "pass --custom-objects FILE.py with the file that defines it",
        )
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        # h5py and Keras look entries up by name: a corrupt file lacks one or cannot open it.
        detail = exc.args[0] if exc.args[0].startswith("Unable to") else f"entry {exc.args[0]!r} is missing"
        return ModelLoadError(f"cannot load {str(path)!r}: {_first_line(Exception(detail))} (truncated or corrupt?)")
    return ModelLoadError(f"cannot load {str(path)!r}: {_first_line(exc)}")


def _check_keras_h5(path: Path) -> None:
    """Says what an HDF5 file is when it is not a Keras model."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            attrs = set(file.attrs)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        # h5py reports damage as OSError, or as KeyError/RuntimeError/ValueError from a broken object header.
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) else exc
        raise ModelLoadError(
            f"cannot read HDF5 file {str(path)!r}: {_first_line(Exception(detail))} (truncated or corrupt?)"
        ) from None
    if "model_config" in attrs:
        return
    if "probe_version" in attrs:
        raise UnsupportedFormat(f"{str(path)!r} is a probe archive, not a model", "read it with h5py or h5dump")
    if "layer_names" in attrs:
        raise UnsupportedFormat(
            f"{str(path)!r} holds only weights (no model config)", "load it with the code that built the model"
        )
    raise UnsupportedFormat(
        f"{str(path)!r} is an HDF5 file without a Keras model (no model_config)", f"probe reads {SUPPORTED}"
    )


#: What reading a corrupt zip raises: its own errors, and those of the decompressor a flipped method byte picks
#: (zlib, bz2's OSError, lzma), an unsupported method (NotImplementedError), a set "encrypted" flag (RuntimeError).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError)


def _check_keras_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise UnsupportedFormat(f"{str(path)!r} is a zip file but not a .keras model (no config.json)")
            corrupt = archive.testzip()
    except _ZIP_ERRORS as exc:
        raise ModelLoadError(
            f"cannot read .keras file {str(path)!r}: {_first_line(exc)} (truncated or corrupt?)"
        ) from None
    if corrupt is not None:
        raise ModelLoadError(
            f"cannot read .keras file {str(path)!r}: its member {corrupt!r} is damaged (truncated or corrupt?)"
        )


@contextmanager
def _keras_named(path: Path, suffix: str) -> Iterator[Path]:
    """``path`` under a name Keras accepts: it picks its loader by extension, probe by content, so a
    model saved as ``model.bin`` is handed over as a temporary ``model.h5`` link to the same file."""
    accepted = (".h5", ".hdf5") if suffix == ".h5" else (".keras",)
    if path.suffix in accepted:  # as Keras compares them
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="probe-model-") as directory:
        link = Path(directory) / f"model{suffix}"
        try:
            link.symlink_to(path.resolve())
        except OSError:  # a temporary directory without symlinks: a copy does as well
            shutil.copyfile(path, link)
        yield link


def load(
    path: str | Path,
    *,
    custom_objects: Sequence[str | Path] = (),
    unsafe: bool = False,
    signature: str = "serving_default",
) -> LoadedModel:
    """Loads a model file of any supported format."""
    path = Path(path)
    model_format = detect_format(path)
    loaded = LoadedModel(path=path, model_format=model_format, digest=Digest(path))
    objects = import_custom_objects(custom_objects)
    if model_format in (KERAS_H5, KERAS_ZIP):
        (_check_keras_h5 if model_format == KERAS_H5 else _check_keras_zip)(path)
        keras = _tf.keras()
        try:
            with _keras_named(path, ".h5" if model_format == KERAS_H5 else ".keras") as named:
                loaded.keras_model = keras.models.load_model(
                    named, custom_objects=objects or None, compile=False, safe_mode=not unsafe
                )
        except Exception as exc:  # noqa: BLE001 - Keras raises anything from a bad file
            raise _translate_keras_error(path, exc) from exc
    elif model_format == SAVED_MODEL:
        from probe_cli.graphdef import load_saved_model

        loaded.graph_def, loaded.signature = load_saved_model(path, signature)
    else:
        from probe_cli.graphdef import read_graph_def

        loaded.graph_def = read_graph_def(path)
    return loaded
