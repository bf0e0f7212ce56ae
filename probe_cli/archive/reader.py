"""Reading archives back: their tensors in graph order, inputs and attributes, in bounded slices.

Pure h5py/NumPy. Datasets are read in slices along axis 0 of about
:data:`CHUNK_ELEMENTS` elements (at least one row), so a multi-gigabyte tensor
never has to fit in memory at once. Attributes are read with defaults, so archives
written by older probe versions (fewer attributes) still read.

Quantized tensors (TensorFlow Lite) are stored as their integers with ``scale`` and
``zero_point`` attributes; everything read through :func:`read_slice` (hence
:func:`iter_chunks` and :func:`dataset_stats`) is their real value, ``scale * (q - zero_point)``
as float32 (:func:`dequantized`), and :func:`list_tensors` gives them dtype float32.
Reading a dataset directly (``ds[...]``, :func:`parts`) gives the stored integers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.archive.format import GRAPH, INPUT_SOURCES, INPUTS, STATS, TENSORS, distribution_from
from probe_cli.core.distribution import Distribution
from probe_cli.core.errors import FileProblem, PatternError
from probe_cli.core.graph import ModelGraph
from probe_cli.core.quantization import REAL_DTYPE, Quantization, dequantized, quantization_of
from probe_cli.core.resolve import resolve
from probe_cli.core.stats import RunningStats, summarize
from probe_cli.core.types import ModelIndex, TensorInfo

#: Elements read per slice; module-level so tests can force chunking on tiny tensors.
CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as read back: its attributes and a lazy handle on its data."""

    name: str
    attrs: dict[str, Any]
    shape: tuple[int, ...]
    dtype: str
    path: str
    #: group layouts (per_batch, per_iteration): how many datasets hold the values; None for one dataset
    parts: int | None = None

    @property
    def quantized(self) -> bool:
        """Whether the archive holds its values as quantized integers (``dtype`` is then the real values', float32)."""
        return quantization_of(self.attrs) is not None


@contextmanager
def open_archive(source: str | Path | h5py.File) -> Iterator[h5py.File]:
    """Opens a probe archive for reading; closes it only if we opened it."""
    if isinstance(source, h5py.File):
        yield source
        return
    path = Path(source)
    if not path.exists():
        raise FileProblem(f"archive {str(path)!r} does not exist")
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise FileProblem(f"{str(path)!r} is not an HDF5 file, so not a probe archive") from None
    try:
        if "probe_version" not in file.attrs or TENSORS not in file:
            raise FileProblem(f"{str(path)!r} is an HDF5 file but not a probe archive (no probe_version attribute)")
        yield file
    finally:
        file.close()


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def list_tensors(file: h5py.File) -> list[StoredTensor]:
    """The archive's tensors in graph order."""
    found: list[StoredTensor] = []

    def visit(_: str, obj: Any) -> None:
        per_batch = isinstance(obj, h5py.Group) and "layout" in obj.attrs  # per_batch or per_iteration
        if per_batch or (isinstance(obj, h5py.Dataset) and "layout" not in obj.parent.attrs):
            attrs = {k: _decode(v) for k, v in obj.attrs.items()}
            name = attrs.get("name") or obj.name[len(TENSORS) + 2 :]
            first = next(iter(obj.values()), None) if per_batch else obj
            parts = len(obj) if per_batch else None
            if first is None:  # a branch that never ran
                found.append(StoredTensor(name, attrs, (), str(attrs.get("dtype", "")), obj.name, 0))
            else:
                dtype = REAL_DTYPE if quantization_of(attrs) is not None else str(first.dtype)
                found.append(StoredTensor(name, attrs, tuple(first.shape), dtype, obj.name, parts))

    file[TENSORS].visititems(visit)
    found.sort(key=lambda t: (t.attrs.get("order", 0), t.name))
    return found


def read_graph(file: h5py.File) -> ModelGraph | None:
    """The model's dataflow, if the archive stores it (older archives do not: they pair by name only)."""
    node = file.get(GRAPH)
    if not isinstance(node, h5py.Dataset):
        return None
    try:
        return ModelGraph.from_json(_decode(node[()]))
    except (ValueError, KeyError, TypeError):
        return None


def read_attrs(file: h5py.File) -> dict[str, Any]:
    return {k: _decode(v) for k, v in file.attrs.items()}


