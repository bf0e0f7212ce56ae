"""``probe plot``: pictures of stored tensors, to see at a glance where values go wrong.

Each selected tensor gets one row: a histogram of its finite values (NaN/Inf
counted in the title) and, for image-like 4-D tensors (N, H, W, C), a grid of
channel maps of one sample. matplotlib is an optional extra
(the ``plot`` extra), imported only here and only when plotting; the Agg
canvas is used directly, so no GUI backend or pyplot global state is touched.
Values are histogrammed slice by slice, so big tensors stay within bounded memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.archive.reader import (
    StoredTensor,
    dataset_stats,
    dequantized,
    is_distribution,
    iter_chunks,
    open_archive,
    parts,
    read_distribution,
    select_tensors,
    stored_tensors,
)
from probe_cli.core.errors import FileProblem, MissingExtra, UsageProblem

#: Figure geometry (inches at :data:`DPI`): one row per tensor, so a PNG is ``ROW_HEIGHT * DPI`` pixels per tensor.
ROW_HEIGHT = 3.0
HIST_WIDTH = 5.0
MAPS_WIDTH = 6.0
DPI = 100
DEFAULT_BINS = 64
DEFAULT_MAX_CHANNELS = 16
#: Tensors drawn when none are chosen: the first ones in graph order (one PNG row of 300 pixels each).
DEFAULT_MAX_TENSORS = 16


@dataclass(frozen=True)
class PlotResult:
    """What was drawn where: the PNG files, the tensors, and which of them got channel maps."""

    files: list[Path]
    tensors: list[str]
    channel_maps: list[str]
    #: with no pattern given and more tensors stored than :data:`DEFAULT_MAX_TENSORS`: how many are stored
    bounded_from: int | None = None


def _matplotlib() -> tuple[Any, Any]:
    """Figure and the Agg canvas, or a one-line hint to install the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra("probe plot needs matplotlib", "pip install matplotlib") from None
    return Figure, FigureCanvasAgg


def is_image_like(shape: tuple[int, ...]) -> bool:
    """(N, H, W, C) with a real spatial extent, as Keras' channels-last convolutions produce."""
    return len(shape) == 4 and shape[0] > 0 and shape[1] > 1 and shape[2] > 1 and shape[3] > 0


def channel_axis(attrs: Any) -> int | None:
    """The channels' axis where a backend tracked the layout (``layout_axes``: 1 for an ONNX NCHW tensor);
    None where they are last, as in Keras' channels-last tensors, or unknown."""
    layout = attrs.get("layout_axes") or ""
    return layout.index("C") if "C" in layout and not layout.endswith("C") else None


