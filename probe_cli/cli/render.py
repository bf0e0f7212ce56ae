"""Stage 7: results as rich tables on a terminal, plain columns when piped, or JSON.

Plain output has no color, no box drawing and no wrapping, so ``grep``/``cut``
work on it and tests can compare it exactly.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import numpy as np

from probe_cli.analysis.diff import ELEMENTWISE, ArchiveDiff, TensorDiff
from probe_cli.analysis.explorer import ExplorerOutput
from probe_cli.analysis.pairing import NO_COUNTERPART
from probe_cli.analysis.plot import PlotResult
from probe_cli.analysis.report import same_file
from probe_cli.analysis.show import ArchiveSummary
from probe_cli.archive.merge import MergeResult
from probe_cli.archive.reader import InputRecord
from probe_cli.core.distribution import Distribution
from probe_cli.core.types import ModelIndex, TensorInfo, format_shape
from probe_cli.core.units import human_bytes
from probe_cli.pipeline import DumpResult, StoredSummary


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@contextmanager
def progress_bar(enabled: bool = True, stream: TextIO | None = None) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar (samples, samples/s, ETA) on a terminal; nothing when piped."""
    stream = stream or sys.stderr
    if not enabled or not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(TextColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} samples/s" if speed else "")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(""), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        task = bar.add_task("loading model", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description="dumping")

        yield update


class Out:
    """Where a command writes: decides between rich and plain once."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty() if color is None else color

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()
    ) -> None:
        cells = [[_fmt(c) for c in row] for row in rows]
        if self.rich:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=title, title_justify="left", show_lines=False)
            for col in columns:
                table.add_column(col, justify="right" if col in right else "left", overflow="fold")
            for row in cells:
                table.add_row(*row)
            Console(file=self.stream).print(table)
            return
        self.line(f"{title}:")
        widths = [max([len(col)] + [len(row[i]) for row in cells]) for i, col in enumerate(columns)]

        def fmt_row(row: Sequence[str]) -> str:
            parts = [cell.rjust(w) if col in right else cell.ljust(w) for cell, w, col in zip(row, widths, columns)]
            return "  ".join(parts).rstrip()

        self.line("  " + fmt_row(list(columns)))
        for row in cells:
            self.line("  " + fmt_row(row))

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def json(self, document: Any) -> None:
        self.stream.write(json.dumps(_json_safe(document), indent=2, default=str, allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    """Non-finite floats as the strings "inf", "-inf" and "nan": JSON has no such numbers, and
    Python's ``Infinity``/``NaN`` tokens break strict parsers."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def index_document(index: ModelIndex, model: str) -> dict[str, Any]:
    """``probe list --json``: stable keys for scripts."""
    return {
        "model": model,
        "format": index.model_format,
        "inputs": [spec.record() for spec in index.inputs],
        "outputs": list(index.outputs),
        "layers": [layer.record() for layer in index.layers],
        "tensors": [tensor.record() for tensor in index.tensors],
        **({"unfetchable": [_unfetchable_record(t, index) for t in index.unfetchable]} if index.unfetchable else {}),
    }


def _unfetchable_record(tensor: TensorInfo, index: ModelIndex) -> dict[str, Any]:
    return {"name": tensor.name, "op_type": tensor.op_type, "context": tensor.context, "reason": index.unfetchable_why}


