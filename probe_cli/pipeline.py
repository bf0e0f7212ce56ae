"""The pipeline as one library call per command: open -> resolve -> feed -> run -> archive.

The CLI parses options into these requests and renders the results; nothing
here prints or knows about Click. The Python API (:mod:`probe_cli.api`) calls the
same functions with a model it has opened and arrays it was given.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli import __version__
from probe_cli.analysis.coverage import layer_coverage
from probe_cli.analysis.diff import ArchiveDiff, Budgets, diff_archives
from probe_cli.analysis.numerics import NonFinite, first_nonfinite
from probe_cli.analysis.pairing import oriented, pair
from probe_cli.archive.format import FORMAT_VERSION, INPUT_SOURCES, INPUTS, TENSORS, input_attrs, layout, tensor_attrs
from probe_cli.archive.writer import ArchiveWriter, check_destination
from probe_cli.backends import registry, tfenv
from probe_cli.backends.base import Executor, OpenOptions, TracedModel
from probe_cli.core import layouts
from probe_cli.core.distribution import DEFAULT_BINS, Distribution, of_array
from probe_cli.core.errors import ArchiveTooBig, FeedError, PatternError, UsageProblem, given, option
from probe_cli.core.quantization import dequantized
from probe_cli.core.resolve import match_layers, resolve
from probe_cli.core.stats import RunningStats
from probe_cli.core.types import Feed, InputSpec, ModelIndex, Region, Shape, TensorInfo
from probe_cli.core.units import human_bytes
from probe_cli.feed import (
    DEFAULT_SEED,
    InputArg,
    build_feeds,
    feed_warnings,
    iter_batches,
    parse_input_arg,
    parse_range_arg,
    parse_shape_arg,
    plan_batches,
    sample_count,
    shard_feeds,
    shard_range,
)

#: Tensors from this size up get their statistics on the second thread.
_STATS_THREAD_MIN_BYTES = 1 << 18

#: Default of --max-bytes: a dump estimated larger stops before running.
DEFAULT_MAX_BYTES = 16 * 1024**3


@dataclass(frozen=True)
class ModelOptions:
    """A model file and how to open it (shared by every command that loads one)."""

    path: Path
    custom_objects: tuple[Path, ...] = ()
    unsafe: bool = False
    #: SavedModel signature to trace
    signature: str = "serving_default"

    def open_options(self) -> OpenOptions:
        return OpenOptions(self.custom_objects, self.unsafe, self.signature)


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
    #: how many random samples to make (files decide their own count)
    samples: int | None = None


@dataclass(frozen=True)
class DumpSpec:
    """What to dump and how, whatever the model and inputs are."""

    tensors: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    force: bool = False
    dry_run: bool = False
    command: str = ""
    compression: str | None = None
    max_bytes: int | None = DEFAULT_MAX_BYTES
    #: find the first op whose output holds NaN or Inf (all ops when nothing is selected)
    check_numerics: bool = False
    #: store each tensor's distribution over the samples instead of its values
    stats_only: bool = False
    #: the histograms' range (implies ``histogram``); None: each tensor's range over the first batch
    hist_range: tuple[float, float] | None = None
    bins: int = DEFAULT_BINS
    #: with ``stats_only``: a histogram of each tensor, and moments per channel (the last axis); each
    #: costs more than the default statistics together (docs/performance.md)
    histogram: bool = False
    channels: bool = False

    @property
    def histograms(self) -> bool:
        """Whether ``--stats-only`` computes histograms: asked for, or a range given for them."""
        return self.histogram or self.hist_range is not None

    #: (K, N): only the K-th (from 0) of N contiguous slices of the samples
    shard: tuple[int, int] | None = None


@dataclass(frozen=True)
class DumpRequest:
    """``probe dump``: a model file, inputs as the command line gives them, and the spec."""

    model: ModelOptions
    spec: DumpSpec = field(default_factory=DumpSpec)
    inputs: InputOptions = field(default_factory=InputOptions)
    output: Path | None = None


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
    #: a quantized tensor: the stored integers' range (``stats`` are of its real values)
    stored_range: tuple[int, int] | None = None


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
    samples: int = 1
    batches: int = 1
    #: with check_numerics: where NaN/Inf first appeared, else None
    nonfinite: NonFinite | None = None
    #: estimated archive bytes (tensors of unknown size not counted)
    estimate: int = 0

    @property
    def warnings(self) -> list[str]:
        """One line per input converted by a cast that can change values, for the caller to show."""
        return feed_warnings(self.feeds)


def default_output(model_path: Path) -> Path:
    """``model.h5`` -> ``model.probe.h5`` in the current directory."""
    stem = model_path.name if model_path.is_dir() else model_path.stem
    return Path(f"{stem or 'model'}.probe.h5")


def open_model(options: ModelOptions) -> TracedModel:
    """Load and trace: everything ``list`` needs."""
    return registry.open_model(options.path, options.open_options())


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
        samples=options.samples,
    )


def _planned(info: TensorInfo, batch: int | None) -> PlannedTensor:
    if info.shape is None or info.per_execution:  # loop bodies: executions unknown before running
        return PlannedTensor(info, None, None)
    shape = tuple(batch if (d is None and axis == 0) else d for axis, d in enumerate(info.shape))
    known = [d for d in shape if d is not None]
    if len(known) < len(shape) or info.dtype == "string":
        return PlannedTensor(info, shape, None)
    return PlannedTensor(info, shape, math.prod(known) * np.dtype(info.dtype).itemsize)


def provenance(traced: TracedModel, seed: int, batch_size: int, command: str) -> dict[str, Any]:
    """Root attributes of the archive: enough to reproduce the run."""
    return {
        "probe_version": __version__,
        **tfenv.versions(),
        "model_path": traced.loaded.origin,
        "model_sha256": traced.loaded.sha256,
        "model_format": traced.loaded.model_format,
        "seed": seed,
        "batch_size": batch_size,
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def has_batch_axis(info: TensorInfo, value: np.ndarray, rows: int, fixed_batch: int | None) -> bool:
    """Whether axis 0 of this tensor runs over the samples of the batch."""
    if info.shape is None or not info.shape or value.ndim == 0 or value.shape[0] != rows:
        return False
    return info.shape[0] is None or info.shape[0] == fixed_batch


def check_size(estimate: int, output: Path, max_bytes: int | None) -> None:
    """Stops before running when the archive would not fit the limit or the disk."""
    if max_bytes is not None and estimate > max_bytes:
        raise ArchiveTooBig(
            f"the archive would need about {human_bytes(estimate)}, more than "
            f"{given('--max-bytes', human_bytes(max_bytes))}",
            f"select fewer tensors or raise {option('--max-bytes')}",
        )
    free = shutil.disk_usage(output.parent if str(output.parent) else Path(".")).free
    if estimate > free:
        raise ArchiveTooBig(
            f"the archive would need about {human_bytes(estimate)}, but only {human_bytes(free)} "
            f"is free at {str(output.parent or Path('.'))!r}"
        )


def select(
    index: ModelIndex, tensors: Sequence[str] = (), layers: Sequence[str] = (), check_numerics: bool = False
) -> list[TensorInfo]:
    """What ``dump`` fetches: the patterns' tensors; else every op (``--check-numerics``); else
    every layer output and every model output (a frozen graph has outputs but no layers)."""
    if tensors or layers:
        return resolve(index, tensors, layers)
    if check_numerics:
        return list(index.tensors)
    wanted = {t.name for t in resolve(index, layer_patterns=[".*"])} | set(index.outputs)
    return [t for t in index.tensors if t.name in wanted]


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
    #: a quantized tensor: the stored integers' range (``stats`` are of the real values, as ``show`` gives them)
    stored_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.attrs = tensor_attrs(self.info)

    def add(self, value: np.ndarray) -> None:
        if self.info.quantization is not None and np.size(value):
            low, high = int(np.min(value)), int(np.max(value))
            if self.stored_range is not None:
                low, high = min(low, self.stored_range[0]), max(high, self.stored_range[1])
            self.stored_range = (low, high)
            self.stats.update(dequantized(np.asarray(value), self.info.quantization))
        else:
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
        how = "per_iteration" if self.info.per_execution else layout(bool(self.batched), batches)
        return StoredSummary(
            self.info, self.shape or (), self.info.dtype, self.stats.result(), how, self.executions, self.stored_range
        )


def dump(request: DumpRequest, progress: Callable[[int, int], None] | None = None) -> DumpResult:
    """``probe dump``: opens the model file, reads the inputs the command line names, and dumps."""
    spec = request.spec
    output = request.output or default_output(request.model.path)
    if not spec.dry_run:
        check_destination(output, spec.force)  # fail before the slow part
    traced = open_model(request.model)
    feeds = make_feeds(traced.index, request.inputs)
    return dump_model(
        traced, feeds, output, spec, seed=request.inputs.seed, batch_size=request.inputs.batch_size, progress=progress
    )


def dump_model(
    traced: TracedModel,
    feeds: list[Feed],
    output: Path,
    spec: DumpSpec,
    *,
    seed: int = DEFAULT_SEED,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    selection: Sequence[TensorInfo] | None = None,
) -> DumpResult:
    """Fetches the selected tensors and archives them with their inputs, batch by batch.

    One execution per batch, by the executors the model's backend builds for the selection.
    ``progress`` is called with (samples done, samples in all) after each batch. ``selection``,
    when given, replaces the spec's patterns.
    """
    index = traced.index
    if selection is None:
        selection = select(index, spec.tensors, spec.layers, spec.check_numerics)
    selection = list(selection)
    total = sample_count(feeds, index.inputs)
    start, stop = (0, total) if spec.shard is None else shard_range(total, spec.shard)
    if (spec.histogram or spec.channels) and not spec.stats_only:
        raise UsageProblem(
            f"{option('--histogram')} and {option('--channels')} go with {option('--stats-only')}",
            f"add {option('--stats-only')}",
        )
    if spec.stats_only and spec.check_numerics:
        raise UsageProblem(
            f"{option('--check-numerics')} needs the values: it does not go with {option('--stats-only')}"
        )
    if spec.shard is not None:
        if spec.stats_only and spec.histogram and spec.hist_range is None:
            raise UsageProblem(
                f"{option('--shard')} with {option('--histogram')} needs {given('--hist-range', 'LO,HI')}",
                "every shard's histograms must share their bins",
            )
        feeds = shard_feeds(feeds, index.inputs, start, stop)
    samples = stop - start
    batch = plan_batches(index.inputs, samples, batch_size)
    batches = math.ceil(samples / batch)
    planned = [_planned(info, batch) for info in selection]
    estimate = 0 if spec.stats_only else sum(p.nbytes or 0 for p in planned) * batches
    if spec.dry_run:
        return DumpResult(None, index, feeds, planned=planned, samples=samples, batches=batches, estimate=estimate)
    check_destination(output, spec.force)
    check_size(estimate, output, spec.max_bytes)
    run_attrs = {
        "probe_format": FORMAT_VERSION,
        **provenance(traced, seed, batch, spec.command),
        "samples": samples,
        **_run_attrs(traced, selection, seed, spec, total, start, stop),
    }
    if spec.stats_only:
        return _dump_distributions(traced, feeds, output, spec, selection, batch, run_attrs, progress)

    executors = traced.executors(selection)
    tallies = [_Tally(info) for info in selection]
    nonfinite: NonFinite | None = None
    # Statistics are computed on a second thread while the main one writes (numpy and HDF5 both release
    # the GIL): for a dump of every layer output that hides their cost. Each batch waits for its own, so
    # memory stays one batch.
    stats_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-stats")
    try:
        with ArchiveWriter(output, force=spec.force, compression=spec.compression) as writer:
            writer.set_attrs(run_attrs)
            writer.set_graph(traced.graph())
            input_layouts = [_input_layout(traced, spec) for spec in index.inputs]
            for number, fed, values in run_batches(traced, feeds, executors, batch, progress):
                rows = fed[0].array.shape[0] if fed and fed[0].array.ndim else 1
                if spec.check_numerics and nonfinite is None:
                    nonfinite = first_nonfinite(traced, selection, values, fed, number)
                for feed, input_spec, input_layout in zip(fed, index.inputs, input_layouts):
                    batched_input = bool(input_spec.shape) and feed.array.ndim > 0
                    attrs = input_attrs(feed, seed, input_layout)
                    writer.stream(INPUTS, attrs, feed.array, number, batches, batched_input)
                pending = []
                for tally in tallies:
                    info = tally.info
                    value = values.pop(info.name)  # written, then freed: memory stays one batch
                    if info.per_execution:  # a list of Executions
                        pending.append(stats_thread.submit(tally.add_executions, value))
                        writer.executions(tally.attrs, value, number)
                        continue
                    if tally.batched is None:
                        tally.batched = has_batch_axis(info, value, rows, fixed_batch(index))
                    if value.nbytes >= _STATS_THREAD_MIN_BYTES:
                        pending.append(stats_thread.submit(tally.add, value))
                    else:  # handing a small one over costs more than its statistics
                        tally.add(value)
                    writer.stream(TENSORS, tally.attrs, value, number, batches, tally.batched)
                    del value
                for future in pending:
                    future.result()
            if spec.check_numerics:
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


def _run_attrs(
    traced: TracedModel, selection: Sequence[TensorInfo], seed: int, spec: DumpSpec, total: int, start: int, stop: int
) -> dict[str, Any]:
    """What ``probe merge`` checks: the run's fingerprint (model, selection, seed, probe version and the
    statistics' settings), and which samples of how many this archive holds."""
    run = {
        "model_sha256": traced.loaded.sha256,
        "selection": [info.name for info in selection],
        "seed": seed,
        "probe_version": __version__,
        "stats_only": spec.stats_only,
        "bins": spec.bins if spec.stats_only and spec.histograms else None,
        "hist_range": list(spec.hist_range) if spec.stats_only and spec.hist_range else None,
        "channels": spec.stats_only and spec.channels,
    }
    fingerprint = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()
    attrs: dict[str, Any] = {"fingerprint": fingerprint, "sample_start": start, "sample_stop": stop}
    attrs["samples_total"] = total
    if spec.shard is not None:
        attrs["shard"] = f"{spec.shard[0]}/{spec.shard[1]}"
    if spec.stats_only:
        attrs.update(stats_only=True, histogram=spec.histograms, channels=spec.channels)
        if spec.histograms:
            attrs["bins"] = spec.bins
    return attrs