def channels_last(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    if axis is None or axis >= len(shape):
        return shape
    return (*shape[:axis], *shape[axis + 1 :], shape[axis])


def histogram(node: h5py.Dataset | h5py.Group, bins: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Counts and bin edges over the finite values, in two bounded passes (range, then counts); for a
    ``--stats-only`` archive, the stored histogram (its values outside the range are in the title)."""
    if is_distribution(node):
        dist = read_distribution(node)
        if dist.histogram is None:  # written without --histogram
            return np.zeros(0), np.zeros(0), dist.summary()
        stats = {**dist.summary(), "below": int(dist.histogram[0]), "above": int(dist.histogram[-1])}
        return dist.histogram[1:-1], dist.bin_edges(), stats
    stats = dataset_stats(node)
    if stats["min"] is None:
        return np.zeros(0), np.zeros(0), stats
    lo, hi = float(stats["min"]), float(stats["max"])
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for chunk in iter_chunks(node):
        values = chunk.astype(np.float64, copy=False).ravel()
        values = values[np.isfinite(values)]
        counts += np.histogram(values, bins=edges)[0]
    return counts, edges, stats


def _title(tensor: StoredTensor, stats: dict[str, Any]) -> str:
    shape = "(" + ", ".join(str(d) for d in tensor.shape) + ")"
    labels = (("nan", "NaN"), ("inf", "Inf"), ("below", "below range"), ("above", "above range"))
    bad = [f"{stats[k]} {label}" for k, label in labels if stats.get(k)]
    return f"{tensor.name}  {shape} {tensor.dtype}" + (f"  [{', '.join(bad)}]" if bad else "")


def _draw_histogram(fig: Any, cell: Any, tensor: StoredTensor, node: h5py.Dataset | h5py.Group, bins: int) -> None:
    ax = fig.add_subplot(cell)
    counts, edges, stats = histogram(node, bins)
    ax.set_title(_title(tensor, stats), fontsize=8, loc="left")
    if counts.size == 0:
        reason = "no finite values" if np.dtype(tensor.dtype).kind in "biuf" else f"not numeric ({tensor.dtype})"
        ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.stairs(counts, edges, fill=True, color="tab:blue")
    ax.set_xlabel("value", fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.tick_params(labelsize=7)


def _draw_channel_maps(fig: Any, cell: Any, node: h5py.Dataset | h5py.Group, sample: int, max_channels: int) -> None:
    """One sample's first ``max_channels`` channels, each on its own color scale."""
    first = parts(node)[0]
    row = slice(sample, sample + 1)
    image = np.asarray(dequantized(first[row], first.attrs or node.attrs, row)[0], dtype=np.float64)  # one sample
    axis = channel_axis(node.attrs)
    if axis is not None and 0 < axis <= image.ndim:
        image = np.moveaxis(image, axis - 1, -1)  # (C, H, W) of an NCHW tensor's sample -> (H, W, C)
    shown = min(image.shape[-1], max_channels)
    cols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    grid = cell.subgridspec(rows + 1, cols, height_ratios=[0.15] + [1] * rows, hspace=0.3, wspace=0.1)
    channels = "channel 0" if shown == 1 else f"channels 0-{shown - 1}"
    header = fig.add_subplot(grid[0, :])
    header.set_axis_off()
    header.set_title(f"sample {sample}, {channels} of {image.shape[-1]}", fontsize=8, loc="left", y=0.0)
    for c in range(shown):
        ax = fig.add_subplot(grid[1 + c // cols, c % cols])
        ax.imshow(np.ma.masked_invalid(image[:, :, c]), cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"c{c}", fontsize=6, labelpad=1)


def _render(
    tensors: Sequence[StoredTensor], file: h5py.File, out: Path, *, bins: int, sample: int, max_channels: int
) -> list[str]:
    """One PNG, one row per tensor; returns the names that got channel maps."""
    figure_cls, canvas_cls = _matplotlib()
    with_maps = [t.name for t in tensors if is_image_like(channels_last(t.shape, channel_axis(t.attrs)))]
    width = HIST_WIDTH + (MAPS_WIDTH if with_maps else 0.0)
    fig = figure_cls(figsize=(width, ROW_HEIGHT * len(tensors)), dpi=DPI)
    canvas_cls(fig)
    columns = 2 if with_maps else 1
    ratios = [HIST_WIDTH, MAPS_WIDTH] if with_maps else [1.0]
    grid = fig.add_gridspec(len(tensors), columns, width_ratios=ratios, hspace=0.6, wspace=0.15)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.35 / len(tensors), bottom=0.5 / ROW_HEIGHT / len(tensors))
    for row, tensor in enumerate(tensors):
        node = file[tensor.path]
        _draw_histogram(fig, grid[row, 0], tensor, node, bins)
        if tensor.name in with_maps:
            _draw_channel_maps(fig, grid[row, 1], node, sample, max_channels)
    try:
        fig.savefig(out, format="png", dpi=DPI)
    except OSError as exc:
        raise FileProblem(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    return with_maps


def file_name(tensor_name: str) -> str:
    """A tensor's PNG name in a directory: ``conv1/Relu:0`` -> ``conv1__Relu_0.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tensor_name.replace("/", "__")) + ".png"


def default_output(archive: str | Path) -> Path:
    """``run.h5`` -> ``run.png`` in the current directory."""
    return Path(Path(archive).with_suffix(".png").name)


def plot_archive(
    archive: str | Path,
    patterns: Sequence[str],
    output: Path | None = None,
    *,
    sample: int = 0,
    bins: int = DEFAULT_BINS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> PlotResult:
    """Draws the tensors the patterns select: one PNG, or one per tensor when ``output`` is a directory.

    No pattern draws what the archive stores (for ``dump`` without a selection: the layer outputs), the
    first :data:`DEFAULT_MAX_TENSORS` in graph order when there are more (``bounded_from`` says so).
    """
    if bins < 1 or max_channels < 1:
        raise UsageProblem("--bins and --max-channels must be at least 1")
    out = default_output(archive) if output is None else Path(output)
    with open_archive(archive) as file:
        stored = stored_tensors(file)
        tensors = select_tensors(stored, patterns, "--tensor") if patterns else stored[:DEFAULT_MAX_TENSORS]
        if not tensors:
            raise UsageProblem(f"archive {str(archive)!r} stores no tensors to plot")
        bounded_from = len(stored) if not patterns and len(stored) > len(tensors) else None
        for tensor in tensors:
            if is_image_like(tensor.shape) and not 0 <= sample < tensor.shape[0]:
                raise UsageProblem(
                    f"--sample {sample} is out of range for {tensor.name!r}, which holds {tensor.shape[0]} sample(s)"
                )
        _matplotlib()  # fail before any work when the extra is missing
        if out.is_dir():
            files, maps = [], []
            for tensor in tensors:
                path = out / file_name(tensor.name)
                maps += _render([tensor], file, path, bins=bins, sample=sample, max_channels=max_channels)
                files.append(path)
            return PlotResult(files, [t.name for t in tensors], maps, bounded_from)
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise FileProblem(f"output directory {str(parent)!r} does not exist")
        maps = _render(tensors, file, out, bins=bins, sample=sample, max_channels=max_channels)
        return PlotResult([out], [t.name for t in tensors], maps, bounded_from)