def render_index(out: Out, index: ModelIndex, model: str, *, layers_only: bool, as_json: bool) -> None:
    if as_json:
        out.json(index_document(index, model))
        return
    out.table("Inputs", ["name", "dtype", "shape"], [(s.name, s.dtype, format_shape(s.shape)) for s in index.inputs])
    if index.layers:  # none when ``list --match`` selected only tensors of a TF graph
        out.line()
        out.table(
            "Layers",
            ["name", "class", "output shape", "params", "outputs"],
            [
                (
                    layer.name,
                    layer.class_name,
                    ", ".join(format_shape(s) for s in layer.output_shapes) or "-",
                    layer.params,
                    ", ".join(layer.outputs) or "-",
                )
                for layer in index.layers
            ],
            right=["params"],
        )
    if layers_only:
        return
    out.line()
    quantized = any(t.quantization for t in index.tensors)  # a TFLite model: its scales and zero points
    laid_out = any(t.layout for t in index.tensors)  # an ONNX model: NCHW after its convolutions
    out.table(
        f"Tensors ({len(index.tensors)})",
        ["name", "op", "dtype", "shape", *(["layout"] if laid_out else []), "layer", "in"]
        + (["quantization"] if quantized else []),
        [
            (t.name, t.op_type, t.dtype, format_shape(t.shape), *([t.layout] if laid_out else []), t.layer, t.context)
            + ((_quantization_text(t.quantization),) if quantized else ())
            for t in index.tensors
        ],
    )
    if index.unfetchable:
        out.line()
        out.table(
            f"Not fetchable ({len(index.unfetchable)}): {index.unfetchable_why}",
            ["name", "op", "in"],
            [(t.name, t.op_type, t.context) for t in index.unfetchable],
        )


def _quantization_text(quantization: dict[str, Any] | None) -> str | None:
    """``scale 0.0235 zero 3``, or ``per-axis 16 scales (axis 3)``."""
    if not quantization:
        return None
    scale = quantization["scale"]
    if isinstance(scale, list):
        return f"per-axis {len(scale)} scales (axis {quantization['quantized_dimension']})"
    return f"scale {scale:.4g} zero {quantization['zero_point']}"


def _feeds_doc(result: DumpResult) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "source": f.source,
            "shape": list(f.array.shape),
            "dtype": str(f.array.dtype),
            **({"converted_from": f.converted_from} if f.converted_from else {}),
        }
        for f in result.feeds
    ]


def parts_shape(shape: Sequence[int], parts: int | None) -> str:
    """A value stored per batch or per iteration shows how many there are: ``3 x (10,)``."""
    if parts is None:
        return _shape_text(shape)
    return f"{parts} x {_shape_text(shape)}" if parts else "never ran"


def _stored_shape(s: StoredSummary, batches: int) -> str:
    return parts_shape(s.shape, batches if s.layout == "per_batch" else s.executions)


def _stored_range(stored: tuple[int, int] | None) -> str:
    return "" if stored is None else f"{stored[0]}..{stored[1]}"


def render_dump(out: Out, result: DumpResult, *, as_json: bool) -> None:
    if result.archive is None:  # --dry-run
        unknown = sum(p.nbytes is None for p in result.planned)
        if as_json:
            out.json(
                {
                    "dry_run": True,
                    "inputs": _feeds_doc(result),
                    "tensors": [
                        {
                            "name": p.info.name,
                            "shape": None if p.shape is None else list(p.shape),
                            "dtype": p.info.dtype,
                            "bytes": p.nbytes,
                        }
                        for p in result.planned
                    ],
                    "total_bytes": result.estimate,
                    "samples": result.samples,
                    "batches": result.batches,
                    "unknown_sizes": unknown,
                }
            )
            return
        out.table(
            f"Would fetch {len(result.planned)} tensor(s)",
            ["name", "shape", "dtype", "bytes"],
            [(p.info.name, format_shape(p.shape), p.info.dtype, human_bytes(p.nbytes)) for p in result.planned],
            right=["bytes"],
        )
        more = f" (+{unknown} of unknown size)" if unknown else ""
        per = f" ({result.samples} samples in {result.batches} batches)" if result.batches > 1 else ""
        out.line(f"Estimated total: {human_bytes(result.estimate)}{more}{per}. Nothing was run.")
        return
    if as_json:
        out.json(
            {
                "archive": str(result.archive),
                "inputs": _feeds_doc(result),
                "tensors": [
                    {
                        "name": s.info.name,
                        "shape": list(s.shape),
                        "dtype": s.dtype,
                        "layout": s.layout,
                        "executions": s.executions,
                        **s.stats,
                        **({"stored_range": list(s.stored_range)} if s.stored_range else {}),
                    }
                    for s in result.stored
                ],
                "samples": result.samples,
                "batches": result.batches,
                "numerics": result.nonfinite.document() if result.nonfinite else None,
            }
        )
        return
    # min/max/mean are over finite values; a column appears to say where NaN/Inf were found.
    nonfinite = any(s.stats["nan"] or s.stats["inf"] for s in result.stored)
    quantized = any(s.stored_range is not None for s in result.stored)
    columns = ["name", "shape", "dtype", "min", "max", "mean"] + (["nan", "inf"] if nonfinite else [])
    out.table(
        f"Stored {len(result.stored)} tensor(s) in {result.archive}",
        columns + (["stored"] if quantized else []),
        [
            (s.info.name, _stored_shape(s, result.batches), s.dtype, s.stats["min"], s.stats["max"], s.stats["mean"])
            + ((s.stats["nan"], s.stats["inf"]) if nonfinite else ())
            + ((_stored_range(s.stored_range),) if quantized else ())
            for s in result.stored
        ],
        right=["min", "max", "mean", "nan", "inf"],
    )
    if quantized:
        out.line("Quantized tensors: min/max/mean of their real values; 'stored' is the range of the integers stored.")
    if result.nonfinite is not None:
        found = result.nonfinite
        out.line(f"NaN/Inf first appears at {found.where()} in batch {found.batch}: {found.nan} NaN, {found.inf} Inf")
        for name, stats in found.inputs:
            out.line(
                f"  input {name}: min {_fmt(stats['min'])} max {_fmt(stats['max'])} mean {_fmt(stats['mean'])} "
                f"nan {stats['nan']} inf {stats['inf']}"
            )
    sources = ", ".join(f"{f.name}={f.source}" for f in result.feeds)
    per = f" ({result.samples} samples in {result.batches} batches)" if result.batches > 1 else ""
    out.line(f"Inputs: {sources}{per}")