def read_inputs(file: h5py.File) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The fed inputs, by name, with their attributes (source, seed)."""
    group = file.get(INPUTS, {})
    return {name: (ds[()], {k: _decode(v) for k, v in ds.attrs.items()}) for name, ds in group.items()}


def blank_to_none(value: Any) -> Any:
    """The writer stores None as "" (HDF5 has no null attribute)."""
    return None if isinstance(value, str) and value == "" else value


def row_slices(shape: tuple[int, ...], chunk_elements: int | None = None) -> Iterator[tuple[Any, int]]:
    """Keys that read a dataset in bounded slices along axis 0, with each slice's first row.

    Small or scalar datasets are read whole (key ``()``), so their statistics
    are bit-identical to what ``dump`` printed.
    """
    limit = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    size = math.prod(shape)
    if not shape or size <= limit:
        yield (), 0
        return
    row = max(1, math.prod(shape[1:]))
    step = max(1, limit // row)
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0])), start


def _stored_attrs(ds: h5py.Dataset) -> Any:
    """The attributes describing the tensor a dataset holds (part of): its own, or its layout group's."""
    if "layout" in ds.attrs or ds.parent is None:
        return ds.attrs
    parent = ds.parent
    return parent.attrs if "layout" in parent.attrs else ds.attrs


def read_slice(ds: h5py.Dataset, key: Any) -> np.ndarray:
    """One slice as an array (``ds[()]`` of a scalar dataset is a NumPy scalar); a quantized tensor's
    real values (:func:`dequantized`)."""
    values = np.asarray(ds[key])
    if values.dtype.kind not in "iu":
        return values
    return dequantized(values, quantization_of(_stored_attrs(ds)), key)


def _batch_number(key: str) -> tuple[int, str]:
    digits = key.rpartition("_")[2]
    return (int(digits) if digits.isdigit() else -1, key)


def parts(node: h5py.Dataset | h5py.Group) -> list[h5py.Dataset]:
    """The datasets holding one stored value: the dataset itself, or one per batch (``per_batch`` layout)."""
    if isinstance(node, h5py.Dataset):
        return [node]
    batches = [(key, ds) for key, ds in node.items() if isinstance(ds, h5py.Dataset)]
    return [ds for _, ds in sorted(batches, key=lambda kv: _batch_number(kv[0]))]


def iter_chunks(node: h5py.Dataset | h5py.Group) -> Iterator[np.ndarray]:
    """A stored value as bounded slices, batch after batch (real values of a quantized tensor)."""
    for ds in parts(node):
        for key, _ in row_slices(tuple(ds.shape)):
            yield read_slice(ds, key)


def dataset_stats(node: h5py.Dataset | h5py.Group) -> dict[str, Any]:
    """:func:`probe_cli.stats.summarize` of a stored value, computed slice by slice (of the real values
    of a quantized tensor)."""
    chunks = iter_chunks(node)
    first = next(chunks, None)
    if first is None:
        return summarize(np.empty(0))
    second = next(chunks, None)
    if second is None:  # read whole: exactly the numbers dump printed
        return summarize(first)
    running = RunningStats()
    running.update(first)
    running.update(second)
    for chunk in chunks:
        running.update(chunk)
    return running.result()


def stored_range(node: h5py.Dataset | h5py.Group) -> tuple[int, int] | None:
    """The smallest and largest stored integer of a quantized tensor (None for any other), read in slices."""
    if quantization_of(node.attrs) is None:
        return None
    low: int | None = None
    high: int | None = None
    for ds in parts(node):
        for key, _ in row_slices(tuple(ds.shape)):
            chunk = np.asarray(ds[key])
            if chunk.size:
                low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
                high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
    return None if low is None or high is None else (low, high)


def as_info(tensor: StoredTensor) -> TensorInfo:
    attrs = tensor.attrs
    try:
        order = int(attrs.get("order", 0) or 0)
    except (TypeError, ValueError):
        order = 0
    quantization = quantization_of(attrs)
    return TensorInfo(
        name=tensor.name,
        graph_name=blank_to_none(attrs.get("graph_name")) or tensor.name,
        op_type=blank_to_none(attrs.get("op_type")) or "",
        dtype=blank_to_none(attrs.get("dtype")) or tensor.dtype,
        shape=tensor.shape,
        layer=blank_to_none(attrs.get("layer")),
        order=order,
        quantization=None if quantization is None else _record(quantization),
        layout=blank_to_none(attrs.get("layout_axes")),
    )


def _record(quantization: Quantization) -> dict[str, Any]:
    """A :class:`Quantization` as :attr:`TensorInfo.quantization` holds it."""
    if quantization.per_axis:
        return {
            "scale": quantization.scale.tolist(),
            "zero_point": quantization.zero_point.tolist(),
            "quantized_dimension": quantization.axis,
        }
    return {
        "scale": float(quantization.scale[0]),
        "zero_point": int(quantization.zero_point[0]),
        "quantized_dimension": quantization.axis,
    }


def select_tensors(tensors: Sequence[StoredTensor], patterns: Sequence[str], option: str) -> list[StoredTensor]:
    """The stored tensors the patterns select, with exactly ``dump``'s resolver semantics.

    A pattern that selects nothing is a :class:`PatternError` naming the closest
    stored names, as in ``dump``; only the option name and hint are adapted.
    """
    if not patterns:
        return list(tensors)
    index = ModelIndex("archive", (), (), (), tuple(as_info(t) for t in tensors))
    try:
        chosen = {t.name for t in resolve(index, patterns)}
    except PatternError as exc:
        message = exc.message.replace("--tensor", option, 1)
        hint = (exc.hint or "").replace("probe list MODEL", "probe show ARCHIVE") or None
        raise PatternError(message, hint) from None
    return [t for t in tensors if t.name in chosen]


