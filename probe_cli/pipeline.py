"""The pipeline as one library call per command: load -> trace -> resolve -> feed -> run -> archive.

The CLI parses options into these requests and renders the results; nothing
here prints or knows about Click.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli import __version__
from probe_cli.archive import (
    FORMAT_VERSION,
    INPUTS,
    TENSORS,
    ArchiveWriter,
    check_destination,
    layout,
    tensor_attrs,
)
from probe_cli.errors import ArchiveTooBig
from probe_cli.feed import DEFAULT_SEED, Feed, InputArg, build_feeds, parse_input_arg, parse_range_arg, parse_shape_arg
from probe_cli.index import ModelIndex, Shape, TensorInfo
from probe_cli.resolve import resolve
from probe_cli.stats import RunningStats, summarize

#: Tensors from this size up get their statistics on the second thread.
_STATS_THREAD_MIN_BYTES = 1 << 18

#: Default of --max-bytes: a dump estimated larger stops before running.
DEFAULT_MAX_BYTES = 16 * 1024**3


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def parse_bytes(text: str) -> int:
    """'500M', '2G', '1.5GiB', '1000' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a size like 500M or 2G")
    scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class ModelOptions:
    """How to open a model file (shared by every command that loads one)."""

    path: Path
    custom_objects: tuple[Path, ...] = ()
    unsafe: bool = False
    #: SavedModel signature to trace
    signature: str = "serving_default"


@dataclass(frozen=True)
class InputOptions:
    """What to feed: files, and how to make up the rest."""

    files: tuple[str, ...] = ()
    shapes: tuple[str, ...] = ()
    value_ranges: tuple[str, ...] = ()
    batch_size: int | None = None
    seed: int = DEFAULT_SEED
    #: an earlier probe archive whose stored inputs are fed again
    inputs_from: Path | None = None


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
    compression: str | None = None
    max_bytes: int | None = DEFAULT_MAX_BYTES
    #: find the first op whose output holds NaN or Inf (all ops when nothing is selected)
    check_numerics: bool = False


@dataclass(frozen=True)
class StoredSummary:
    """One row of dump's report."""

    info: TensorInfo
    shape: tuple[int, ...]
    dtype: str
    stats: dict[str, Any]
    layout: str = "single"
    #: for tensors inside loops and branches: how many executions were stored
    executions: int | None = None


@dataclass(frozen=True)
class PlannedTensor:
    """One row of --dry-run: the shape expected for this batch, and its size (None when unknown)."""

    info: TensorInfo
    shape: Shape | None
    nbytes: int | None


@dataclass(frozen=True)
class NonFinite:
    """The first op whose output holds NaN or Inf, and what went into it.

    "First" is graph order, and inside a loop body execution order: the earliest
    iteration that produced a non-finite value, then graph order within it.
    """

    info: TensorInfo
    batch: int
    nan: int
    inf: int
    #: (input tensor name, its statistics) for each top-level input of the op
    inputs: tuple[tuple[str, dict[str, Any]], ...]
    #: inside loops: the counters of the enclosing loops at that execution, outermost first
    iteration: tuple[int, ...] | None = None

    def where(self) -> str:
        """``name (op T, layer L)``, plus the loop counters for an op inside a loop."""
        at = f", iteration {'/'.join(map(str, self.iteration))}" if self.iteration else ""
        return f"{self.info.name} (op {self.info.op_type}, layer {self.info.layer}{at})"

    def document(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "op_type": self.info.op_type,
            "layer": self.info.layer,
            "batch": self.batch,
            "nan": self.nan,
            "inf": self.inf,
            "iteration": None if self.iteration is None else list(self.iteration),
            "inputs": [{"name": name, **stats} for name, stats in self.inputs],
        }


@dataclass
class DumpResult:
    archive: Path | None
    index: ModelIndex
    feeds: list[Feed]
    stored: list[StoredSummary] = field(default_factory=list)
    planned: list[PlannedTensor] = field(default_factory=list)
    samples: int = 1
    batches: int = 1
    #: with check_numerics: where NaN/Inf first appeared, else None
    nonfinite: NonFinite | None = None
    #: estimated archive bytes (tensors of unknown size not counted)
    estimate: int = 0


def default_output(model_path: Path) -> Path:
    """``model.h5`` -> ``model.probe.h5`` in the current directory."""
    stem = model_path.name if model_path.is_dir() else model_path.stem
    return Path(f"{stem or 'model'}.probe.h5")