# --------------------------------------------------------------------------- show, diff, plot (archives)


def _shape_text(shape: Sequence[int]) -> str:
    return format_shape(tuple(shape))


def show_document(summary: ArchiveSummary) -> dict[str, Any]:
    """``probe show --json``: provenance, inputs and per-tensor statistics."""
    return {
        "archive": summary.path,
        "provenance": summary.provenance,
        "extra_attributes": summary.extra,
        "inputs": [
            {
                "name": i.name,
                "shape": list(i.shape),
                "dtype": i.dtype,
                "source": i.source,
                "seed": i.seed,
                **({"converted_from": i.converted_from} if i.converted_from else {}),
            }
            for i in summary.inputs
        ],
        "total_tensors": summary.total_tensors,
        "tensors": [
            {
                "name": t.name,
                "graph_name": t.graph_name,
                "op_type": t.op_type,
                "layer": t.layer,
                "shape": list(t.shape),
                "parts": t.parts,
                "dtype": t.dtype,
                **t.stats,
                **({"stored_range": list(t.stored_range)} if t.stored_range else {}),
                **({} if t.distribution is None else _distribution_doc(t.distribution)),
            }
            for t in summary.tensors
        ],
    }


def _distribution_doc(dist: Distribution) -> dict[str, Any]:
    """What ``show --json`` adds for a ``--stats-only`` tensor: counts, the histogram and per-channel moments."""
    doc: dict[str, Any] = {
        "count": int(dist.moments.count),
        "size": dist.size,
        "zero_share": dist.zero_share,
    }
    if dist.negative is not None:
        doc.update(negative=dist.negative, positive=dist.positive, neg_inf=dist.neg_inf, pos_inf=dist.pos_inf)
    if dist.hist_range is not None and dist.histogram is not None:
        doc["histogram"] = {"range": list(dist.hist_range), "counts": [int(c) for c in dist.histogram]}
    if dist.channels is not None:
        c = dist.channels
        doc["channels"] = {
            "min": np.asarray(c.low).tolist(),
            "max": np.asarray(c.high).tolist(),
            "mean": np.asarray(c.mean).tolist(),
            "std": np.asarray(c.std).tolist(),
        }
    return doc


