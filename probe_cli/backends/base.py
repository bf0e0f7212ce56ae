"""What every backend shares: the Backend protocol, the loaded and traced model, file fingerprints.

A backend is one model family (Keras files, TensorFlow graphs, ...). It detects its
files by content, loads them, traces them into an index of every op tensor, and
builds the executors that compute a selection of those tensors for one batch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from probe_cli.backends import tfenv
from probe_cli.core.errors import FileProblem, option
from probe_cli.core.graph import ModelGraph, graph_of
from probe_cli.core.types import Feed, InputSpec, LayerInfo, ModelIndex, TensorInfo


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
            raise unreadable(Path(self._error.filename or self._path), self._error)
        if self._error is not None:
            raise self._error
        return self._value


class Fingerprint(Protocol):
    """The SHA-256 the archive records for its model, maybe still being computed."""

    def result(self) -> str: ...


@dataclass(frozen=True)
class Hashed:
    """A fingerprint known at once (an in-memory model)."""

    value: str

    def result(self) -> str:
        return self.value


@dataclass
class LoadedModel:
    """A model ready to trace: a Keras model, or a GraphDef for TF-native formats."""

    #: The file it came from; None for a model handed over in memory.
    path: Path | None
    model_format: str
    digest: Fingerprint
    keras_model: Any = None
    graph_def: Any = None
    #: For SavedModels: the signature's input names -> graph tensor names, and outputs.
    signature: dict[str, Any] | None = None
    #: What the archive records as the model's path: the file, or ``<in-memory Model 'name'>``.
    origin: str = ""
    #: Names of the Keras layers a graph file lists (``keras_metadata.pb``), when it lists them.
    layer_names: frozenset[str] | None = None

    @property
    def sha256(self) -> str:
        return self.digest.result()

    def where(self) -> str:
        """The model as errors name it."""
        return repr(str(self.path)) if self.path is not None else self.origin


#: Selections whose executors a traced model keeps (each holds a pruned function).
EXECUTOR_CACHE = 8

#: Computes the selected tensors for one batch: arrays for top-level tensors, lists of
#: :class:`~probe_cli.core.types.Execution` for tensors that run once per iteration.
Executor = Callable[[Sequence[Feed]], dict[str, Any]]


@dataclass
class TracedModel:
    """The traced graph and its index; what resolve, feed and run work on."""

    loaded: LoadedModel
    index: ModelIndex
    function: Any  # tf.compat.v1 WrappedFunction
    #: probe name -> graph tensor
    graph_tensors: dict[str, Any]
    #: input name -> placeholder
    placeholders: dict[str, Any]
    #: The backend that traced it, which knows how to compute its tensors.
    backend: Backend
    #: Keras models: the traced forward function and its input signature, so the
    #: loop-body capturer can trace it again.
    forward: Callable[..., Any] | None = None
    signature: tuple[Any, ...] | None = None
    #: executors by selection, most recently used last: a second run of a selection prunes nothing
    _executors: OrderedDict[tuple[str, ...], list[Executor]] = field(default_factory=OrderedDict, repr=False)
    _graph: ModelGraph | None = field(default=None, repr=False)

    def executors(self, selection: Sequence[TensorInfo]) -> list[Executor]:
        """What computes ``selection``, one call per batch; built once per selection and kept."""
        key = tuple(info.name for info in selection)
        if key in self._executors:
            self._executors.move_to_end(key)
        else:
            self._executors[key] = self.backend.executors(self, selection)
            while len(self._executors) > EXECUTOR_CACHE:
                self._executors.popitem(last=False)
        return self._executors[key]

    def op_inputs(self, info: TensorInfo) -> list[TensorInfo]:
        """The listed tensors feeding the op that produced ``info`` (handles and the like omitted)."""
        return self.backend.op_inputs(self, info)

    def graph(self) -> ModelGraph:
        """The dataflow pairing reads (what each op reads, inputs and outputs in order); made once."""
        if self._graph is None:
            self._graph = graph_of(self.index, ((t, self._reads(t)) for t in self.index.tensors))
        return self._graph

    def _reads(self, info: TensorInfo) -> list[TensorInfo]:
        """:meth:`op_inputs`, or none where the backend cannot tell (a tensor it lists but does not trace
        through): that tensor then pairs by name only, and the dump goes on."""
        try:
            return self.op_inputs(info)
        except (KeyError, AttributeError, IndexError, ValueError, TypeError):
            return []


class Backend(Protocol):
    """One model family: how to recognise its files, load them, index them, and compute their tensors."""

    #: What ``probe`` reads, for error hints (``Keras .h5 (legacy HDF5), Keras .keras``).
    describes: str

    def detect(self, path: Path, head: bytes) -> str | None:
        """The model format of ``path`` (whose first bytes are ``head``), or None if not this family's.

        May raise a :class:`~probe_cli.core.errors.ProbeError` for a file that is this family's but broken.
        """
        ...

    def load(self, source: Source) -> LoadedModel: ...

    def trace(self, loaded: LoadedModel) -> TracedModel:
        """Builds the graph once and indexes every op tensor under probe's names."""
        ...

    def executors(self, traced: TracedModel, selection: Sequence[TensorInfo]) -> list[Executor]: ...

    def op_inputs(self, traced: TracedModel, info: TensorInfo) -> list[TensorInfo]:
        """The listed tensors feeding the op that produced ``info`` (for ``--check-numerics``' report)."""
        ...