def _dump_distributions(
    traced: TracedModel,
    feeds: list[Feed],
    output: Path,
    spec: DumpSpec,
    selection: list[TensorInfo],
    batch: int,
    run_attrs: dict[str, Any],
    progress: Callable[[int, int], None] | None,
) -> DumpResult:
    """``--stats-only``: each tensor's distribution over every sample, merged batch by batch; only the
    statistics leave the graph where the backend can reduce inside it."""
    execute = _distribution_executor(traced, selection, spec)
    found: dict[str, Distribution] = {}
    batches = 0
    for _, _fed, dists in run_batches(traced, feeds, [execute], batch, progress):
        batches += 1
        for name, dist in dists.items():
            found[name] = found[name].merge(dist) if name in found else dist
    with ArchiveWriter(output, force=spec.force) as writer:
        writer.set_attrs(run_attrs)
        writer.set_graph(traced.graph())
        # no values are stored, but where they came from is: show names the inputs and the seed of random ones
        sources = [
            {**input_attrs(feed, run_attrs["seed"] if feed.source == "random" else None), "shape": feed.array.shape}
            for feed in feeds
        ]
        writer.set_attrs({INPUT_SOURCES: json.dumps(sources, default=int)})
        for info in selection:
            if info.name in found:
                writer.distribution(tensor_attrs(info), found[info.name])
    stored = [
        StoredSummary(info, _known(info.shape), info.dtype, found[info.name].summary(), "stats")
        for info in selection
        if info.name in found
    ]
    samples = int(run_attrs["samples"])
    return DumpResult(output, traced.index, feeds, stored=stored, samples=samples, batches=batches)