def open_model(options: ModelOptions):  # -> TracedModel (TensorFlow imported lazily)
    """Load and trace: everything ``list`` needs."""
    from probe_cli.load import load
    from probe_cli.trace import trace

    return trace(
        load(options.path, custom_objects=options.custom_objects, unsafe=options.unsafe, signature=options.signature)
    )


def make_feeds(index: ModelIndex, options: InputOptions) -> list[Feed]:
    names = [spec.name for spec in index.inputs]
    return build_feeds(
        index.inputs,
        ([InputArg(None, options.inputs_from)] if options.inputs_from else [])
        + [parse_input_arg(text, names) for text in options.files],
        shapes=dict(parse_shape_arg(text) for text in options.shapes),
        value_ranges=dict(parse_range_arg(text) for text in options.value_ranges),
        batch_size=options.batch_size,
        seed=options.seed,
    )


def _planned(info: TensorInfo, batch: int | None) -> PlannedTensor:
    if info.shape is None or info.context is not None:  # loop bodies: executions unknown before running
        return PlannedTensor(info, None, None)
    shape = tuple(batch if (d is None and axis == 0) else d for axis, d in enumerate(info.shape))
    if any(d is None for d in shape) or info.dtype == "string":
        return PlannedTensor(info, shape, None)
    return PlannedTensor(info, shape, math.prod(shape) * np.dtype(info.dtype).itemsize)


def provenance(request: DumpRequest, traced: Any, batch_size: int) -> dict[str, Any]:
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
        "batch_size": batch_size,
        "command": request.command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _has_batch_axis(info: TensorInfo, value: np.ndarray, rows: int, fixed_batch: int | None) -> bool:
    """Whether axis 0 of this tensor runs over the samples of the batch."""
    if info.shape is None or not info.shape or value.ndim == 0 or value.shape[0] != rows:
        return False
    return info.shape[0] is None or info.shape[0] == fixed_batch


def check_size(estimate: int, output: Path, max_bytes: int | None) -> None:
    """Stops before running when the archive would not fit the limit or the disk."""
    import shutil

    if max_bytes is not None and estimate > max_bytes:
        raise ArchiveTooBig(
            f"the archive would need about {human_bytes(estimate)}, more than --max-bytes {human_bytes(max_bytes)}",
            "select fewer tensors or raise --max-bytes",
        )
    free = shutil.disk_usage(output.parent if str(output.parent) else Path(".")).free
    if estimate > free:
        raise ArchiveTooBig(
            f"the archive would need about {human_bytes(estimate)}, but only {human_bytes(free)} "
            f"is free at {str(output.parent or Path('.'))!r}"
        )


def select(index: ModelIndex, request: DumpRequest) -> list[TensorInfo]:
    """What ``dump`` fetches: the patterns' tensors; else every op (``--check-numerics``); else
    every layer output and every model output (a frozen graph has outputs but no layers)."""
    if request.tensors or request.layers:
        return resolve(index, request.tensors, request.layers)
    if request.check_numerics:
        return list(index.tensors)
    wanted = {t.name for t in resolve(index, layer_patterns=[".*"])} | set(index.outputs)
    return [t for t in index.tensors if t.name in wanted]


def _executors(traced: Any, selection: list[TensorInfo]) -> list[Callable[[list[Feed]], dict[str, Any]]]:
    """What computes the selection for one batch: values of top-level tensors (arrays) and of
    loop-body tensors (lists of executions).

    Top-level tensors come from one pruned execution (:class:`~probe_cli.run.Runner`).
    Body tensors of a Keras model come from an op callback on a re-trace, which then
    returns the top-level ones too, so one execution serves both; body tensors of
    loops that freezing lowered into a GraphDef come from TF1's debugger.
    """
    from probe_cli.run import Runner

    top = [info for info in selection if info.context is None]
    looped = [info for info in selection if info.context is not None]
    lowered = [info for info in looped if info.context.startswith("lowered loop")]
    functional = [info for info in looped if not info.context.startswith("lowered loop")]
    # with body tensors of a Keras model, the Capturer's one execution also gives the top-level ones
    executors: list[Callable[[list[Feed]], dict[str, Any]]] = [] if functional else [Runner(traced, top)]
    if functional:
        from probe_cli.control_flow import Capturer

        capturer = Capturer(traced, [*top, *functional])

        def capture(fed: list[Feed]) -> dict[str, Any]:
            values: dict[str, Any] = capturer(fed)
            for info in top:  # one Execution each: the value itself
                values[info.name] = values[info.name][0].value
            return values

        executors.append(capture)
    if lowered:
        from probe_cli.graphdef import LoweredLoopCapturer

        executors.append(LoweredLoopCapturer(traced, lowered))
    return executors