class LoaderBackend:
    """What every backend delegates to its ``loader`` module: recognising its files and loading them."""

    _loader: Any  #: the backend's loader module

    def detect(self, path: Path, head: bytes) -> str | None:
        return self._loader.detect(path, head)

    def load(self, source: Source) -> LoadedModel:
        return self._loader.load(source)


@dataclass(frozen=True)
class Source:
    """A detected model file and how to load it: what a backend's ``load`` gets."""

    path: Path
    model_format: str
    digest: Fingerprint
    #: classes and functions from the user's ``--custom-objects`` files, by name
    custom_objects: dict[str, Any]
    unsafe: bool = False
    signature: str = "serving_default"


@dataclass(frozen=True)
class OpenOptions:
    """How to open a model (shared by every command and the Python API)."""

    custom_objects: tuple[Path, ...] = ()
    unsafe: bool = False
    #: SavedModel signature to trace
    signature: str = "serving_default"


def describe(head: bytes) -> str:
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


def unreadable(path: Path, exc: OSError) -> FileProblem:
    return FileProblem(f"cannot read model {str(path)!r}: {exc.strerror or type(exc).__name__}")


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
            raise FileProblem(f"{option('--custom-objects')} file {str(path)!r} does not exist")
        module_name = f"probe_custom_objects_{number}_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise FileProblem(f"{option('--custom-objects')} file {str(path)!r} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        tfenv.keras()  # the file will import keras/tensorflow; keep their noise hidden
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in user code is the user's to fix
            del sys.modules[module_name]
            raise FileProblem(
                f"{option('--custom-objects')} file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module_name:
                objects[name] = obj
    return objects


def named_layers(
    tensors: Sequence[TensorInfo],
    inputs: Sequence[InputSpec],
    op_inputs: Mapping[str, Sequence[Any]],
    names: Mapping[Any, str],
    outputs: Sequence[str],
    input_op: str,
) -> tuple[LayerInfo, ...]:
    """The layers of a converted model (TFLite, ONNX), from the Keras layers its names were mapped to: the
    inputs, then each layer with its outputs (the tensors it hands to an op of another layer, or that the
    model returns), in the order of those outputs. Class and parameters are not in such a file.

    ``op_inputs``: probe name -> the backend's ids of the tensors its op read; ``names``: id -> probe name of
    each listed tensor.
    """
    layer_of = {t.name: t.layer for t in tensors}
    consumers: dict[str, list[str | None]] = {}
    for name, sources in op_inputs.items():
        for source in sources:
            if source in names:
                consumers.setdefault(names[source], []).append(layer_of.get(name))
    returned = set(outputs)
    found: dict[str, list[TensorInfo]] = {}
    for t in tensors:
        if t.layer is None or t.op_type == input_op:
            continue
        if t.name in returned or any(layer != t.layer for layer in consumers.get(t.name, ())):
            found.setdefault(t.layer, []).append(t)
    ordered = sorted(found.items(), key=lambda item: item[1][0].order)
    return tuple(LayerInfo(spec.name, "InputLayer", 0, (f"{spec.name}:0",), (spec.shape,)) for spec in inputs) + tuple(
        LayerInfo(layer, "", 0, tuple(t.name for t in outs), tuple(t.shape for t in outs)) for layer, outs in ordered
    )
