"""The pipeline as one library call per command: load -> trace -> resolve -> feed -> run -> archive.

The CLI parses options into these requests and renders the results; nothing
here prints or knows about Click.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli import __version__
from probe_cli.archive import check_destination, write_archive
from probe_cli.feed import DEFAULT_SEED, Feed, build_feeds, parse_input_arg, parse_range_arg, parse_shape_arg
from probe_cli.index import ModelIndex, Shape, TensorInfo
from probe_cli.resolve import resolve
from probe_cli.stats import summarize


@dataclass(frozen=True)
class ModelOptions:
    """How to open a model file (shared by every command that loads one)."""

    path: Path
    custom_objects: tuple[Path, ...] = ()
    unsafe: bool = False


@dataclass(frozen=True)
class InputOptions:
    """What to feed: files, and how to make up the rest."""

    files: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()
    value_ranges: tuple[str, ...] = ()
    batch_size: int = 1
    seed: int = DEFAULT_SEED


@dataclass(frozen=True)
class DumpRequest:
    model: ModelOptions
    tensors: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    inputs: InputOptions = field(default_factory=InputOptions)
    output: Path | None = None
    force: bool = False
    dry_run: bool = False
    command: str = ""


@dataclass(frozen=True)
class StoredSummary:
    """One row of dump's report."""

    info: TensorInfo
    shape: tuple[int, ...]
    dtype: str
    stats: dict[str, Any]


@dataclass(frozen=True)
class PlannedTensor:
    """One row of --dry-run: the shape expected for this batch, and its size (None when unknown)."""

    info: TensorInfo
    shape: Shape | None
    nbytes: int | None


@dataclass
class DumpResult:
    archive: Path | None
    index: ModelIndex
    feeds: list[Feed]
    stored: list[StoredSummary] = field(default_factory=list)
    planned: list[PlannedTensor] = field(default_factory=list)


def default_output(model_path: Path) -> Path:
    """``model.h5`` -> ``model.probe.h5`` in the current directory."""
    stem = model_path.name if model_path.is_dir() else model_path.stem
    return Path(f"{stem or 'model'}.probe.h5")


def open_model(options: ModelOptions):  # -> TracedModel (TensorFlow imported lazily)
    """Load and trace: everything ``list`` needs."""
    from probe_cli.load import load
    from probe_cli.trace import trace

    return trace(load(options.path, custom_objects=options.custom_objects, unsafe=options.unsafe))


def make_feeds(index: ModelIndex, options: InputOptions) -> list[Feed]:
    names = [spec.name for spec in index.inputs]
    return build_feeds(
        index.inputs,
        [parse_input_arg(text, names) for text in options.files],
        shapes=dict(parse_shape_arg(text) for text in options.shapes),
        value_ranges=dict(parse_range_arg(text) for text in options.value_ranges),
        batch_size=options.batch_size,
        seed=options.seed,
    )


def _planned(info: TensorInfo, batch: int | None) -> PlannedTensor:
    if info.shape is None:
        return PlannedTensor(info, None, None)
    shape = tuple(batch if (d is None and axis == 0) else d for axis, d in enumerate(info.shape))
    if any(d is None for d in shape) or info.dtype == "string":
        return PlannedTensor(info, shape, None)
    return PlannedTensor(info, shape, math.prod(shape) * np.dtype(info.dtype).itemsize)


def provenance(request: DumpRequest, traced: Any) -> dict[str, Any]:
    """Root attributes of the archive: enough to reproduce the run."""
    from probe_cli import _tf

    tf, keras = _tf.tf(), _tf.keras()
    return {
        "probe_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "model_path": str(Path(request.model.path).resolve()),
        "model_sha256": traced.loaded.sha256,
        "model_format": traced.loaded.model_format,
        "seed": request.inputs.seed,
        "batch_size": request.inputs.batch_size,
        "command": request.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def dump(request: DumpRequest) -> DumpResult:
    """Fetches the selected tensors in one execution and archives them with their inputs.

    With no ``--tensor``/``--layer`` every layer output is dumped.
    """
    output = request.output or default_output(request.model.path)
    if not request.dry_run:
        check_destination(output, request.force)  # fail before the slow part
    traced = open_model(request.model)
    index = traced.index
    if request.tensors or request.layers:
        selection = resolve(index, request.tensors, request.layers)
    else:
        selection = resolve(index, layer_patterns=[".*"])
    feeds = make_feeds(index, request.inputs)
    if request.dry_run:
        batch = feeds[0].array.shape[0] if feeds and feeds[0].array.ndim else None
        return DumpResult(None, index, feeds, planned=[_planned(info, batch) for info in selection])

    from probe_cli.run import run

    values = run(traced, feeds, selection)
    pairs = [(info, values[info.name]) for info in selection]
    write_archive(output, pairs, feeds, provenance(request, traced), seed=request.inputs.seed, force=request.force)
    stored = [StoredSummary(info, tuple(v.shape), str(v.dtype), summarize(v)) for info, v in pairs]
    return DumpResult(output, index, feeds, stored=stored)


def list_model(options: ModelOptions) -> ModelIndex:
    return open_model(options).index


def filter_index(index: ModelIndex, match: Sequence[str], layers_only: bool) -> ModelIndex:
    """``list --match``: the tensors (or with ``--layers`` the layers) ``dump`` would select."""
    from dataclasses import replace

    from probe_cli.resolve import match_layers

    if not match:
        return index
    if layers_only:
        return replace(index, layers=tuple(match_layers(index, match)))
    return replace(index, tensors=tuple(resolve(index, match)))