def _known(shape: Shape | None) -> tuple[int, ...]:
    return tuple(d for d in (shape or ()) if d is not None)


def _distribution_executor(traced: TracedModel, selection: Sequence[TensorInfo], spec: DumpSpec) -> Executor:
    """One batch's distributions, reduced inside the graph where the backend can (``distributions``), else
    from the values its executors return (tensors inside loops, backends without graphs) or, for the
    inputs, from the fed arrays. The default statistics take the inputs' in the graph too: NumPy's
    float64 temporaries of a batch of images cost more memory than the rest of the run adds."""
    reduce = getattr(traced.backend, "distributions", None)
    histogram, channels = spec.histograms, spec.channels
    detail = histogram or channels
    input_of = {input_spec.graph_name: input_spec.name for input_spec in traced.index.inputs}
    top = [info for info in selection if info.region is Region.TOP] if reduce else []
    in_graph = [info for info in top if not detail or info.graph_name not in input_of]
    reduced = {info.name for info in in_graph}
    fed_inputs = [info for info in selection if info.graph_name in input_of and info.name not in reduced]
    rest = [info for info in selection if info.graph_name not in input_of and info.name not in reduced]
    runners: list[Executor] = (
        [reduce(traced, in_graph, spec.hist_range, spec.bins, detail)] if reduce and in_graph else []
    )
    plain = traced.executors(rest) if rest else []
    ranges: dict[str, tuple[float, float]] = {}

    def execute(fed: Sequence[Feed]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for runner in runners:
            found.update({name: _asked(dist, histogram, channels) for name, dist in runner(fed).items()})
        arrays = {feed.name: feed.array for feed in fed}
        values: dict[str, Any] = {info.name: arrays[input_of[info.graph_name]] for info in fed_inputs}
        for executor in plain:
            values.update(executor(fed))
        for info in [*fed_inputs, *rest]:
            value = values.pop(info.name)
            for array in [e.value for e in value] if info.per_execution else [value]:
                real = dequantized(array, info.quantization)  # a TFLite tensor's integers: their real values
                if info.layout and "C" in info.layout and np.ndim(real) == len(info.layout):
                    real = np.moveaxis(real, info.layout.index("C"), -1)  # per channel: an NCHW tensor's axis 1
                span = spec.hist_range or ranges.get(info.name)
                dist = of_array(real, span, spec.bins, histogram=histogram, channels=channels)
                if dist.hist_range is not None:
                    ranges.setdefault(info.name, dist.hist_range)
                found[info.name] = found[info.name].merge(dist) if info.name in found else dist
        return found

    return execute


def _asked(dist: Distribution, histogram: bool, channels: bool) -> Distribution:
    """``dist`` without the histogram or the per-channel moments when they were not asked for (the
    detailed reductions compute both)."""
    if not histogram and dist.histogram is not None:
        dist = replace(dist, histogram=None, hist_range=None)
    return dist if channels or dist.channels is None else replace(dist, channels=None)


def run_batches(
    traced: TracedModel,
    feeds: Sequence[Feed],
    executors: Sequence[Executor],
    batch: int,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, list[Feed], dict[str, Any]]]:
    """(batch number, its feeds, the values of every selected tensor) for each execution, in order."""
    inputs = traced.index.inputs
    samples = sample_count(feeds, inputs)
    done = 0
    if progress is not None:
        progress(0, samples)
    for number, fed in enumerate(iter_batches(feeds, inputs, batch)):
        values: dict[str, Any] = {}
        for execute in executors:
            values.update(execute(fed))
        yield number, fed, values
        done += fed[0].array.shape[0] if fed and fed[0].array.ndim else 1
        if progress is not None:
            progress(done, samples)


