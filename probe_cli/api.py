"""The Python API: open a model file or an in-memory ``keras.Model``, list it, run it, dump it.

Every call borrows the caller's process and gives it back as it was: TensorFlow's
and Keras' warnings and log lines inside are hidden and the caller's filters and
levels restored (:func:`~probe_cli.backends.tfenv.guest`), Grappler is switched off
only around probe's own executions, and a model object handed in is left unchanged.
See docs/python-api.md.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from probe_cli.analysis.diff import ArchiveDiff, Budgets, diff_archives
from probe_cli.analysis.show import ArchiveSummary, show_archive
from probe_cli.archive.merge import MergeResult, merge_archives
from probe_cli.backends import registry, tfenv
from probe_cli.backends.base import OpenOptions, TracedModel
from probe_cli.core.distribution import DEFAULT_BINS
from probe_cli.core.errors import FeedError, InputConversionWarning, python_call
from probe_cli.core.types import Feed, ModelIndex, TensorInfo
from probe_cli.feed import DEFAULT_SEED, build_feeds, feed_warnings, plan_batches, sample_count
from probe_cli.pipeline import (
    DEFAULT_MAX_BYTES,
    DumpResult,
    DumpSpec,
    compare_models,
    dump_model,
    fixed_batch,
    has_batch_axis,
    run_batches,
    select,
)

#: What ``inputs`` may be: one array (a model with one input), a list by position, a dict by name.
Inputs = Any
_F = TypeVar("_F", bound=Callable[..., Any])


def _in_python_words(func: _F) -> _F:
    """Errors raised inside name the call's arguments (``tensors=``), not the CLI's flags (``--tensor``)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        with python_call():
            return func(*args, **kwargs)

    return cast(_F, call)


@_in_python_words
def open(  # noqa: A001 - probe.open reads as intended, like io.open
    source: str | os.PathLike[str] | Any,
    *,
    custom_objects: Sequence[str | os.PathLike[str]] = (),
    unsafe: bool = False,
    signature: str = "serving_default",
) -> Model:
    """Opens a model file of any format probe reads, or a ``keras.Model`` held in memory.

    ``custom_objects`` are Python files whose classes the model needs; ``unsafe`` lets a
    Keras file run code it holds (Lambda layers); ``signature`` picks a SavedModel's signature.
    """
    with tfenv.guest():
        if isinstance(source, (str, os.PathLike)):
            options = OpenOptions(tuple(Path(p) for p in custom_objects), unsafe, signature)
            traced = registry.open_model(Path(source), options)
        else:
            traced = registry.open_keras_model(source)
    return Model(traced)


@_in_python_words
def show(path: str | os.PathLike[str], match: Sequence[str] = ()) -> ArchiveSummary:
    """An archive's provenance, inputs and per-tensor statistics: what ``probe show`` prints."""
    return show_archive(Path(path), tuple(match))


@_in_python_words
def diff(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    match: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    max_error: float | str | Sequence[float | str] = (),
) -> ArchiveDiff:
    """Where archive ``a`` (the candidate) diverges from the reference ``b``: what ``probe diff`` prints.

    A float tensor differs when its relative error ``||a - b|| / ||b||`` is over its budget: ``max_error``
    as ``--max-error`` takes it (``0.02``, ``"probs/.*=0.05"``, or a list of them; default 1e-4); with
    ``atol``/``rtol``, also when any element is out of ``atol + rtol * |b|``. ``mapping`` pairs the
    reference's names with the candidate's.
    """
    return diff_archives(
        Path(a), Path(b), atol=atol, rtol=rtol, match=tuple(match), mapping=mapping, budgets=_budgets(max_error)
    )


def _budgets(max_error: float | str | Sequence[float | str]) -> Budgets | None:
    values = [max_error] if isinstance(max_error, (str, int, float)) else list(max_error)
    return Budgets.parse([str(v) for v in values]) if values else None


@_in_python_words
def merge(
    output: str | os.PathLike[str], parts: Sequence[str | os.PathLike[str]], *, copy: bool = False, force: bool = False
) -> MergeResult:
    """The shards of one run (``dump(..., shard=(k, n))``) as one archive: what ``probe merge`` writes."""
    return merge_archives(Path(output), [Path(p) for p in parts], copy=copy, force=force)