def _samples_line(extra: dict[str, Any], batch_size: Any) -> str:
    """``0-127 of 256 (shard 0/2), batch size 32``, or ``256, batch size 32`` for a whole run."""
    start, stop, total = (extra.get(key) for key in ("sample_start", "sample_stop", "samples_total"))
    batch = f", batch size {batch_size}" if batch_size is not None else ""
    if isinstance(start, int) and isinstance(stop, int) and isinstance(total, int) and (start, stop) != (0, total):
        shard = f" (shard {extra['shard']})" if extra.get("shard") else ""
        return f"{start}-{stop - 1} of {total}{shard}{batch}"
    count = total if isinstance(total, int) else extra.get("samples")
    return f"{'?' if count is None else count}{batch}"


def _numerics_line(numerics: Any) -> str:
    """What ``dump --check-numerics`` found, as its own report says it."""
    found = numerics.get("nonfinite", numerics) if isinstance(numerics, dict) else None
    if not isinstance(found, dict) or not found.get("name"):
        return "no NaN or Inf (checked with --check-numerics)"
    return f"NaN/Inf first appears at {found['name']} (op {found.get('op_type')}, layer {found.get('layer')})"


def _input_source(record: InputRecord) -> str:
    if record.source == "random":
        return "random" if record.seed is None else f"random, seed {record.seed}"
    source = _fmt(record.source)
    return f"{source} ({record.converted_from}, converted)" if record.converted_from else source


def render_show(out: Out, summary: ArchiveSummary, *, as_json: bool) -> None:
    if as_json:
        out.json(show_document(summary))
        return
    p, extra = summary.provenance, summary.extra
    versions = ", ".join(
        f"{label} {p[key]}"
        for label, key in (("probe", "probe_version"), ("tensorflow", "tensorflow_version"), ("keras", "keras_version"))
        if p.get(key) is not None
    )
    model = _fmt(p.get("model_path")) + (f" ({p['model_format']})" if p.get("model_format") else "")
    out.line(f"Archive:  {summary.path}")
    out.line(f"Model:    {model}")
    out.line(f"SHA-256:  {_fmt(p.get('model_sha256'))}")
    out.line(f"Samples:  {_samples_line(extra, p.get('batch_size'))}")
    if any(i.source == "random" for i in summary.inputs):  # a seed means nothing for inputs read from files
        out.line(f"Seed:     {_fmt(p.get('seed'))} (of the random inputs)")
    if "numerics" in extra:
        out.line(f"Numerics: {_numerics_line(extra['numerics'])}")
    if extra.get("merged_from"):
        out.line(f"Merged:   from {len(extra['merged_from'])} shard archives")
    out.line(f"Versions: {versions or '-'}")
    out.line(f"Command:  {_fmt(p.get('command'))}")
    out.line(f"Created:  {_fmt(p.get('created'))}")
    out.line()
    out.table(
        f"Inputs ({len(summary.inputs)})",
        ["name", "shape", "dtype", "source"],
        [(i.name, _shape_text(i.shape), i.dtype, _input_source(i)) for i in summary.inputs],
    )
    out.line()
    shown = len(summary.tensors)
    of = f" of {summary.total_tensors}" if shown != summary.total_tensors else ""
    quantized = any(t.stored_range is not None for t in summary.tensors)
    out.table(
        f"Tensors ({shown}{of})",
        ["name", "shape", "dtype", "min", "max", "mean", "std", "nan", "inf"] + (["stored"] if quantized else []),
        [
            (
                t.name,
                parts_shape(t.shape, t.parts) if t.distribution is None else f"{t.distribution.size} values",
                t.dtype,
                t.stats["min"],
                t.stats["max"],
                t.stats["mean"],
                t.stats["std"],
                t.stats["nan"],
                t.stats["inf"],
            )
            + ((_stored_range(t.stored_range),) if quantized else ())
            for t in summary.tensors
        ],
        right=["min", "max", "mean", "std", "nan", "inf"],
    )
    if quantized:
        out.line("Quantized tensors: statistics of their real values; 'stored' is the range of the integers stored.")