def fixed_batch(index: ModelIndex) -> int | None:
    """The batch size the model's inputs fix, if any."""
    return next((s.shape[0] for s in index.inputs if s.shape and s.shape[0] is not None), None)


def list_model(options: ModelOptions) -> ModelIndex:
    return open_model(options).index


def filter_index(index: ModelIndex, match: Sequence[str], layers_only: bool) -> ModelIndex:
    """``list --match``: the tensors ``dump`` would select and the layers they belong to or come out
    of (the output of a nested model, or of a pass-through layer such as Dropout, belongs to
    another layer), so a search in a large model is not buried under hundreds of unrelated layers.
    With ``--layers``: the layers it would select."""
    if not match:
        return index
    if layers_only:
        return replace(index, layers=tuple(match_layers(index, match, "--match")))
    tensors = tuple(resolve(index, match, tensor_option="--match"))
    owners = {t.layer for t in tensors}
    names = {t.name for t in tensors}
    layers = tuple(layer for layer in index.layers if layer.name in owners or names.intersection(layer.outputs))
    return replace(index, tensors=tensors, layers=layers)


def compare_models(
    reference: TracedModel,
    candidate: TracedModel,
    feeds: list[Feed],
    save_dir: Path | None = None,
    *,
    tensors: Sequence[str] = (),
    layers: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    budgets: Budgets | None = None,
    seed: int = DEFAULT_SEED,
    batch_size: int | None = None,
    command: str = "",
    with_archives: Callable[[ArchiveDiff, Path, Path], None] | None = None,
) -> ArchiveDiff:
    """``probe compare``: both models run on the same inputs (``feeds``, the reference's), the tensors
    paired across the two graphs (:mod:`probe_cli.analysis.pairing`; with ``tensors``/``layers``,
    those pairs either side's selection names) are dumped as ``reference.probe.h5`` and
    ``candidate.probe.h5`` (kept in ``save_dir`` if given, else in a temporary directory, and the
    result then names the models), and the candidate is diffed against the reference. Tensors
    without a partner are listed; only the paired ones decide the verdict. ``with_archives`` is called
    with the result and the candidate's and reference's archives while they exist (``--html``)."""
    ref_graph, cand_graph = reference.graph(), candidate.graph()
    pairing = pair(ref_graph, cand_graph, oriented(mapping or {}, ref_graph.by_name, cand_graph.by_name))
    if tensors or layers:
        chosen_r = {t.name for t in select(reference.index, tensors, layers)}
        chosen_c = {t.name for t in _selected_if_any(candidate.index, tensors, layers)}
        kept = [p for p in pairing.pairs if p.reference in chosen_r or p.candidate in chosen_c]
        pairing = pairing.restricted(chosen_r | {p.reference for p in kept}, chosen_c | {p.candidate for p in kept})
    if not pairing.pairs:  # a pass with nothing compared would pass anything
        raise UsageProblem(
            "no tensor of the candidate pairs with one of the reference's",
            "pair them by name with --map FILE (REFERENCE_NAME,CANDIDATE_NAME per line)",
        )
    spec = DumpSpec(force=True, command=command, max_bytes=None)
    cand_feeds = _fed_alike(candidate, reference, feeds)
    with ExitStack() as stack:
        work_dir = save_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="probe-compare-")))
        work_dir.mkdir(parents=True, exist_ok=True)
        ref_archive, cand_archive = work_dir / "reference.probe.h5", work_dir / "candidate.probe.h5"
        for traced, fed, archive, names in (
            (reference, feeds, ref_archive, [p.reference for p in pairing.pairs]),
            (candidate, cand_feeds, cand_archive, [p.candidate for p in pairing.pairs]),
        ):
            paired = [traced.index.tensor(name) for name in dict.fromkeys(names)]
            dump_model(traced, fed, archive, spec, seed=seed, batch_size=batch_size, selection=paired)
        result = diff_archives(
            cand_archive, ref_archive, atol=atol, rtol=rtol, budgets=budgets, pairing=pairing, unpaired_differ=False
        )
        errors = {t.name: t.rel_error for t in result.tensors if t.rel_error is not None}
        compared = [replace(t, added_error=_added_error(candidate, t.name, errors)) for t in result.tensors]
        result = replace(
            result,
            tensors=compared,
            only_in_a=pairing.only_candidate,
            only_in_b=pairing.only_reference,
            why_only_in_a=pairing.why_candidate,
            why_only_in_b=pairing.why_reference,
            fused_into_a=pairing.fused_into_candidate,
            fused_into_b=pairing.fused_into_reference,
            layer_coverage=layer_coverage(ref_graph, pairing),
        )
        if save_dir is None:  # the archives will be gone: name the models
            result = replace(result, a=candidate.loaded.origin, b=reference.loaded.origin)
        if with_archives is not None:
            with_archives(result, cand_archive, ref_archive)
    return result


