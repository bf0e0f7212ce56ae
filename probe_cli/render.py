"""Stage 7: results as rich tables on a terminal, plain columns when piped, or JSON.

Plain output has no color, no box drawing and no wrapping, so ``grep``/``cut``
work on it and tests can compare it exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from probe_cli.index import ModelIndex, format_shape
from probe_cli.pipeline import DumpResult


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


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
        self.stream.write(json.dumps(document, indent=2, default=str) + "\n")


def index_document(index: ModelIndex, model: str) -> dict[str, Any]:
    """``probe list --json``: stable keys for scripts."""
    return {
        "model": model,
        "format": index.model_format,
        "inputs": [
            {"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "graph_name": s.graph_name} for s in index.inputs
        ],
        "outputs": list(index.outputs),
        "layers": [
            {
                "name": layer.name,
                "class_name": layer.class_name,
                "params": layer.params,
                "output_shapes": [None if s is None else list(s) for s in layer.output_shapes],
                "outputs": list(layer.outputs),
            }
            for layer in index.layers
        ],
        "tensors": [
            {
                "name": t.name,
                "graph_name": t.graph_name,
                "op_type": t.op_type,
                "dtype": t.dtype,
                "shape": None if t.shape is None else list(t.shape),
                "layer": t.layer,
            }
            for t in index.tensors
        ],
    }


def render_index(out: Out, index: ModelIndex, model: str, *, layers_only: bool, as_json: bool) -> None:
    if as_json:
        out.json(index_document(index, model))
        return
    out.table("Inputs", ["name", "dtype", "shape"], [(s.name, s.dtype, format_shape(s.shape)) for s in index.inputs])
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
    out.table(
        f"Tensors ({len(index.tensors)})",
        ["name", "op", "dtype", "shape", "layer"],
        [(t.name, t.op_type, t.dtype, format_shape(t.shape), t.layer) for t in index.tensors],
    )


def _feeds_doc(result: DumpResult) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "source": f.source, "shape": list(f.array.shape), "dtype": str(f.array.dtype)}
        for f in result.feeds
    ]


def render_dump(out: Out, result: DumpResult, *, as_json: bool) -> None:
    if result.archive is None:  # --dry-run
        total = sum(p.nbytes or 0 for p in result.planned)
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
                    "total_bytes": total,
                    "unknown_sizes": unknown,
                }
            )
            return
        out.table(
            f"Would fetch {len(result.planned)} tensor(s)",
            ["name", "shape", "dtype", "bytes"],
            [(p.info.name, format_shape(p.shape), p.info.dtype, _human_bytes(p.nbytes)) for p in result.planned],
            right=["bytes"],
        )
        more = f" (+{unknown} of unknown size)" if unknown else ""
        out.line(f"Estimated total: {_human_bytes(total)}{more}. Nothing was run.")
        return
    if as_json:
        out.json(
            {
                "archive": str(result.archive),
                "inputs": _feeds_doc(result),
                "tensors": [
                    {"name": s.info.name, "shape": list(s.shape), "dtype": s.dtype, **s.stats} for s in result.stored
                ],
            }
        )
        return
    out.table(
        f"Stored {len(result.stored)} tensor(s) in {result.archive}",
        ["name", "shape", "dtype", "min", "max", "mean"],
        [
            (s.info.name, format_shape(s.shape), s.dtype, s.stats["min"], s.stats["max"], s.stats["mean"])
            for s in result.stored
        ],
        right=["min", "max", "mean"],
    )
    sources = ", ".join(f"{f.name}={f.source}" for f in result.feeds)
    out.line(f"Inputs: {sources}")