def _tensor_diff_doc(t: TensorDiff) -> dict[str, Any]:
    return {
        "reference": t.reference_name,
        "candidate": t.candidate_name,
        "paired_by": t.paired_by,
        "chain": list(t.chain),
        "role": t.role,
        "layers": list(t.layers),
        "name": t.name,
        "op_type": t.op_type,
        "layer": t.layer,
        "status": t.status,
        "within_tolerance": not t.diverges,
        "budget": t.budget,
        "shape_a": list(t.shape_a),
        "shape_b": list(t.shape_b),
        "dtype_a": t.dtype_a,
        "dtype_b": t.dtype_b,
        "size": t.size,
        "max_abs_error": t.max_abs_error,
        "max_rel_error": t.max_rel_error,
        "out_of_tolerance": t.out_of_tolerance,
        "share_out_of_tolerance": t.share_out_of_tolerance,
        "nonfinite_mismatches": t.nonfinite_mismatches,
        "worst_index": None if t.worst_index is None else list(t.worst_index),
        "rel_error": t.rel_error,
        "cosine": t.cosine,
        "snr_db": t.snr_db,
        "name_b": t.reference_name,
        "layout_change": t.layout_change,
        "mean_shift": t.mean_shift,
        "std_shift": t.std_shift,
        "histogram_distance": t.histogram_distance,
        "added_error": t.added_error,
    }


def _model_doc(path: str, prov: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": path,
        "model": prov.get("model_path"),
        "sha256": prov.get("model_sha256"),
        "format": prov.get("model_format"),
    }


def diff_document(result: ArchiveDiff) -> dict[str, Any]:
    """``probe diff/compare --json``: per-tensor errors, the first divergence, unpaired tensors and why, warnings.
    ``a``/``b``/``only_in_*`` are the candidate's and the reference's, as they always were."""
    first = result.first_divergence
    return {
        "reference": _model_doc(result.reference, result.provenance_b),
        "candidate": _model_doc(result.candidate, result.provenance_a),
        "a": result.a,
        "b": result.b,
        "atol": result.atol,
        "rtol": result.rtol,
        "criterion": result.criterion,
        "budgets": {"default": result.budgets.default, "patterns": dict(result.budgets.rules)},
        "same": result.same,
        "paired": len(result.tensors),
        "first_divergence": None if first is None else first.reference_name,
        "layer_coverage": None if result.layer_coverage is None else result.layer_coverage.record(),
        "tensors": [_tensor_diff_doc(t) for t in result.tensors],
        "unpaired": {"reference": result.why_only_in_b, "candidate": result.why_only_in_a},
        "fused_into": {"reference": result.fused_into_b, "candidate": result.fused_into_a},
        "only_in_a": result.only_in_a,
        "only_in_b": result.only_in_b,
        "warnings": result.warnings,
        "models": {
            "a": {"path": result.provenance_a.get("model_path"), "sha256": result.provenance_a.get("model_sha256")},
            "b": {"path": result.provenance_b.get("model_path"), "sha256": result.provenance_b.get("model_sha256")},
        },
    }


def _paired_by(result: ArchiveDiff) -> str:
    """``12 by name, 3 by graph name, 1 fused``."""
    counts = Counter(t.paired_by for t in result.tensors)
    return ", ".join(f"{n} {_HOW.get(how, ('by ' + how,) * 2)[n != 1]}" for how, n in counts.most_common())


#: How a pair reads in a sentence, singular and plural.
_HOW = {
    "copy": ("copy", "copies"),
    "fused": ("fused", "fused"),
    "input": ("input", "inputs"),
    "output": ("output", "outputs"),
    "map": ("by --map", "by --map"),
}


def _share(t: TensorDiff) -> str:
    share = t.share_out_of_tolerance
    if share is None:
        return "-"
    return f"{t.out_of_tolerance} ({100 * share:.3g}%)"


def unpaired_sentence(side: str, why: dict[str, str], total: int) -> str:
    """``30 reference tensors have no counterpart: 22 weights and constants, 8 intermediate ops of fused layers``."""
    counts = Counter(why.get(n, NO_COUNTERPART) for n in why) if why else Counter({NO_COUNTERPART: total})
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return f"{total} {side} tensor{'s' if total != 1 else ''} {'have' if total != 1 else 'has'} no counterpart: {kinds}"


