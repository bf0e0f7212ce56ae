"""``probe show``: an archive's provenance, inputs and per-tensor statistics, in graph order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe_cli.archive.reader import (
    InputRecord,
    as_info,
    dataset_stats,
    list_tensors,
    open_archive,
    read_input_records,
    read_provenance,
    select_tensors,
)


@dataclass(frozen=True)
class TensorSummary:
    """One stored tensor with its statistics (over finite values) and NaN/Inf counts."""

    name: str
    graph_name: str
    op_type: str | None
    layer: str | None
    shape: tuple[int, ...]
    dtype: str
    stats: dict[str, Any]
    #: per-batch or per-iteration values: how many are stored (``shape`` is the first one's)
    parts: int | None = None


@dataclass(frozen=True)
class ArchiveSummary:
    """What ``probe show`` reports: provenance, inputs and tensors in graph order."""

    path: str
    provenance: dict[str, Any]
    extra: dict[str, Any]
    inputs: list[InputRecord]
    tensors: list[TensorSummary]
    total_tensors: int


def show_archive(path: str | Path, match: Sequence[str] = ()) -> ArchiveSummary:
    """Provenance, inputs and per-tensor statistics of one archive."""
    with open_archive(path) as file:
        provenance, extra = read_provenance(file)
        stored = list_tensors(file)
        selected = select_tensors(stored, match, "--match")
        summaries = []
        for tensor in selected:
            info = as_info(tensor)
            summaries.append(
                TensorSummary(
                    name=tensor.name,
                    graph_name=info.graph_name,
                    op_type=info.op_type or None,
                    layer=info.layer,
                    shape=tensor.shape,
                    dtype=tensor.dtype,
                    stats=dataset_stats(file[tensor.path]),
                    parts=tensor.parts,
                )
            )
        return ArchiveSummary(str(path), provenance, extra, read_input_records(file), summaries, len(stored))
