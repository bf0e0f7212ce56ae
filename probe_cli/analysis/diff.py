"""``probe diff``: where two runs diverge, tensor by tensor in graph order.

Pure h5py/NumPy: no TensorFlow, no Click, no printing; the CLI renders the
dataclasses returned here. Values are compared slice by slice (see
:mod:`probe_cli.archive.reader`), so a multi-gigabyte tensor never has to fit in memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.analysis.coverage import LayerCoverage, layer_coverage, pair_layers
from probe_cli.analysis.pairing import BY_COPY, Pairing, as_graph, oriented, pair
from probe_cli.archive.reader import (
    InputRecord,
    StoredTensor,
    as_info,
    dequantized,
    input_datasets,
    list_distributions,
    open_archive,
    parts,
    read_graph,
    read_provenance,
    read_slice,
    row_slices,
    select_tensors,
    stored_tensors,
)
from probe_cli.core import layouts
from probe_cli.core.distribution import Distribution
from probe_cli.core.errors import PatternError, UsageProblem
from probe_cli.core.graph import GraphNode, ModelGraph

#: Element tolerances of ``--atol``/``--rtol``: reported always, the verdict only when given.
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
#: The default verdict: a float tensor differs when ||a - b|| > REL_TOL * ||b|| + ABS_FLOOR * sqrt(n),
#: an error relative to the whole tensor, so it holds at any activation scale: float32 rounding between
#: two kernels is ~1e-6 of it, a 1% change of one layer's weights ~1e-2 downstream of that layer.
#: The floor keeps an all-zero reference (a dead ReLU) from failing on rounding noise.
REL_TOL = 1e-4
ABS_FLOOR = 1e-9
SCALE_AWARE = f"||c - r|| <= {REL_TOL:g} * ||r|| (+ {ABS_FLOOR:g} * sqrt(n))"
#: Two distributions (``--stats-only``) differ when a mean or std moves by more than this share of B's std,
#: overall or in a channel, or when this share of the values changed histogram bin (total variation).
SHIFT_TOL = 1e-3
DISTRIBUTIONS = f"mean and std shifts <= {SHIFT_TOL:g} std of B, histogram distance <= {SHIFT_TOL:g}"
ELEMENTWISE = "|c - r| <= atol + rtol * |r| for every element"


@dataclass(frozen=True)
class Budgets:
    """``--max-error``: the largest whole-tensor relative error ||a - b|| / ||b|| a tensor may have, by
    default and for the tensors a pattern matches (the last pattern matching the reference's or the
    candidate's name wins, so later, narrower patterns override earlier ones)."""

    default: float = REL_TOL
    rules: tuple[tuple[str, float], ...] = ()

    def of(self, *names: str | None) -> float:
        found = self.default
        for pattern, value in self.rules:
            if any(n is not None and re.fullmatch(pattern, n) for n in names):
                found = value
        return found

    def text(self) -> str:
        rules = "".join(f", {pattern}: {value:g}" for pattern, value in self.rules)
        return f"{self.default:g}{rules}"

    @classmethod
    def parse(cls, values: Sequence[str]) -> Budgets:
        """``REL`` sets the default, ``PATTERN=REL`` a budget for the tensors PATTERN matches."""
        default, rules = REL_TOL, []
        for raw in values:
            pattern, sep, number = str(raw).rpartition("=")
            try:
                value = float(number)
            except ValueError:
                raise UsageProblem(
                    f"--max-error {raw!r} is not REL or PATTERN=REL",
                    "e.g. --max-error 0.02 --max-error 'probs/.*=0.05'",
                ) from None
            if not (value >= 0 and math.isfinite(value)):
                raise UsageProblem(f"--max-error {raw!r}: a budget is a finite relative error >= 0")
            if not sep:
                default = value
                continue
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PatternError(f"--max-error pattern {pattern!r} is not a valid regex: {exc}") from None
            rules.append((pattern, value))
        return cls(default, tuple(rules))


NUMERIC_KINDS = "biufc"
#: Compared exactly: integers and booleans (indices, counts, masks).
EXACT_KINDS = "biu"


OK = "ok"
DIFFERS = "differs"
SHAPE_MISMATCH = "shape mismatch"
DTYPE_MISMATCH = "dtype mismatch"


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor present in both archives compares (A is the candidate, B the reference).

    ``out_of_tolerance`` counts elements with ``|a-b| > atol + rtol*|b|``
    (``numpy.isclose``; NaN equals NaN, an Inf equals the same Inf). The
    errors are over elements finite in both; ``max_rel_error`` divides by
    ``|b|`` where ``b`` is non-zero. ``worst_index`` locates ``max_abs_error``.
    """

    name: str
    op_type: str | None
    layer: str | None
    status: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    size: int
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    out_of_tolerance: int | None = None
    nonfinite_mismatches: int = 0
    worst_index: tuple[int, ...] | None = None
    #: B's name for the tensor, and how the two were paired (see :mod:`probe_cli.analysis.pairing`)
    name_b: str | None = None
    paired_by: str = "name"
    #: ||a - b|| / ||b|| over elements finite in both (inf when B is all zeros and A is not)
    rel_error: float | None = None
    cosine: float | None = None
    #: 10 log10(||b||^2 / ||a - b||^2); inf when equal
    snr_db: float | None = None
    #: how the reference's values were brought to the candidate's shape before comparing
    #: (``"reference reshaped (1, 10) -> (10,)"``), if they were
    layout_change: str | None = None
    #: whether the verdict's criterion fails
    failed: bool = False
    #: ``--stats-only`` archives: shifts of the distribution, in units of B's standard deviation (the largest
    #: over the whole tensor and its channels), and the total variation distance of the histograms (0 to 1)
    mean_shift: float | None = None
    std_shift: float | None = None
    histogram_distance: float | None = None
    #: ``compare``: the relative error this tensor adds to the largest of its inputs' (where int8 error jumps)
    added_error: float | None = None
    #: the relative-error budget that judged it (``--max-error``); None for the elementwise or distribution verdicts
    budget: float | None = None
    #: ``fused`` pairs: the op types of the chain the fused op stands for
    chain: tuple[str, ...] = ()
    #: what the tensor is to the reference model: ``input``, ``output``, ``layer`` (a layer's output) or None
    role: str | None = None
    #: the reference layers whose values this pair checks: the tensor's, or those of a fused op's chain
    layers: tuple[str, ...] = ()

    @property
    def reference_name(self) -> str:
        return self.name_b if self.name_b is not None else self.name

    @property
    def candidate_name(self) -> str:
        return self.name

    def place(self) -> str:
        """Where the tensor is, in words: ``op Conv, layer conv1_bn``, or the layers a fused op stands for,
        so a folded Conv is named with its BatchNorm: ``layers conv1_conv + conv1_bn, fused into one Conv``."""
        if self.paired_by == "fused" and len(self.layers) > 1:
            return f"layers {' + '.join(self.layers)}, fused into one {self.op_type or 'op'}"
        words = (f"op {self.op_type}" if self.op_type else "", f"layer {self.layer}" if self.layer else "")
        return ", ".join(x for x in words if x)

    @property
    def share_out_of_tolerance(self) -> float | None:
        if self.out_of_tolerance is None:
            return None
        return self.out_of_tolerance / self.size if self.size else 0.0

    @property
    def diverges(self) -> bool:
        """Values differ beyond tolerance, or cannot be compared at all (shapes differ)."""
        return self.status == SHAPE_MISMATCH or self.failed


@dataclass(frozen=True)
class ArchiveDiff:
    """What ``probe diff`` reports; ``same`` decides the exit code."""

    a: str
    b: str
    atol: float
    rtol: float
    tensors: list[TensorDiff]
    only_in_a: list[str]
    only_in_b: list[str]
    warnings: list[str] = field(default_factory=list)
    provenance_a: dict[str, Any] = field(default_factory=dict)
    provenance_b: dict[str, Any] = field(default_factory=dict)
    #: the verdict's criterion: :data:`SCALE_AWARE` unless --atol/--rtol were given
    criterion: str = SCALE_AWARE
    #: whether a tensor found on one side only makes the archives differ (``diff``); ``compare`` judges
    #: the tensors two forms of a model share, and only lists the others
    unpaired_differ: bool = True
    #: why each unpaired tensor has no partner (see :mod:`probe_cli.analysis.pairing`)
    why_only_in_a: dict[str, str] = field(default_factory=dict)
    why_only_in_b: dict[str, str] = field(default_factory=dict)
    #: an unpaired tensor a fusion swallowed -> the other side's tensor that computes it away
    fused_into_a: dict[str, str] = field(default_factory=dict)
    fused_into_b: dict[str, str] = field(default_factory=dict)
    budgets: Budgets = field(default_factory=Budgets)
    #: how the reference's layers were compared; None when the reference's archive knows no layers
    layer_coverage: LayerCoverage | None = None

    @property
    def reference(self) -> str:
        return self.b

    @property
    def candidate(self) -> str:
        return self.a

    @property
    def first_divergence(self) -> TensorDiff | None:
        """The first tensor, in graph order, whose values exceed tolerance (or whose shape differs)."""
        return next((t for t in self.tensors if t.diverges), None)

    @property
    def differing(self) -> list[TensorDiff]:
        return [t for t in self.tensors if t.status != OK]

    @property
    def same(self) -> bool:
        """Within tolerance everywhere, same dtypes and shapes, and (for ``diff``) the same tensors on both sides."""
        unpaired = bool(self.only_in_a or self.only_in_b) and self.unpaired_differ
        return not self.differing and not unpaired


@dataclass
class _ErrorAccumulator:
    atol: float
    rtol: float
    out: int = 0
    nonfinite: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    worst: tuple[int, ...] | None = None
    #: sums over elements finite in both, for the whole-tensor metrics
    count: int = 0
    sse: float = 0.0
    sum_a2: float = 0.0
    sum_b2: float = 0.0
    sum_ab: float = 0.0

    def metrics(self) -> tuple[float | None, float | None, float | None]:
        """Relative error of the whole tensor, cosine similarity and SNR in dB."""
        if not self.count:
            return None, None, None
        norm_b = math.sqrt(self.sum_b2)
        error = math.sqrt(self.sse)
        rel = error / norm_b if norm_b else (0.0 if error == 0 else math.inf)
        denominator = math.sqrt(self.sum_a2 * self.sum_b2)
        cosine = self.sum_ab / denominator if denominator else (1.0 if self.sum_a2 == self.sum_b2 else 0.0)
        snr = math.inf if error == 0 else (10 * math.log10(self.sum_b2 / self.sse) if self.sum_b2 else -math.inf)
        return rel, max(-1.0, min(1.0, cosine)), snr

    def scale_aware_fails(self, exact: bool, budget: float = REL_TOL) -> bool:
        if self.nonfinite:
            return True
        if exact:
            return self.sse > 0
        return math.sqrt(self.sse) > budget * math.sqrt(self.sum_b2) + ABS_FLOOR * math.sqrt(self.count)

    def add(self, a: np.ndarray, b: np.ndarray, start: int) -> None:
        work = np.complex128 if "c" in (a.dtype.kind, b.dtype.kind) else np.float64
        a, b = a.astype(work, copy=False), b.astype(work, copy=False)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            close = np.isclose(a, b, rtol=self.rtol, atol=self.atol, equal_nan=True)
            self.out += int(close.size - np.count_nonzero(close))
            finite = np.isfinite(a) & np.isfinite(b)
            same_nonfinite = (np.isnan(a) & np.isnan(b)) | (~finite & (a == b))
            self.nonfinite += int(np.count_nonzero(~finite & ~same_nonfinite))
            if not finite.any():
                return
            err = np.where(finite, np.abs(a - b), 0.0)
            real_a, real_b = np.where(finite, a, 0.0), np.where(finite, b, 0.0)
            self.count += int(np.count_nonzero(finite))
            self.sse += float(np.sum(np.abs(err) ** 2))
            self.sum_a2 += float(np.sum(np.abs(real_a) ** 2))
            self.sum_b2 += float(np.sum(np.abs(real_b) ** 2))
            self.sum_ab += float(np.real(np.sum(real_a * np.conj(real_b))))
            flat = int(np.argmax(err))
            worst = float(err.flat[flat])
            if worst > (self.max_abs or 0.0):  # locate the largest error; an all-zero error has no location
                index = np.unravel_index(flat, err.shape) if err.ndim else ()
                self.worst = tuple(int(i) + (start if axis == 0 else 0) for axis, i in enumerate(index))
            self.max_abs = worst if self.max_abs is None else max(self.max_abs, worst)
            magnitude = np.abs(b)
            nonzero = finite & (magnitude > 0)
            rel = float(np.max(np.where(nonzero, err / np.where(nonzero, magnitude, 1.0), 0.0)))
            self.max_rel = rel if self.max_rel is None else max(self.max_rel, rel)


def _paired(na: h5py.Dataset | h5py.Group, nb: h5py.Dataset | h5py.Group) -> list[tuple[h5py.Dataset, h5py.Dataset]]:
    """Matching datasets of two stored values, or [] when their shapes or batch counts differ."""
    pa, pb = parts(na), parts(nb)
    if len(pa) != len(pb) or any(x.shape != y.shape for x, y in zip(pa, pb)):
        return []
    return list(zip(pa, pb))


def _paired_chunks(pairs: Sequence[tuple[h5py.Dataset, h5py.Dataset]]) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    for da, db in pairs:
        for key, start in row_slices(tuple(da.shape)):
            yield read_slice(da, key), read_slice(db, key), start


#: NHWC <-> NCHW, the layouts two forms of one model most often disagree on.
_LAYOUTS = {(0, 3, 1, 2): "NHWC -> NCHW", (0, 2, 3, 1): "NCHW -> NHWC"}


def _tracked_layouts(na: h5py.Dataset | h5py.Group, nb: h5py.Dataset | h5py.Group) -> tuple[str, str] | None:
    """A's and B's layouts when a backend tracked at least one (``layout_axes``) and they differ, else None.
    An untracked side is taken as channels-last only when its model is TensorFlow's (Keras, SavedModel,
    frozen graph, TFLite: channels-last by default); an ONNX tensor whose layout was not tracked is not
    guessed at, and the shapes decide."""
    la, lb = (node.attrs.get("layout_axes") or None for node in (na, nb))
    if la is None and lb is None:
        return None
    return layouts.differing(
        None if la is None else str(la),
        None if lb is None else str(lb),
        _model_format(na),
        _model_format(nb),
    )


def _model_format(node: h5py.Dataset | h5py.Group) -> str:
    value = node.file.attrs.get("model_format", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _aligned(
    na: h5py.Dataset | h5py.Group, nb: h5py.Dataset | h5py.Group, tracked: tuple[str, str] | None = None
) -> tuple[list[tuple[Any, Any]], str | None]:
    """Matching values of two stored tensors whose shapes differ only by a batch or unit axis (the reference reshaped)
    or by layout (the reference transposed), with the change made, said in words; ([], None) otherwise. With tracked
    layouts (``tracked``: A's, B's), B is transposed from its layout to A's whatever the shapes say (H == W == C
    looks alike either way), and a B of another rank (a Keras ``Reshape`` of the NHWC tensor that an ONNX
    ``Conv`` outputs as NCHW) is brought to its layout's shape first, or A's shape after; without,
    NHWC/NCHW is inferred from the shapes."""
    if not (isinstance(na, h5py.Dataset) and isinstance(nb, h5py.Dataset)) or na.size != nb.size:
        return [], None
    shape_a, shape_b = tuple(na.shape), tuple(nb.shape)
    a, b = dequantized(na[()], na.attrs), dequantized(nb[()], nb.attrs)
    axes = None if tracked is None else layouts.axes(tracked[1], tracked[0])
    if tracked is not None and axes is not None:
        la, lb = tracked
        if len(shape_a) == len(shape_b) == len(la) and tuple(shape_b[k] for k in axes) == shape_a:
            return [(a, np.transpose(b, axes))], f"reference transposed {lb} -> {la} (tracked layout)"
    if [d for d in shape_a if d != 1] == [d for d in shape_b if d != 1]:
        return [(a, np.asarray(b).reshape(shape_a))], f"reference reshaped {shape_b} -> {shape_a}"
    if tracked is not None and axes is not None:
        la, lb = tracked
        if len(shape_a) == len(la) and len(shape_b) != len(lb):
            as_b = tuple(shape_a[la.index(letter)] for letter in lb)
            words = f"reference reshaped {shape_b} -> {as_b} and transposed {lb} -> {la} (tracked layout)"
            return [(a, np.transpose(np.reshape(b, as_b), axes))], words
        if len(shape_b) == len(lb) and len(shape_a) != len(la):
            words = f"reference transposed {lb} -> {la} (tracked layout) and reshaped -> {shape_a}"
            return [(a, np.reshape(np.transpose(b, axes), shape_a))], words
    if tracked is None and len(shape_a) == len(shape_b) == 4:
        for guess, words in _LAYOUTS.items():
            if tuple(shape_b[k] for k in guess) == shape_a:
                return [(a, np.transpose(b, guess))], f"reference transposed {words}"
    return [], None


def paired_values(na: h5py.Dataset | h5py.Group, nb: h5py.Dataset | h5py.Group) -> Iterator[tuple[Any, Any]]:
    """The two stored values side by side in bounded slices (real values of quantized ones), B brought to
    A's shape as :func:`compare_tensors` brings it; nothing when they cannot be lined up."""
    tracked = _tracked_layouts(na, nb)
    pairs = [] if tracked else _paired(na, nb)
    if pairs:
        for a, b, _ in _paired_chunks(pairs):
            yield a, b
        return
    yield from _aligned(na, nb, tracked)[0]