@dataclass
class _Tally:
    """What dump reports about one tensor, accumulated as its batches are written."""

    info: TensorInfo
    stats: RunningStats = field(default_factory=lambda: RunningStats(with_std=False))  # the table: min/max/mean
    shape: tuple[int, ...] | None = None
    #: top-level tensors: whether axis 0 runs over the samples (decided on the first batch)
    batched: bool | None = None
    #: loop-body tensors: how many executions were stored
    executions: int | None = None
    #: what the archive stores beside its values (built once, not per batch)
    attrs: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.attrs = tensor_attrs(self.info)

    def add(self, value: np.ndarray) -> None:
        self.stats.update(value)
        if self.shape is not None and self.batched:
            self.shape = (self.shape[0] + value.shape[0], *value.shape[1:])
        elif self.shape is None:
            self.shape = tuple(np.shape(value))

    def add_executions(self, executions: Sequence[Any]) -> None:
        self.executions = (self.executions or 0) + len(executions)
        for execution in executions:
            self.add(execution.value)

    def summary(self, batches: int) -> StoredSummary:
        how = "per_iteration" if self.info.context is not None else layout(bool(self.batched), batches)
        return StoredSummary(self.info, self.shape or (), self.info.dtype, self.stats.result(), how, self.executions)


def dump(request: DumpRequest, progress: Callable[[int, int], None] | None = None) -> DumpResult:
    """Fetches the selected tensors and archives them with their inputs, batch by batch.

    One execution per batch (see ``_executors``): the pruned function, or, when
    tensors inside loop bodies and branches are selected, the re-traced model
    that records them per execution and returns the top-level ones too.
    ``progress`` is called with (samples done, samples in all) after each batch.
    """
    from probe_cli.feed import iter_batches, plan_batches, sample_count

    output = request.output or default_output(request.model.path)
    if not request.dry_run:
        check_destination(output, request.force)  # fail before the slow part
    traced = open_model(request.model)
    index = traced.index
    selection = select(index, request)
    feeds = make_feeds(index, request.inputs)
    samples = sample_count(feeds, index.inputs)
    batch = plan_batches(index.inputs, samples, request.inputs.batch_size)
    batches = math.ceil(samples / batch)
    planned = [_planned(info, batch) for info in selection]
    estimate = sum(p.nbytes or 0 for p in planned) * batches
    if request.dry_run:
        return DumpResult(None, index, feeds, planned=planned, samples=samples, batches=batches, estimate=estimate)
    check_size(estimate, output, request.max_bytes)

    executors = _executors(traced, selection)
    fixed = next((s.shape[0] for s in index.inputs if s.shape and s.shape[0] is not None), None)
    tallies = [_Tally(info) for info in selection]
    done = 0
    nonfinite: NonFinite | None = None
    if progress is not None:
        progress(0, samples)
    # Statistics are computed on a second thread while the main one writes (numpy and HDF5 both release
    # the GIL): for a dump of every layer output that hides their cost. Each batch waits for its own, so
    # memory stays one batch.
    stats_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-stats")
    try:
        with ArchiveWriter(output, force=request.force, compression=request.compression) as writer:
            writer.set_attrs({"probe_format": FORMAT_VERSION, **provenance(request, traced, batch), "samples": samples})
            for number, fed in enumerate(iter_batches(feeds, index.inputs, batch)):
                values: dict[str, Any] = {}
                for execute in executors:
                    values.update(execute(fed))
                rows = fed[0].array.shape[0] if fed and fed[0].array.ndim else 1
                if request.check_numerics and nonfinite is None:
                    nonfinite = _first_nonfinite(traced, selection, values, fed, number)
                for feed, spec in zip(fed, index.inputs):
                    attrs = {
                        "name": feed.name,
                        "source": feed.source,
                        "seed": request.inputs.seed,
                        "dtype": str(feed.array.dtype),
                    }
                    batched_input = bool(spec.shape) and feed.array.ndim > 0
                    writer.stream(INPUTS, attrs, feed.array, number, batches, batched_input)
                pending = []
                for tally in tallies:
                    info = tally.info
                    value = values.pop(info.name)  # written, then freed: memory stays one batch
                    if info.context is not None:  # a list of Executions
                        pending.append(stats_thread.submit(tally.add_executions, value))
                        writer.executions(tally.attrs, value, number)
                        continue
                    if tally.batched is None:
                        tally.batched = _has_batch_axis(info, value, rows, fixed)
                    if value.nbytes >= _STATS_THREAD_MIN_BYTES:
                        pending.append(stats_thread.submit(tally.add, value))
                    else:  # handing a small one over costs more than its statistics
                        tally.add(value)
                    writer.stream(TENSORS, tally.attrs, value, number, batches, tally.batched)
                    del value
                for future in pending:
                    future.result()
                done += rows
                if progress is not None:
                    progress(done, samples)
            if request.check_numerics:
                writer.set_attrs({"numerics": nonfinite.document() if nonfinite else {"nonfinite": None}})
    finally:
        stats_thread.shutdown(wait=True, cancel_futures=True)
    return DumpResult(
        output,
        index,
        feeds,
        stored=[tally.summary(batches) for tally in tallies],
        samples=samples,
        batches=batches,
        estimate=estimate,
        nonfinite=nonfinite,
    )