@dataclass(frozen=True)
class InputRecord:
    """One fed input as recorded in the archive (data not loaded)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    source: str | None
    seed: int | None
    #: the dtype the input was given in, when converted by a cast that can change values
    converted_from: str | None = None


def input_datasets(file: h5py.File) -> list[tuple[InputRecord, h5py.Dataset | h5py.Group]]:
    """Each recorded input with its node (a dataset, or a group of per-batch datasets), data not read."""
    group = file.get(INPUTS)
    if not isinstance(group, h5py.Group):  # archives without /inputs
        return []
    found: list[tuple[InputRecord, h5py.Dataset | h5py.Group]] = []
    for key, node in group.items():
        batches = parts(node)
        if not batches:
            continue
        ds = batches[0]
        attrs = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in node.attrs.items()}
        seed = attrs.get("seed")
        record = InputRecord(
            name=str(blank_to_none(attrs.get("name")) or key),
            shape=tuple(ds.shape),
            dtype=str(ds.dtype),
            source=blank_to_none(str(attrs["source"])) if "source" in attrs else None,
            seed=int(seed) if isinstance(seed, (int, np.integer)) else None,
            converted_from=blank_to_none(attrs.get("converted_from")),
        )
        found.append((record, node))
    return found


def read_input_records(file: h5py.File) -> list[InputRecord]:
    """The inputs fed: from ``/inputs``, or for a ``--stats-only`` archive (no values) its ``input_sources``."""
    records = [record for record, _ in input_datasets(file)]
    text = file.attrs.get(INPUT_SOURCES)
    if records or text is None:
        return records
    try:
        sources = json.loads(_decode(text))
        return [
            InputRecord(
                str(s["name"]),
                tuple(int(d) for d in s.get("shape", ())),
                str(s.get("dtype", "")),
                s.get("source"),
                s.get("seed"),
                s.get("converted_from"),
            )
            for s in sources
        ]
    except (ValueError, KeyError, TypeError):
        return []


#: Root attributes ``show`` reports, in display order; missing ones read as None.
PROVENANCE_KEYS = (
    "model_path",
    "model_sha256",
    "model_format",
    "probe_version",
    "probe_format",
    "tensorflow_version",
    "keras_version",
    "seed",
    "batch_size",
    "command",
    "created",
)


def read_provenance(file: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
    """The root attributes ``show`` reports (:data:`PROVENANCE_KEYS`), and the others."""
    attrs = {k: blank_to_none(v) for k, v in read_attrs(file).items()}
    known = {key: attrs.get(key) for key in PROVENANCE_KEYS}
    extra = {k: v for k, v in attrs.items() if k not in PROVENANCE_KEYS}
    return known, extra


@dataclass(frozen=True)
class StoredDistribution:
    """A tensor's distribution as ``dump --stats-only`` stored it."""

    name: str
    attrs: dict[str, Any]
    distribution: Distribution


def is_distribution(node: Any) -> bool:
    """Whether an archive object is a ``/stats/<name>`` group."""
    return isinstance(node, h5py.Group) and node.attrs.get("layout") == "stats"


def read_distribution(group: h5py.Group) -> Distribution:
    attrs = {k: _decode(v) for k, v in group.attrs.items()}
    return distribution_from(attrs, {key: ds[()] for key, ds in group.items() if isinstance(ds, h5py.Dataset)})


def list_distributions(file: h5py.File) -> list[StoredDistribution]:
    """The archive's ``/stats`` entries in graph order; none for an archive of values."""
    group = file.get(STATS)
    if not isinstance(group, h5py.Group):
        return []
    found: list[StoredDistribution] = []

    def visit(_: str, obj: Any) -> None:
        if is_distribution(obj):
            attrs = {k: _decode(v) for k, v in obj.attrs.items()}
            found.append(StoredDistribution(str(attrs["name"]), attrs, read_distribution(obj)))

    group.visititems(visit)
    found.sort(key=lambda d: (d.attrs.get("order", 0), d.name))
    return found


def stored_tensors(file: h5py.File) -> list[StoredTensor]:
    """Every stored tensor, values or (``--stats-only``) distributions, in graph order within each kind."""
    return list_tensors(file) + [as_stored(d) for d in list_distributions(file)]


def as_stored(stored: StoredDistribution) -> StoredTensor:
    """A distribution as a stored tensor with no values, so selecting and naming treat both alike."""
    return StoredTensor(stored.name, stored.attrs, (), str(stored.attrs.get("dtype", "")), f"{STATS}/{stored.name}")