def compare_tensors(
    ta: StoredTensor,
    tb: StoredTensor,
    na: h5py.Dataset | h5py.Group,
    nb: h5py.Dataset | h5py.Group,
    atol: float,
    rtol: float,
    *,
    elementwise: bool = False,
    paired_by: str = "name",
    budget: float | None = REL_TOL,
) -> TensorDiff:
    """Compares one tensor's stored values slice by slice; A's attributes name it.

    The verdict is the relative error against ``budget`` (:data:`SCALE_AWARE`) unless ``elementwise``
    (``--atol``/``--rtol`` given), then :data:`ELEMENTWISE`, and the budget too if one is given;
    integers and booleans must be equal either way.
    """
    info = as_info(ta)
    make = partial(
        TensorDiff,
        name=info.name,
        op_type=info.op_type or None,
        layer=info.layer,
        shape_a=ta.shape,
        shape_b=tb.shape,
        dtype_a=ta.dtype,
        dtype_b=tb.dtype,
        size=sum(math.prod(ds.shape) for ds in parts(na)),
        name_b=tb.name if tb.name != ta.name else None,
        paired_by=paired_by,
        budget=budget,
    )
    layout_change = None
    tracked = _tracked_layouts(na, nb)
    pairs: list[tuple[Any, Any]] = [] if tracked else list(_paired(na, nb))
    if pairs:
        chunks: Iterator[tuple[np.ndarray, np.ndarray, int]] = _paired_chunks(pairs)
    else:
        aligned, layout_change = _aligned(na, nb, tracked)
        if not aligned:
            return make(status=SHAPE_MISMATCH, failed=True)
        pairs = aligned
        chunks = iter([(np.asarray(a), np.asarray(b), 0) for a, b in aligned])
    kind_a, kind_b = pairs[0][0].dtype.kind, pairs[0][1].dtype.kind
    status = OK if ta.dtype == tb.dtype else DTYPE_MISMATCH
    if (kind_a in NUMERIC_KINDS) != (kind_b in NUMERIC_KINDS):  # a number against a string: nothing compares
        return make(status=DTYPE_MISMATCH, out_of_tolerance=make.keywords["size"], failed=True)
    if kind_a not in NUMERIC_KINDS:  # strings: equal or not
        unequal = sum(int(np.count_nonzero(a != b)) for a, b, _ in chunks)
        return make(
            status=DIFFERS if unequal and status == OK else status, out_of_tolerance=unequal, failed=bool(unequal)
        )
    acc = _ErrorAccumulator(atol, rtol)
    for a, b, start in chunks:
        acc.add(a, b, start)
    # integers and booleans must be equal, tolerances or not; stored int8 of TFLite are real (float) values
    exact = all(np.dtype(d).kind in EXACT_KINDS for d in (ta.dtype, tb.dtype) if d)
    if exact or not elementwise:
        failed = acc.scale_aware_fails(exact, REL_TOL if budget is None else budget)
    else:
        failed = bool(acc.out or acc.nonfinite) or (budget is not None and acc.scale_aware_fails(False, budget))
    rel_error, cosine, snr_db = acc.metrics()
    widened = exact and "b" not in (kind_a, kind_b)  # ONNX's Shape gives int64 where TensorFlow's gives int32
    if status == DTYPE_MISMATCH and not failed and (widened or paired_by == BY_COPY):
        # the same values in another dtype; a copy pairs through the converter's own Cast (int32 tokens as
        # int64, a bool mask as float), so its dtype is the conversion's, not a change to report
        status = OK
        widths = f"reference cast {tb.dtype} -> {ta.dtype}"
        layout_change = f"{layout_change}; {widths}" if layout_change else widths
    return make(
        status=DIFFERS if failed and status == OK else status,
        max_abs_error=acc.max_abs,
        max_rel_error=acc.max_rel,
        out_of_tolerance=acc.out,
        nonfinite_mismatches=acc.nonfinite,
        worst_index=acc.worst if len(pairs) == 1 else None,  # per-batch values: no single index
        layout_change=layout_change,
        failed=failed,
        rel_error=rel_error,
        cosine=cosine,
        snr_db=snr_db,
    )