def _selected_if_any(index: ModelIndex, tensors: Sequence[str], layers: Sequence[str]) -> list[TensorInfo]:
    """The candidate's own tensors the patterns name, if any: patterns are written for the reference."""
    found: dict[str, TensorInfo] = {}
    for kind, pattern in [*(("t", p) for p in tensors), *(("l", p) for p in layers)]:
        try:
            matched = resolve(index, [pattern] if kind == "t" else [], [pattern] if kind == "l" else [])
        except PatternError:
            continue
        found.update((t.name, t) for t in matched)
    return list(found.values())


def _added_error(traced: TracedModel, name: str, errors: Mapping[str, float]) -> float | None:
    """How much relative error a tensor adds: its own less the largest of its inputs', each input's error
    being its own where compared, else that of the nearest compared tensors it was computed from."""
    if name not in errors or name not in traced.index.by_name:
        return None
    upstream: list[float] = []
    seen: set[str] = set()
    pending = [traced.index.tensor(name)]
    while pending:  # through what was not compared (fused away, constants), up to what was
        for source in traced.op_inputs(pending.pop()):
            if source.name in errors:
                upstream.append(errors[source.name])
            elif source.name not in seen:
                seen.add(source.name)
                pending.append(source)
    return errors[name] - max(upstream, default=0.0)


