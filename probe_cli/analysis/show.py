"""``probe show``: an archive's provenance, inputs and per-tensor statistics, in graph order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe_cli.archive.reader import (
    InputRecord,
    as_info,
    as_stored,
    dataset_stats,
    list_distributions,
    list_tensors,
    open_archive,
    read_input_records,
    read_provenance,
    select_tensors,
    stored_range,
)
from probe_cli.core.distribution import Distribution


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
    #: ``dump --stats-only`` archives: the stored distribution the statistics come from
    distribution: Distribution | None = None
    #: a quantized tensor (TFLite int8): the stored integers' range; ``stats`` are of its real values
    stored_range: tuple[int, int] | None = None


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
        distributions = {d.name: d for d in list_distributions(file)}
        stored = list_tensors(file) + [as_stored(d) for d in distributions.values()]
        selected = select_tensors(stored, match, "--match")
        summaries = []
        for tensor in selected:
            info = as_info(tensor)
            if tensor.name in distributions:
                dist = distributions[tensor.name].distribution
                summaries.append(
                    TensorSummary(
                        tensor.name,
                        info.graph_name,
                        info.op_type or None,
                        info.layer,
                        tensor.shape,
                        tensor.dtype,
                        dist.summary(),
                        distribution=dist,
                    )  # fmt: skip
                )
                continue
            summaries.append(
                TensorSummary(
                    name=tensor.name,
                    graph_name=info.graph_name,
                    op_type=info.op_type or None,
                    layer=info.layer,
                    shape=tensor.shape,
                    dtype=info.dtype if tensor.quantized else tensor.dtype,
                    stats=dataset_stats(file[tensor.path]),
                    parts=tensor.parts,
                    stored_range=stored_range(file[tensor.path]),
                )
            )
        return ArchiveSummary(str(path), provenance, extra, read_input_records(file), summaries, len(stored))
