"""Keras model files (legacy ``.h5``, ``.keras``), and models handed over in memory.

Safe by default: Keras' ``safe_mode`` stays on unless the caller passes
``unsafe=True``, and only the ``--custom-objects`` files the user names are imported.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import lzma
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import Hashed, LoadedModel, Source
from probe_cli.core.errors import (
    MissingCustomObject,
    ModelLoadError,
    UnsafeModel,
    UnsupportedFormat,
    UsageProblem,
    given,
    in_python,
    option,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
KERAS_H5 = "keras-h5"
KERAS_ZIP = "keras"
DESCRIBES = "Keras .h5 (legacy HDF5), Keras .keras"
#: Named in the errors of HDF5 files that are not Keras models.
SUPPORTED = f"{DESCRIBES}, TensorFlow SavedModel directories, frozen GraphDef .pb, TensorFlow Lite .tflite"
IN_MEMORY = "keras-in-memory"


def detect(path: Path, head: bytes) -> str | None:
    if head.startswith(HDF5_MAGIC):
        return KERAS_H5
    if head.startswith(ZIP_MAGIC):
        return KERAS_ZIP
    return None


def load(source: Source) -> LoadedModel:
    path = source.path
    (_check_keras_h5 if source.model_format == KERAS_H5 else _check_keras_zip)(path)
    keras = tfenv.keras()
    try:
        with _keras_named(path, ".h5" if source.model_format == KERAS_H5 else ".keras") as named:
            model = keras.models.load_model(
                named, custom_objects=source.custom_objects or None, compile=False, safe_mode=not source.unsafe
            )
    except Exception as exc:  # noqa: BLE001 - Keras raises anything from a bad file
        raise _translate_keras_error(path, exc) from exc
    return LoadedModel(path, source.model_format, source.digest, keras_model=model, origin=str(path.resolve()))


def from_memory(model: Any) -> LoadedModel:
    """A ``keras.Model`` the caller holds; fingerprinted by its class, config and weights."""
    keras = tfenv.keras()
    if not isinstance(model, keras.Model):
        raise UsageProblem(
            f"cannot open a {type(model).__name__}: probe opens a model file or an in-memory keras.Model",
            "pass a path, or a keras.Model (functional, Sequential, or a subclassed model that has been called)",
        )
    if not model.built:
        raise ModelLoadError(
            f"model {model.name!r} ({type(model).__name__}) has not been built, so its inputs are unknown",
            "call it once on data (or model.build(shape)) first",
        )
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for weight in model.weights:
        value = weight.numpy()
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    origin = f"<in-memory {type(model).__name__} {model.name!r}>"
    return LoadedModel(None, IN_MEMORY, Hashed(digest.hexdigest()), keras_model=model, origin=origin)


_MISSING_CLASS = re.compile(r"[Cc]ould not (?:locate|deserialize) (?:class|function) '?([\w.>:<-]+)'?")
_NOT_SAVEABLE = re.compile(r"Could not deserialize '(?:[\w.]+\.)?(\w+)' because it is not a KerasSaveable")
_UNKNOWN_OBJECT = re.compile(r"Unknown (?:layer|object|class|function)[^']*'([\w.>:<-]+)'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


_FILES = "['FILE.py']"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, as far as Python recorded."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_keras_builtin(name: str) -> bool:
    """Whether Keras itself exports a class of this name (``Sequential``, ``Dense``, ...)."""
    keras = tfenv.keras()
    return any(inspect.isclass(getattr(module, name, None)) for module in (keras, keras.layers, keras.models))


def _translate_keras_error(path: Path, exc: Exception) -> Exception:
    text = str(exc)
    if "arbitrary code execution" in text or "safe_mode" in text:
        return UnsafeModel(
            f"{str(path)!r} holds Python code (a Lambda layer or similar) that probe will not run by default",
            f"pass {option('--unsafe')} if you trust this file",
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
            f"pass {given('--custom-objects', _FILES if in_python() else 'FILE.py')} with the file that defines it",
        )
    broken_json = next((e for e in _chain(exc) if isinstance(e, json.JSONDecodeError)), None)
    if broken_json is not None:  # a flipped byte in the config Keras stored as JSON (model_config, config.json)
        return ModelLoadError(
            f"cannot load {str(path)!r}: the model's stored configuration is corrupt "
            f"(not valid JSON at character {broken_json.pos})",
            "the file is damaged; save or copy the model again",
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
