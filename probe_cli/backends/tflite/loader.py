"""TensorFlow Lite flatbuffers: detected by their ``TFL3`` identifier, loaded into an interpreter.

The interpreter is LiteRT's (``ai-edge-litert``, the ``tflite`` extra), else TensorFlow's own
``tf.lite.Interpreter``; either is created with ``experimental_preserve_all_tensors=True``, so every
tensor an op produces can be read after ``invoke()``, and otherwise with its defaults (the built-in
op resolver and its default delegate, as a user's own interpreter runs the model).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe_cli.backends import tfenv
from probe_cli.backends.base import LoadedModel, Source
from probe_cli.core.errors import MissingExtra, ModelLoadError, UsageProblem

TFLITE = "tflite"
DESCRIBES = "TensorFlow Lite .tflite"
#: A TensorFlow Lite flatbuffer's file identifier, at bytes 4..8.
IDENTIFIER = b"TFL3"
DEFAULT_SIGNATURE = "serving_default"
INSTALL_HINT = "pip install 'probe-cli[tflite]' (the ai-edge-litert interpreter)"

log = logging.getLogger(__name__)


def detect(path: Path, head: bytes) -> str | None:
    if not path.is_dir() and head[4:8] == IDENTIFIER:
        return TFLITE
    return None


@dataclass
class TFLiteLoaded(LoadedModel):
    """A loaded ``.tflite``: the interpreter (tensors allocated) and which one it is."""

    interpreter: Any = None
    #: ``ai_edge_litert`` or ``tf.lite``
    runtime: str = ""


#: What the interpreter's C++ side prints on the process's stderr as it creates its default delegate.
NOISE = re.compile(r"^INFO: Created TensorFlow Lite .*delegate")


@contextmanager
def quiet() -> Iterator[None]:
    """Around the interpreter's calls that may talk: its Python warnings (TensorFlow's deprecation of
    ``tf.lite.Interpreter``, preserve_all_tensors' memory note) always, and unless ``-v`` the
    delegate's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` line on the native stderr:
    in the CLI with the rest of TensorFlow's noise, for a library caller only that line."""
    if tfenv._verbose:  # noqa: SLF001 - probe -v shows TensorFlow's own messages
        native: Any = nullcontext()
    elif tfenv._cli:  # noqa: SLF001 - the CLI's process-wide quiet mode
        native = tfenv._native_stderr_silenced()  # noqa: SLF001
    else:
        native = tfenv.native_stderr_without(NOISE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with native:
            yield


def interpreter_class() -> tuple[Any, str]:
    """LiteRT's interpreter, else TensorFlow's; with neither, a one-line :class:`MissingExtra`."""
    try:
        with quiet():
            from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        pass
    else:
        return Interpreter, "ai_edge_litert"
    try:
        tf = tfenv.tf()
        interpreter = tf.lite.Interpreter
    except (ImportError, AttributeError):
        raise MissingExtra("reading TensorFlow Lite models needs an interpreter", INSTALL_HINT) from None
    return interpreter, "tf.lite"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


#: What the interpreter says when an op cannot be prepared: ``Node number 1 (FlexCumprod) failed to prepare.``
_FAILED_NODE = re.compile(r"Node number (\d+) \(([^)]+)\) failed to prepare")


def _refusal(path: Path, exc: BaseException, interpreter: Any) -> ModelLoadError:
    """The allocation failure as one line: the op the interpreter cannot run, named, when it is one."""
    message = one_line(exc)
    failed = _FAILED_NODE.search(message)
    ops = []
    try:
        ops = [str(op["op_name"]) for op in interpreter._get_ops_details()]  # noqa: SLF001 - no public op list
    except Exception:  # noqa: BLE001 - the op list is a courtesy here
        pass
    name = failed.group(2) if failed else None
    if name is None:
        name = next((op for op in ops if op.startswith("Flex")), None)
    where = f"TensorFlow Lite model {str(path)!r}"
    if name is not None and (name.startswith("Flex") or "Select TensorFlow op" in message):
        return ModelLoadError(
            f"{where} uses the TensorFlow op {name} (Flex), which the interpreter cannot run",
            "convert it with TFLITE_BUILTINS only, or run it where the Flex delegate is linked",
        )
    if name is not None and ("custom op" in message or not _BUILTIN_LOOKING.match(name)):
        return ModelLoadError(
            f"{where} uses the custom op {name}, which the interpreter does not have",
            "convert it without custom ops (allow_custom_ops=False)",
        )
    if failed:
        return ModelLoadError(f"{where}: op {name} (node {failed.group(1)}) cannot run: {message}")
    return ModelLoadError(f"cannot prepare {where}: {message}")


#: Built-in op names are upper case (``CONV_2D``); custom ones are not (``Asinh``, ``FlexCumprod``).
_BUILTIN_LOOKING = re.compile(r"^[A-Z0-9_]+$")


def load(source: Source) -> TFLiteLoaded:
    path = source.path
    interpreter_type, runtime = interpreter_class()
    try:
        with quiet():
            interpreter = interpreter_type(model_path=str(path), experimental_preserve_all_tensors=True)
    except (ValueError, RuntimeError) as exc:
        message = one_line(exc)
        if "not a valid Flatbuffer" in message or "allocation is null" in message:
            message += " (truncated or corrupt?)"
        raise ModelLoadError(f"cannot load TensorFlow Lite model {str(path)!r}: {message}") from None
    try:
        with quiet():
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise _refusal(path, exc, interpreter) from None
    log.info("TensorFlow Lite model %s: run by the %s interpreter", path, runtime)
    loaded = TFLiteLoaded(
        path, source.model_format, source.digest, origin=str(path.resolve()), interpreter=interpreter, runtime=runtime
    )
    loaded.signature = _signature(interpreter, path, source.signature)
    return loaded


def _signature(interpreter: Any, path: Path, requested: str) -> dict[str, Any] | None:
    """The signature to run: ``{"signature", "inputs": {name: tensor index}, "outputs": {name: index}}``,
    or None for a model without signatures (its input and output details are used)."""
    signatures = interpreter._get_full_signature_list() or {}  # noqa: SLF001 - the public list drops the indices
    if not signatures:
        if requested != DEFAULT_SIGNATURE:
            raise UsageProblem(f"TensorFlow Lite model {str(path)!r} has no signatures, so none named {requested!r}")
        return None
    if requested in signatures:
        key = requested
    elif requested == DEFAULT_SIGNATURE and len(signatures) == 1:
        key = next(iter(signatures))
    else:
        known = ", ".join(signatures)
        raise UsageProblem(
            f"TensorFlow Lite model {str(path)!r} has no signature {requested!r}", f"signatures: {known}"
        )
    try:
        subgraph = int(interpreter._interpreter.GetSubgraphIndexFromSignature(key))  # noqa: SLF001
    except Exception:  # noqa: BLE001 - an interpreter without the call: a single-graph model
        subgraph = 0
    if subgraph != 0:
        raise UsageProblem(
            f"signature {key!r} of TensorFlow Lite model {str(path)!r} runs subgraph {subgraph}; "
            "probe reads the main subgraph (0) only",
            f"signatures: {', '.join(signatures)}",
        )
    found = signatures[key]
    return {
        "signature": key,
        "inputs": {str(k): int(v) for k, v in found.get("inputs", {}).items()},
        "outputs": {str(k): int(v) for k, v in found.get("outputs", {}).items()},
    }