def _shift(a: Any, b: Any, scale: Any) -> float:
    """The largest ``|a - b| / scale`` (0 where both are equal, inf where only the scale is 0)."""
    a, b, scale = (np.asarray(x, np.float64) for x in (a, b, scale))
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(a - b)
        shift = np.where(gap == 0, 0.0, gap / np.where(scale > 0, scale, 0.0))
    return float(np.nanmax(shift)) if shift.size else 0.0


def compare_distributions(ta: StoredTensor, tb: StoredTensor, da: Distribution, db: Distribution) -> TensorDiff:
    """How the distribution of one tensor moved (``--stats-only`` archives); A's attributes name it."""
    info = as_info(ta)
    mean_shift = _shift(da.moments.mean, db.moments.mean, db.moments.std)
    std_shift = _shift(da.moments.std, db.moments.std, db.moments.std)
    channels_alike = da.channels is not None and db.channels is not None
    if channels_alike and np.shape(da.channels.count) == np.shape(db.channels.count):  # type: ignore[union-attr]
        ca, cb = da.channels, db.channels
        mean_shift = max(mean_shift, _shift(ca.mean, cb.mean, cb.std))  # type: ignore[union-attr]
        std_shift = max(std_shift, _shift(ca.std, cb.std, cb.std))  # type: ignore[union-attr]
    distance = None
    ha, hb = da.histogram, db.histogram  # None in archives written without --histogram
    if ha is not None and hb is not None and da.hist_range == db.hist_range and ha.shape == hb.shape:
        pa, pb = (h / max(1, h.sum()) for h in (ha, hb))
        distance = float(0.5 * np.abs(pa - pb).sum())
    failed = (
        mean_shift > SHIFT_TOL
        or std_shift > SHIFT_TOL
        or (distance is not None and distance > SHIFT_TOL)
        or (da.nan, da.inf) != (db.nan, db.inf)
    )
    return TensorDiff(
        name=info.name,
        op_type=info.op_type or None,
        layer=info.layer,
        status=DIFFERS if failed else OK,
        shape_a=(),
        shape_b=(),
        dtype_a=ta.dtype,
        dtype_b=tb.dtype,
        size=da.size,
        max_abs_error=abs(float(da.moments.mean) - float(db.moments.mean)),
        name_b=tb.name if tb.name != ta.name else None,
        failed=failed,
        mean_shift=mean_shift,
        std_shift=std_shift,
        histogram_distance=distance,
    )