def _region_starts(tensors: Sequence[TensorInfo]) -> dict[str, int]:
    """For each body tensor, the graph position of the outermost loop or branch it runs in.

    The index lists a top-level control-flow op's body tensors (nested regions
    included) together, right before the op's own outputs, so each run of
    consecutive body tensors is one outermost region, starting where the run
    starts; no name is parsed. Tensors of lowered loops (frozen graphs) sit
    among the others and keep their own position.
    """
    starts: dict[str, int] = {}
    start: int | None = None
    for t in tensors:
        if t.context is None or t.context.startswith("lowered loop"):
            start = None
            continue
        if start is None:
            start = t.order
        starts[t.name] = start
    return starts


def _first_nonfinite(
    traced: Any, selection: Sequence[TensorInfo], values: dict[str, Any], fed: list[Feed], batch: int
) -> NonFinite | None:
    """The earliest non-finite value of one batch; the inputs of the culprit are fetched if not already."""
    candidates = []
    starts: dict[str, int] | None = None
    for info in selection:
        value = values[info.name]
        # a loop-body tensor: its executions (maybe none); else the one value, as a pseudo-execution None
        for execution in value if isinstance(value, list) else [None]:
            array = execution.value if execution is not None else value
            if array.dtype.kind not in "fc" or np.isfinite(array).all():
                continue
            if execution is None:
                key = (info.order, (), info.order)
            else:
                starts = starts if starts is not None else _region_starts(traced.index.tensors)
                key = (starts.get(info.name, info.order), execution.path, info.order)
            candidates.append((key, info, array, execution))
            break  # executions come sorted by iteration: the first bad one is this tensor's earliest
    if not candidates:
        return None
    _, info, value, execution = min(candidates, key=lambda c: c[0])
    inputs = [t for t in traced.op_inputs(info) if t.context is None]
    missing = [t for t in inputs if t.name not in values]
    if missing:
        from probe_cli.run import Runner

        values = {**values, **Runner(traced, missing)(fed)}
    stats = tuple((t.name, summarize(values[t.name])) for t in inputs if not isinstance(values[t.name], list))
    path = execution.path if execution is not None else None
    return NonFinite(info, batch, int(np.isnan(value).sum()), int(np.isinf(value).sum()), stats, path)


def list_model(options: ModelOptions) -> ModelIndex:
    return open_model(options).index


def filter_index(index: ModelIndex, match: Sequence[str], layers_only: bool) -> ModelIndex:
    """``list --match``: the tensors ``dump`` would select and the layers they belong to or come out
    of (the output of a nested model, or of a pass-through layer such as Dropout, belongs to
    another layer), so a search in a large model is not buried under hundreds of unrelated layers.
    With ``--layers``: the layers it would select."""
    from dataclasses import replace

    from probe_cli.resolve import match_layers

    if not match:
        return index
    if layers_only:
        return replace(index, layers=tuple(match_layers(index, match, "--match")))
    tensors = tuple(resolve(index, match, tensor_option="--match"))
    owners = {t.layer for t in tensors}
    names = {t.name for t in tensors}
    layers = tuple(layer for layer in index.layers if layer.name in owners or names.intersection(layer.outputs))
    return replace(index, tensors=tensors, layers=layers)
