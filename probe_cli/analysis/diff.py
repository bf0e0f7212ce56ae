"""``probe diff``: where two runs diverge, tensor by tensor in graph order.

Pure h5py/NumPy: no TensorFlow, no Click, no printing; the CLI renders the
dataclasses returned here. Values are compared slice by slice (see
:mod:`probe_cli.archive.reader`), so a multi-gigabyte tensor never has to fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.archive.reader import (
    InputRecord,
    StoredTensor,
    as_info,
    input_datasets,
    list_tensors,
    open_archive,
    parts,
    read_provenance,
    read_slice,
    row_slices,
    select_tensors,
)

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4

NUMERIC_KINDS = "biufc"


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

    @property
    def share_out_of_tolerance(self) -> float | None:
        if self.out_of_tolerance is None:
            return None
        return self.out_of_tolerance / self.size if self.size else 0.0

    @property
    def diverges(self) -> bool:
        """Values differ beyond tolerance, or cannot be compared at all (shapes differ)."""
        return self.status == SHAPE_MISMATCH or bool(self.out_of_tolerance)


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

    @property
    def first_divergence(self) -> TensorDiff | None:
        """The first tensor, in graph order, whose values exceed tolerance (or whose shape differs)."""
        return next((t for t in self.tensors if t.diverges), None)

    @property
    def differing(self) -> list[TensorDiff]:
        return [t for t in self.tensors if t.status != OK]

    @property
    def same(self) -> bool:
        """Within tolerance everywhere, same dtypes and shapes, and the same tensors on both sides."""
        return not self.differing and not self.only_in_a and not self.only_in_b


@dataclass
class _ErrorAccumulator:
    atol: float
    rtol: float
    out: int = 0
    nonfinite: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    worst: tuple[int, ...] | None = None

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


def compare_tensors(
    ta: StoredTensor,
    tb: StoredTensor,
    na: h5py.Dataset | h5py.Group,
    nb: h5py.Dataset | h5py.Group,
    atol: float,
    rtol: float,
) -> TensorDiff:
    """Compares one tensor's stored values slice by slice; A's attributes name it."""
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
    )
    pairs = _paired(na, nb)
    if not pairs:
        return make(status=SHAPE_MISMATCH)
    kind_a, kind_b = pairs[0][0].dtype.kind, pairs[0][1].dtype.kind
    status = OK if ta.dtype == tb.dtype else DTYPE_MISMATCH
    if (kind_a in NUMERIC_KINDS) != (kind_b in NUMERIC_KINDS):  # a number against a string: nothing compares
        return make(status=DTYPE_MISMATCH, out_of_tolerance=make.keywords["size"])
    if kind_a not in NUMERIC_KINDS:  # strings: equal or not
        unequal = sum(int(np.count_nonzero(a != b)) for a, b, _ in _paired_chunks(pairs))
        return make(status=DIFFERS if unequal and status == OK else status, out_of_tolerance=unequal)
    acc = _ErrorAccumulator(atol, rtol)
    for a, b, start in _paired_chunks(pairs):
        acc.add(a, b, start)
    return make(
        status=DIFFERS if acc.out and status == OK else status,
        max_abs_error=acc.max_abs,
        max_rel_error=acc.max_rel,
        out_of_tolerance=acc.out,
        nonfinite_mismatches=acc.nonfinite,
        worst_index=acc.worst if len(pairs) == 1 else None,  # per-batch values: no single index
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
    warnings += [f"input {name!r} was fed only in A" for name in inputs_a if name not in inputs_b]
    warnings += [f"input {name!r} was fed only in B" for name in inputs_b if name not in inputs_a]
    for name, (ra, da) in inputs_a.items():
        if name not in inputs_b:
            continue
        rb, db = inputs_b[name]
        sources = f"A: {_describe_source(ra, seed_a)}; B: {_describe_source(rb, seed_b)}"
        if ra.shape != rb.shape or ra.dtype != rb.dtype:
            shapes = f"{ra.dtype} {list(ra.shape)} in A, {rb.dtype} {list(rb.shape)} in B"
            warnings.append(f"input {name!r} differs: {shapes} ({sources})")
        elif not (pairs := _paired(da, db)) or not all(_arrays_equal(a, b) for a, b, _ in _paired_chunks(pairs)):
            warnings.append(f"input {name!r} has different values in A and B ({sources})")
    return warnings


def diff_archives(
    path_a: str | Path,
    path_b: str | Path,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    match: Sequence[str] = (),
) -> ArchiveDiff:
    """Compares the tensors both archives hold, in A's graph order; B is the reference for ``rtol``."""
    with open_archive(path_a) as fa, open_archive(path_b) as fb:
        prov_a, _ = read_provenance(fa)
        prov_b, _ = read_provenance(fb)
        stored_a, stored_b = list_tensors(fa), list_tensors(fb)
        names_a = {t.name for t in stored_a}
        union = stored_a + [t for t in stored_b if t.name not in names_a]
        wanted = {t.name for t in select_tensors(union, match, "--match")}
        tensors_a = [t for t in stored_a if t.name in wanted]
        by_name_b = {t.name: t for t in stored_b if t.name in wanted}
        compared = []
        for ta in tensors_a:
            tb = by_name_b.get(ta.name)
            if tb is not None:
                compared.append(compare_tensors(ta, tb, fa[ta.path], fb[tb.path], atol, rtol))
        only_a = [t.name for t in tensors_a if t.name not in by_name_b]
        only_b = [name for name in by_name_b if name not in names_a]
        warnings = compare_inputs(fa, fb, prov_a.get("seed"), prov_b.get("seed"))
        return ArchiveDiff(
            a=str(path_a),
            b=str(path_b),
            atol=atol,
            rtol=rtol,
            tensors=compared,
            only_in_a=only_a,
            only_in_b=only_b,
            warnings=warnings,
            provenance_a=prov_a,
            provenance_b=prov_b,
        )