def _fed_alike(candidate: TracedModel, reference: TracedModel, feeds: Sequence[Feed]) -> list[Feed]:
    """The reference's feeds for the candidate's inputs: by name when the names agree, else by position;
    transposed where the two inputs' layouts differ (an ONNX export taking NCHW images)."""
    inputs, ref_inputs = candidate.index.inputs, reference.index.inputs
    names = [spec.name for spec in inputs]
    if sorted(names) == sorted(spec.name for spec in ref_inputs):
        given = {feed.name: feed for feed in feeds}
        by_name = {spec.name: spec for spec in ref_inputs}
        matched = [(spec, by_name[spec.name], given[spec.name]) for spec in inputs]
    elif len(names) != len(feeds):
        raise FeedError(
            f"the candidate has {len(names)} inputs ({', '.join(names)}), the reference {len(feeds)}",
            "compare models with the same inputs",
        )
    else:
        matched = [(spec, ref, replace(feed, name=spec.name)) for spec, ref, feed in zip(inputs, ref_inputs, feeds)]
    return [_laid_out(feed, spec, ref, candidate, reference) for spec, ref, feed in matched]


def _laid_out(feed: Feed, spec: InputSpec, ref: InputSpec, candidate: TracedModel, reference: TracedModel) -> Feed:
    """``feed`` transposed from the reference input's layout to the candidate input's, when they differ and
    the result has the candidate's shape."""
    tracked = layouts.differing(
        _input_layout(candidate, spec),
        _input_layout(reference, ref),
        candidate.loaded.model_format,
        reference.loaded.model_format,
    )
    axes = None if tracked is None else layouts.axes(tracked[1], tracked[0])
    if axes is None or feed.array.ndim != len(axes):
        return feed
    moved = np.transpose(feed.array, axes)
    if len(spec.shape) != moved.ndim or any(d is not None and d != n for d, n in zip(spec.shape, moved.shape)):
        return feed
    return replace(feed, array=np.ascontiguousarray(moved))


def _input_layout(traced: TracedModel, spec: InputSpec) -> str | None:
    """The layout the backend tracked for an input's tensor, if any."""
    return next((t.layout for t in traced.index.tensors if t.graph_name == spec.graph_name and t.layout), None)