def shown_rows(result: ArchiveDiff, show_all: bool) -> list[TensorDiff]:
    """The short answer: the model's inputs and outputs, layer outputs, and every tensor that differs."""
    if show_all:
        return list(result.tensors)
    return [t for t in result.tensors if t.role is not None or t.status != "ok"]


def render_diff(
    out: Out,
    result: ArchiveDiff,
    *,
    as_json: bool,
    warn: Out | None = None,
    show_all: bool = False,
    verbose: bool = False,
) -> None:
    """Tables on ``out``; warnings as ``Warning: ...`` lines on ``warn`` (stderr), so JSON stays clean."""
    if warn is not None:
        for message in result.warnings:
            warn.line(f"Warning: {message}")
    if as_json:
        out.json(diff_document(result))
        return
    for label, path, prov in (
        ("Reference", result.reference, result.provenance_b),
        ("Candidate", result.candidate, result.provenance_a),
    ):
        sha = prov.get("model_sha256")
        model = prov.get("model_path")
        where = f"model {_fmt(model)}, " if model and not same_file(str(model), path) else ""
        kind = f"{prov['model_format']}, " if prov.get("model_format") else ""
        out.line(f"{label}: {path}  ({where}{kind}sha256 {sha[:12] if sha else '-'})")
    out.line()
    rows = shown_rows(result, show_all)
    title = f"{len(result.tensors)} paired tensor(s) ({_paired_by(result)}). A tensor passes when {result.criterion}"
    if any(t.mean_shift is not None for t in result.tensors):  # --stats-only archives: distributions
        out.table(
            title,
            ["reference", "candidate", "status", "mean shift (std)", "std shift (std)", "histogram distance"],
            [(t.reference_name, _other(t), t.status, t.mean_shift, t.std_shift, t.histogram_distance) for t in rows],
            right=["mean shift (std)", "std shift (std)", "histogram distance"],
        )
    else:
        _value_table(out, title, result, rows)
    hidden = len(result.tensors) - len(rows)
    if hidden:
        out.line(
            f"({hidden} more paired tensor(s) within budget not shown: weights and ops inside layers; --all shows them)"
        )
    _unpaired_and_verdict(out, result, verbose)


def _other(t: TensorDiff) -> str:
    """The candidate's name where it is not the reference's."""
    return "" if t.candidate_name == t.reference_name else t.candidate_name


def _value_table(out: Out, title: str, result: ArchiveDiff, rows: Sequence[TensorDiff]) -> None:
    added = any(t.added_error is not None for t in result.tensors)  # compare: where the error jumps
    budgets = bool(result.budgets.rules) and any(t.budget is not None for t in rows)
    elementwise = result.criterion.startswith(ELEMENTWISE)
    candidate = any(_other(t) for t in rows)
    columns = [
        "reference",
        *(["candidate"] if candidate else []),
        "paired",
        "status",
        "shape",
        "rel err",
        *(["budget"] if budgets else []),
        *(["added"] if added else []),
        "max abs err",
        "SNR dB",
        *(["out of tol"] if elementwise else []),
    ]
    table = []
    for t in rows:
        shape = _shape_text(t.shape_b)
        if t.shape_a != t.shape_b:
            shape += f" vs {_shape_text(t.shape_a)}"
        snr = None if t.snr_db is None else round(t.snr_db, 1)
        table.append(
            (
                t.reference_name,
                *([_other(t)] if candidate else []),
                "" if t.paired_by == "name" else t.paired_by,
                t.status,
                shape,
                t.rel_error,
                *([t.budget] if budgets else []),
                *([t.added_error] if added else []),
                t.max_abs_error,
                snr,
                *([_share(t)] if elementwise else []),
            )
        )
    out.table(title, columns, table, right=columns[columns.index("rel err") :])
    changes: dict[str, list[str]] = {}
    for t in rows:
        if t.layout_change:
            changes.setdefault(t.layout_change, []).append(t.reference_name)
    for change, names in changes.items():  # one line per kind of alignment, not per tensor
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        out.line(f"Compared after the {change}: {shown}")