def _describe_source(record: InputRecord, seed: Any) -> str:
    if record.source == "random":
        use = record.seed if record.seed is not None else seed
        return f"random, seed {use}" if use is not None else "random"
    return record.source or "unknown source"


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    try:
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc"))
    except TypeError:
        return bool(np.array_equal(a, b))


def compare_inputs(fa: h5py.File, fb: h5py.File, seed_a: Any, seed_b: Any) -> list[str]:
    """Warnings when the two runs were not fed the same data, so their tensors are not comparable."""
    warnings: list[str] = []
    inputs_a = {r.name: (r, ds) for r, ds in input_datasets(fa)}
    inputs_b = {r.name: (r, ds) for r, ds in input_datasets(fb)}
    if not inputs_a and not inputs_b:
        if seed_a != seed_b:
            warnings.append(f"the archives record no inputs and were made with different seeds ({seed_a} vs {seed_b})")
        return warnings
    left_a = [name for name in inputs_a if name not in inputs_b]
    left_b = [name for name in inputs_b if name not in inputs_a]
    if left_a and len(left_a) == len(left_b):  # inputs renamed (input_layer, keras_tensor_14): the rest in order
        inputs_b = {
            **{n: v for n, v in inputs_b.items() if n in inputs_a},
            **{a: inputs_b[b] for a, b in zip(left_a, left_b)},
        }
    warnings += [f"input {name!r} was fed only to the candidate" for name in inputs_a if name not in inputs_b]
    warnings += [f"input {name!r} was fed only to the reference" for name in inputs_b if name not in inputs_a]
    for name, (ra, da) in inputs_a.items():
        if name not in inputs_b:
            continue
        rb, db = inputs_b[name]
        sources = f"candidate: {_describe_source(ra, seed_a)}; reference: {_describe_source(rb, seed_b)}"
        tracked = _tracked_layouts(da, db)
        if ra.dtype == rb.dtype and (tracked or ra.shape != rb.shape):  # fed in another layout (NCHW, NHWC)
            aligned, _ = _aligned(da, db, tracked)
            if aligned and all(_arrays_equal(a, b) for a, b in aligned):
                continue
        if ra.shape != rb.shape or ra.dtype != rb.dtype:
            shapes = f"{ra.dtype} {list(ra.shape)} in the candidate, {rb.dtype} {list(rb.shape)} in the reference"
            warnings.append(f"input {name!r} differs: {shapes} ({sources})")
        elif not (pairs := _paired(da, db)) or not all(_arrays_equal(a, b) for a, b, _ in _paired_chunks(pairs)):
            warnings.append(f"input {name!r} has different values in the two runs ({sources})")
    return warnings