@_in_python_words
def compare(
    reference: str | os.PathLike[str] | Model | Any,
    candidate: str | os.PathLike[str] | Model | Any,
    inputs: Inputs = None,
    *,
    tensors: Sequence[str] = (),
    layers: Sequence[str] = (),
    atol: float | None = None,
    rtol: float | None = None,
    mapping: Mapping[str, str] | None = None,
    max_error: float | str | Sequence[float | str] = (),
    seed: int = DEFAULT_SEED,
    batch_size: int | None = None,
    save_dir: str | os.PathLike[str] | None = None,
) -> ArchiveDiff:
    """Where ``candidate`` (another form of the model: its SavedModel, a frozen graph, a TFLite
    conversion, a retrained copy) first diverges from ``reference``, run on the same inputs: what
    ``probe compare`` prints.

    Models are paths, :class:`Model` objects or in-memory ``keras.Model`` objects. Every tensor the
    two graphs pair is compared (with ``tensors``/``layers``, the pairs they select on either side);
    ``max_error`` sets budgets as for :func:`diff`. ``save_dir`` keeps both archives.
    """
    ref, cand = (item if isinstance(item, Model) else open(item) for item in (reference, candidate))
    with tfenv.guest():
        return compare_models(
            ref._traced,
            cand._traced,
            ref._feeds(inputs, seed, batch_size),
            None if save_dir is None else Path(save_dir),
            tensors=_patterns(tensors),
            layers=_patterns(layers),
            mapping=mapping,
            atol=atol,
            rtol=rtol,
            budgets=_budgets(max_error),
            seed=seed,
            batch_size=batch_size,
        )