def _unpaired_and_verdict(out: Out, result: ArchiveDiff, verbose: bool) -> None:
    out.line()
    for side, names, why, into in (
        ("reference", result.only_in_b, result.why_only_in_b, result.fused_into_b),
        ("candidate", result.only_in_a, result.why_only_in_a, result.fused_into_a),
    ):
        if not names:
            continue
        if result.unpaired_differ:  # diff: they are why the archives differ, so they are named
            out.line(f"Only in the {side} ({len(names)}):")
            for name in names:
                out.line(f"  {name}")
            continue
        hint = "" if verbose else " (-v lists them)"
        out.line(unpaired_sentence(side, {n: why.get(n, NO_COUNTERPART) for n in names}, len(names)) + hint)
        if verbose:
            for name in names:
                inside = f", computed away by {into[name]}" if name in into else ""
                out.line(f"  {name}  ({why.get(name, NO_COUNTERPART)}{inside})")
    coverage = result.layer_coverage
    if coverage is not None:
        out.line(coverage.sentence("" if verbose else " (-v lists them)"))
        for layer in coverage.not_compared if verbose else ():
            out.line(f"  {layer}")
    first = result.first_divergence
    if first is not None:
        where = first.place()
        if first.status == "shape mismatch":
            detail = (
                f"shape {_shape_text(first.shape_b)} in the reference, {_shape_text(first.shape_a)} in the candidate"
            )
        elif first.mean_shift is not None:
            detail = (
                f"mean shift {_fmt(first.mean_shift)} std, std shift {_fmt(first.std_shift)} std, "
                f"histogram distance {_fmt(first.histogram_distance)}"
            )
        else:
            at = f" at {list(first.worst_index)}" if first.worst_index is not None else ""
            budget = f" (budget {_fmt(first.budget)})" if first.budget is not None else ""
            detail = f"relative error {_fmt(first.rel_error)}{budget}, max abs error {_fmt(first.max_abs_error)}{at}"
        name = first.reference_name + (f" = {first.candidate_name}" if _other(first) else "")
        out.line(f"First divergence: {name}" + (f" ({where})" if where else "") + f": {detail}")
    differing, common = len(result.differing), len(result.tensors)
    if result.same:
        unpaired = len(result.only_in_a) + len(result.only_in_b)
        rest = f" ({unpaired} unpaired)" if unpaired else ""
        out.line(f"Same: all {common} paired tensor(s) within budget{rest}.")
    else:
        within = f"all {common} paired tensor(s) within budget"
        parts = [f"{differing} of {common} paired tensor(s) differ" if differing else within]
        if result.unpaired_differ and (result.only_in_a or result.only_in_b):
            parts.append(
                f"{len(result.only_in_b)} only in the reference, {len(result.only_in_a)} only in the candidate"
            )
        out.line("Different: " + "; ".join(parts) + ".")


def render_plot(out: Out, result: PlotResult) -> None:
    maps = f", channel maps for {len(result.channel_maps)}" if result.channel_maps else ""
    files = ", ".join(str(f) for f in result.files) if len(result.files) <= 3 else f"{len(result.files)} files"
    out.line(f"Plotted {len(result.tensors)} tensor(s){maps}: {files}")
    if result.bounded_from is not None:
        out.line(
            f"Note: the first {len(result.tensors)} of the {result.bounded_from} stored tensors, in graph order; "
            "choose with -t REGEX"
        )


def render_explorer(out: Out, result: ExplorerOutput) -> None:
    """Where the Model Explorer files went and the command that opens each graph."""
    out.line(f"Model Explorer: node data in {result.directory} (see {result.readme.name} there)")
    for overlay in result.overlays:
        out.line(f"  {overlay.role}: {overlay.command}")


def render_merge(out: Out, result: MergeResult) -> None:
    how = (
        "statistics merged"
        if result.stats_only
        else "virtual datasets over the parts (keep them beside it)"
        if result.virtual
        else "values copied"
    )
    out.line(
        f"Merged {len(result.parts)} parts, {result.samples} samples, {result.tensors} tensors into "
        f"{result.output}: {how}"
    )