def _graph(file: h5py.File, stored: Sequence[StoredTensor]) -> ModelGraph:
    """The archive's stored graph (with any stored tensor it lacks), or, for older archives, its tensors."""
    graph = read_graph(file)
    if graph is None:
        return as_graph([as_info(t) for t in stored])
    missing = [GraphNode(t.name, as_info(t).graph_name) for t in stored if t.name not in graph.by_name]
    return replace(graph, nodes=graph.nodes + tuple(missing)) if missing else graph


def _role(graph: ModelGraph, name: str) -> str | None:
    if name in graph.inputs:
        return "input"
    if name in graph.outputs:
        return "output"
    return "layer" if name in graph.layer_outputs else None


def diff_archives(
    path_a: str | Path,
    path_b: str | Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    match: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    unpaired_differ: bool = True,
    budgets: Budgets | None = None,
    pairing: Pairing | None = None,
) -> ArchiveDiff:
    """Compares the tensors the archives share, in B's graph order; A is the candidate, B the reference.

    Tensors are paired by ``mapping`` (either way round, see :func:`~probe_cli.analysis.pairing.oriented`),
    by name, by graph name, then by their place in the graphs the archives store (see
    :mod:`probe_cli.analysis.pairing`), unless ``pairing`` (reference -> candidate) is given. Each
    tensor's relative error must be within its budget (``budgets``, default :data:`REL_TOL`); with
    ``atol`` or ``rtol`` every element must be within them instead (and the budgets too, if given).
    """
    elementwise = atol is not None or rtol is not None
    atol = DEFAULT_ATOL if atol is None else atol
    rtol = DEFAULT_RTOL if rtol is None else rtol
    judge_budgets = budgets is not None or not elementwise
    budgets = budgets or Budgets()
    with open_archive(path_a) as fa, open_archive(path_b) as fb:
        prov_a, _ = read_provenance(fa)
        prov_b, _ = read_provenance(fb)
        dists_a = {d.name: d.distribution for d in list_distributions(fa)}
        dists_b = {d.name: d.distribution for d in list_distributions(fb)}
        stored_a = stored_tensors(fa)
        stored_b = stored_tensors(fb)
        names_a = {t.name for t in stored_a}
        union = stored_a + [t for t in stored_b if t.name not in names_a]
        wanted = {t.name for t in select_tensors(union, match, "--match")}
        graph_a, graph_b = _graph(fa, stored_a), _graph(fb, stored_b)
        if pairing is None:
            pairing = pair(graph_b, graph_a, oriented(mapping or {}, graph_b.by_name, graph_a.by_name))
        by_name_a = {t.name: t for t in stored_a if t.name in wanted}
        by_name_b = {t.name: t for t in stored_b if t.name in wanted}
        pairing = pairing.restricted(by_name_b, by_name_a)
        compared = []
        for p in pairing.pairs:
            ta, tb = by_name_a[p.candidate], by_name_b[p.reference]
            extra: dict[str, Any] = {
                "paired_by": p.how,
                "chain": p.chain,
                "role": _role(graph_b, p.reference),
                "layers": pair_layers(graph_b, p),
            }
            if p.candidate in dists_a and p.reference in dists_b:
                compared.append(replace(compare_distributions(ta, tb, dists_a[ta.name], dists_b[tb.name]), **extra))
            elif (p.candidate in dists_a) != (p.reference in dists_b):  # statistics against values: nothing compares
                info = as_info(ta)
                compared.append(
                    TensorDiff(
                        info.name,
                        info.op_type or None,
                        info.layer,
                        SHAPE_MISMATCH,
                        ta.shape,
                        tb.shape,
                        ta.dtype,
                        tb.dtype,
                        0,
                        name_b=tb.name if tb.name != ta.name else None,
                        failed=True,
                        **extra,
                    )  # fmt: skip
                )
            else:
                budget = budgets.of(p.reference, p.candidate) if judge_budgets else None
                found = compare_tensors(
                    ta,
                    tb,
                    fa[ta.path],
                    fb[tb.path],
                    atol,
                    rtol,
                    elementwise=elementwise,
                    paired_by=p.how,
                    budget=budget,
                )
                compared.append(replace(found, **extra))
        warnings = compare_inputs(fa, fb, prov_a.get("seed"), prov_b.get("seed"))
        if dists_a and dists_b:
            criterion = DISTRIBUTIONS
        elif elementwise:
            criterion = ELEMENTWISE + (f", and ||c - r|| <= {budgets.text()} * ||r||" if judge_budgets else "")
        else:
            criterion = f"||c - r|| <= {budgets.text()} * ||r|| (+ {ABS_FLOOR:g} * sqrt(n))"
        return ArchiveDiff(
            a=str(path_a),
            b=str(path_b),
            atol=atol,
            rtol=rtol,
            tensors=compared,
            only_in_a=pairing.only_candidate,
            only_in_b=pairing.only_reference,
            warnings=warnings,
            provenance_a=prov_a,
            provenance_b=prov_b,
            criterion=criterion,
            unpaired_differ=unpaired_differ,
            why_only_in_a=pairing.why_candidate,
            why_only_in_b=pairing.why_reference,
            fused_into_a=pairing.fused_into_candidate,
            fused_into_b=pairing.fused_into_reference,
            budgets=budgets,
            layer_coverage=layer_coverage(graph_b, pairing),
        )