class Model:
    """An opened model: its inputs, layers and tensors, and runs of any selection of them.

    A second :meth:`run` or :meth:`dump` of the same selection reuses the pruned function.
    """

    def __init__(self, traced: TracedModel) -> None:
        self._traced = traced

    def __repr__(self) -> str:
        index = self.index
        return (
            f"<probe.Model {self._traced.loaded.origin} ({index.model_format}): {len(index.inputs)} inputs, "
            f"{len(index.layers)} layers, {len(index.tensors)} tensors>"
        )

    @property
    def index(self) -> ModelIndex:
        """Everything ``probe list`` shows, as typed records."""
        return self._traced.index

    @property
    def format(self) -> str:
        return self._traced.loaded.model_format

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The model's inputs, as ``probe list --json`` prints them."""
        return [spec.record() for spec in self.index.inputs]

    @property
    def layers(self) -> list[dict[str, Any]]:
        return [layer.record() for layer in self.index.layers]

    @property
    def tensors(self) -> list[dict[str, Any]]:
        """Every op tensor under the name probe shows, accepts and stores."""
        return [tensor.record() for tensor in self.index.tensors]

    @_in_python_words
    def select(self, tensors: Sequence[str] = (), layers: Sequence[str] = ()) -> list[TensorInfo]:
        """The tensors the regexes select, as ``dump`` would (none given: every layer and model output)."""
        return select(self.index, _patterns(tensors), _patterns(layers))

    @_in_python_words
    def run(
        self,
        inputs: Inputs = None,
        *,
        tensors: Sequence[str] = (),
        layers: Sequence[str] = (),
        seed: int = DEFAULT_SEED,
        batch_size: int | None = None,
        samples: int | None = None,
    ) -> dict[str, Any]:
        """Values of the selected tensors, by probe name, over all samples of ``inputs``.

        ``inputs``: an array, a list of arrays or a dict by input name; None for seeded
        random inputs. A tensor with a batch axis is concatenated over the batches; a tensor
        inside a loop body or branch gives a list of arrays, one per execution. Arrays are
        read-only views of TensorFlow's results: copy one to change it.
        """
        with tfenv.guest():
            traced = self._traced
            selection = self.select(tensors, layers)
            feeds = self._feeds(inputs, seed, batch_size, samples)
            batch = plan_batches(traced.index.inputs, sample_count(feeds, traced.index.inputs), batch_size)
            parts: dict[str, list[Any]] = {info.name: [] for info in selection}
            rows: list[int] = []
            for _, fed, values in run_batches(traced, feeds, traced.executors(selection), batch):
                rows.append(fed[0].array.shape[0] if fed and fed[0].array.ndim else 1)
                for info in selection:
                    value = values[info.name]
                    if info.per_execution:
                        parts[info.name].extend(execution.value for execution in value)
                    else:
                        parts[info.name].append(value)
            return {info.name: self._joined(info, parts[info.name], rows) for info in selection}

    @_in_python_words
    def dump(
        self,
        path: str | os.PathLike[str],
        inputs: Inputs = None,
        *,
        tensors: Sequence[str] = (),
        layers: Sequence[str] = (),
        force: bool = False,
        seed: int = DEFAULT_SEED,
        batch_size: int | None = None,
        compression: str | None = None,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        check_numerics: bool = False,
        samples: int | None = None,
        stats_only: bool = False,
        hist_range: tuple[float, float] | None = None,
        bins: int = DEFAULT_BINS,
        shard: tuple[int, int] | None = None,
        histogram: bool = False,
        channels: bool = False,
    ) -> DumpResult:
        """Writes the same archive ``probe dump`` writes, and returns what the CLI renders.

        ``samples``: how many seeded random samples to make for inputs not given. ``stats_only``:
        each tensor's distribution instead of its values (``histogram`` and ``channels`` add a histogram
        and per-channel moments, at several times the cost; ``hist_range`` implies ``histogram``).
        ``shard=(k, n)``: only the k-th (from 0) of n contiguous slices of the samples, for ``probe
        merge`` (docs/scale-out.md).
        """
        spec = DumpSpec(
            tensors=_patterns(tensors),
            layers=_patterns(layers),
            force=force,
            command=f"python: probe.open({self._traced.loaded.origin}).dump(...)",
            compression=compression,
            max_bytes=max_bytes,
            check_numerics=check_numerics,
            stats_only=stats_only,
            hist_range=hist_range,
            bins=bins,
            shard=shard,
            histogram=histogram,
            channels=channels,
        )
        with tfenv.guest():
            feeds = self._feeds(inputs, seed, batch_size, samples)
            return dump_model(self._traced, feeds, Path(path), spec, seed=seed, batch_size=batch_size)

    def _feeds(self, inputs: Inputs, seed: int, batch_size: int | None, samples: int | None = None) -> list[Feed]:
        specs = self.index.inputs
        names = [spec.name for spec in specs]
        if inputs is None:
            arrays: dict[str, Any] = {}
        elif isinstance(inputs, Mapping):
            arrays = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                raise FeedError(f"{len(inputs)} input arrays given, but the model has {len(names)} inputs ({names})")
            arrays = dict(zip(names, inputs))
        else:
            if len(names) != 1:
                raise FeedError(
                    f"one array given, but the model has {len(names)} inputs", "pass a list, or a dict by input name"
                )
            arrays = {names[0]: inputs}
        feeds = build_feeds(specs, seed=seed, batch_size=batch_size, in_memory=arrays, samples=samples)
        for line in feed_warnings(feeds):  # the caller's filters decide; level 4: _feeds, run, wrapper, their line
            warnings.warn(line, InputConversionWarning, stacklevel=4)
        return feeds

    def _joined(self, info: TensorInfo, parts: list[Any], rows: list[int]) -> Any:
        """One tensor's values over every batch: along the batch axis where it has one (as ``dump`` stores
        it), else one value per batch, stacked when they have one shape."""
        if info.per_execution or not parts:
            return parts
        if len(parts) == 1:
            return parts[0]
        fixed = fixed_batch(self.index)
        if all(has_batch_axis(info, part, n, fixed) for part, n in zip(parts, rows)):
            return np.concatenate(parts)
        if len({np.shape(part) for part in parts}) == 1:
            return np.stack(parts)
        return parts  # values of other lengths batch by batch (the boxes NMS kept): a list, as dump's per_batch


def _patterns(patterns: Sequence[str] | str) -> tuple[str, ...]:
    """A single regex is as good as a list of one."""
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)
