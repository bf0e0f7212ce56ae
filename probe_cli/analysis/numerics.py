"""``dump --check-numerics``: the first op, in graph and iteration order, whose output holds NaN or Inf."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe_cli.backends.base import TracedModel
from probe_cli.core.stats import summarize
from probe_cli.core.types import Feed, Region, TensorInfo


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


def region_starts(tensors: Sequence[TensorInfo]) -> dict[str, int]:
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
        if t.region is not Region.BODY:
            start = None
            continue
        if start is None:
            start = t.order
        starts[t.name] = start
    return starts


def first_nonfinite(
    traced: TracedModel, selection: Sequence[TensorInfo], values: dict[str, Any], fed: list[Feed], batch: int
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
                starts = starts if starts is not None else region_starts(traced.index.tensors)
                key = (starts.get(info.name, info.order), execution.path, info.order)
            candidates.append((key, info, array, execution))
            break  # executions come sorted by iteration: the first bad one is this tensor's earliest
    if not candidates:
        return None
    _, info, value, execution = min(candidates, key=lambda c: c[0])
    inputs = [t for t in traced.op_inputs(info) if t.region is Region.TOP]
    missing = [t for t in inputs if t.name not in values]
    if missing:
        values = dict(values)
        for execute in traced.executors(missing):
            values.update(execute(fed))
    stats = tuple((t.name, summarize(values[t.name])) for t in inputs if not isinstance(values[t.name], list))
    path = execution.path if execution is not None else None
    return NonFinite(info, batch, int(np.isnan(value).sum()), int(np.isinf(value).sum()), stats, path)
