"""``compare --html`` / ``diff --html``: one self-contained page showing where two forms of a model diverge.

The page is plain HTML with inline SVG charts and a few lines of JavaScript (table sorting): it
makes no network request and needs nothing installed to view. Built from an :class:`ArchiveDiff`
and, for the histograms, the two archives while they exist. Pure h5py/NumPy: no TensorFlow, no Click.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe_cli.analysis.diff import REL_TOL, ArchiveDiff, TensorDiff, paired_values
from probe_cli.archive.reader import (
    InputRecord,
    dataset_stats,
    is_distribution,
    iter_chunks,
    open_archive,
    read_distribution,
    read_input_records,
    stored_tensors,
)
from probe_cli.core.errors import FileProblem
from probe_cli.core.types import format_shape

#: Histograms drawn: the first divergence and this many of the worst tensors besides.
WORST = 5
BINS = 60
#: Colours by relative error over the budget (upper bound of the ratio, colour); over the last: :data:`DARKEST`.
STEPS = (
    (0.01, "#e8f5e9"),
    (0.1, "#c8e6c9"),
    (1.0, "#fff59d"),
    (10.0, "#ffb74d"),
    (100.0, "#ff7043"),
    (1000.0, "#e53935"),
)
DARKEST = "#b71c1c"
UNCOMPARED = "#eeeeee"


def budget_of(result: ArchiveDiff, t: TensorDiff) -> float:
    """The relative-error budget colours are measured against: the tensor's own, else the default."""
    return t.budget if t.budget is not None else result.budgets.default


def named(t: TensorDiff) -> str:
    """A pair as compare names it: the reference's name, ``= the candidate's`` when that differs."""
    return t.reference_name if t.candidate_name == t.reference_name else f"{t.reference_name} = {t.candidate_name}"


def along(result: ArchiveDiff) -> list[TensorDiff]:
    """The tensors the curve and the chain show, in graph order: the model's inputs, layer outputs and
    outputs, and every tensor that differs (as ``compare`` lists them without ``--all``); all of them
    when the archives say nothing of roles."""
    shown = [t for t in result.tensors if t.role is not None or t.status != "ok"]
    return shown if any(t.role is not None for t in result.tensors) else list(result.tensors)


def colour(rel: float | None, budget: float | None, failed: bool = False) -> str:
    """A cell's colour: greens within budget, yellow close to it, orange to dark red over it (``failed``
    at least orange, whatever the value: an elementwise verdict can fail a small relative error)."""
    if rel is None or math.isnan(rel):
        return UNCOMPARED
    ratio = rel / (budget or REL_TOL)
    if failed:
        ratio = max(ratio, 1.0 + 1e-9)
    return next((c for bound, c in STEPS if ratio <= bound), DARKEST)


@dataclass(frozen=True)
class Histograms:
    """One tensor's values in both runs on shared bins, and the distribution of their difference."""

    name: str
    edges: np.ndarray
    reference: np.ndarray
    candidate: np.ndarray
    #: of candidate - reference, element by element; None when the values do not line up (distributions)
    error_edges: np.ndarray | None = None
    error: np.ndarray | None = None


def _range(*nodes: h5py.Dataset | h5py.Group) -> tuple[float, float] | None:
    lows, highs = [], []
    for node in nodes:
        stats = dataset_stats(node)
        if stats["min"] is not None:
            lows.append(float(stats["min"]))
            highs.append(float(stats["max"]))
    if not lows:
        return None
    return min(lows), max(highs)


def _edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """``bins`` equal bins over [lo, hi], widened by 0.5 each way when every value is one number."""
    return np.linspace(lo - 0.5, hi + 0.5, bins + 1) if lo == hi else np.linspace(lo, hi, bins + 1)


def _counts(chunks: Iterator[np.ndarray], edges: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for chunk in chunks:
        values = np.real(chunk).astype(np.float64, copy=False).ravel()
        counts += np.histogram(values[np.isfinite(values)], bins=edges)[0]
    return counts


def histograms(
    cand: h5py.Dataset | h5py.Group, ref: h5py.Dataset | h5py.Group, name: str, bins: int = BINS
) -> Histograms | None:
    """Both runs' values of one tensor counted on shared bins, read slice by slice (two passes each);
    ``--stats-only`` archives give their stored histograms when their ranges agree. None when nothing counts."""
    if is_distribution(cand) or is_distribution(ref):
        if not (is_distribution(cand) and is_distribution(ref)):
            return None
        dc, dr = read_distribution(cand), read_distribution(ref)
        hc, hr = dc.histogram, dr.histogram  # None in archives written without --histogram
        if hc is None or hr is None or dc.hist_range != dr.hist_range or hc.shape != hr.shape:
            return None
        return Histograms(name, dr.bin_edges(), hr[1:-1], hc[1:-1])
    span = _range(cand, ref)
    if span is None:
        return None
    edges = _edges(*span, bins)
    found = Histograms(name, edges, _counts(iter_chunks(ref), edges), _counts(iter_chunks(cand), edges))

    def differences() -> Iterator[np.ndarray]:
        for a, b in paired_values(cand, ref):
            with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf: dropped as not finite
                e = (np.real(a).astype(np.float64) - np.real(b).astype(np.float64)).ravel()
            yield e[np.isfinite(e)]

    spans = [(float(e.min()), float(e.max())) for e in differences() if e.size]  # a first pass for the range
    if not spans:
        return found
    lo, hi = min(low for low, _ in spans), max(high for _, high in spans)
    error_edges = _edges(lo, hi, bins)
    return replace(found, error_edges=error_edges, error=_counts(differences(), error_edges))


def chosen(result: ArchiveDiff, worst: int = WORST) -> list[TensorDiff]:
    """The tensors whose histograms the page shows: the first divergence, then the largest relative errors."""
    first = result.first_divergence
    ranked = sorted(
        (t for t in result.tensors if t.rel_error is not None and t.rel_error > 0),
        key=lambda t: -(t.rel_error or 0.0),
    )
    picked = [first] if first is not None else []
    seen = {t.reference_name for t in picked}  # an output and its copy are one set of values
    for t in ranked:
        if len(picked) > worst:
            break
        if t.reference_name not in seen:
            picked.append(t)
            seen.add(t.reference_name)
    return picked


def collect_histograms(
    result: ArchiveDiff, candidate: str | Path, reference: str | Path, worst: int = WORST
) -> dict[str, Histograms]:
    """:func:`histograms` of the :func:`chosen` tensors, by candidate name, from the two archives."""
    with open_archive(candidate) as fc, open_archive(reference) as fr:
        return _histograms_of(result, fc, fr, worst)


def _histograms_of(result: ArchiveDiff, fc: h5py.File, fr: h5py.File, worst: int) -> dict[str, Histograms]:
    found: dict[str, Histograms] = {}
    paths_c = {t.name: t.path for t in stored_tensors(fc)}
    paths_r = {t.name: t.path for t in stored_tensors(fr)}
    for t in chosen(result, worst):
        pc, pr = paths_c.get(t.name), paths_r.get(t.reference_name)
        if pc is None or pr is None or pc not in fc or pr not in fr:
            continue
        made = histograms(fc[pc], fr[pr], t.name)
        if made is not None:
            found[t.name] = made
    return found


# ---------------------------------------------------------------------------------------------- rendering


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def _sort_key(value: float | None) -> str:
    """A number JavaScript's parseFloat reads; "" for none (sorted first)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (a model given as a relative path, stored as an absolute one)."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def _provenance(result: ArchiveDiff, inputs: Mapping[str, list[InputRecord]]) -> str:
    reference, candidate = result.reference, result.candidate
    rows = []
    for role, where, prov in (
        ("reference", reference, result.provenance_b),
        ("candidate", candidate, result.provenance_a),
    ):
        sha = prov.get("model_sha256")
        fed = "; ".join(
            f"{r.name} {r.dtype}{list(r.shape)} from {r.source or 'unknown source'}"
            + (f" (seed {r.seed})" if r.seed is not None else "")
            for r in inputs.get(role, [])
        )
        versions = ", ".join(
            f"{label} {prov[key]}"
            for key, label in (("probe_version", "probe"), ("tensorflow_version", "TF"), ("keras_version", "Keras"))
            if prov.get(key)
        )
        model = str(prov.get("model_path") or where)
        shown = where if same_file(model, where) else model  # compare: the path as the user gave it
        rows.append(
            f"<tr><th>{role}</th><td><code title='{_e(model)}'>{_e(shown)}</code></td>"
            f"<td>{_e(prov.get('model_format') or '-')}</td>"
            f"<td><code title='{_e(sha or '')}'>{_e(sha[:16] if sha else '-')}</code></td>"
            f"<td>{_e(fed or '-')}</td><td>{_e(versions or '-')}</td></tr>"
        )
    return (
        "<table class='prov'><thead><tr><th></th><th>model</th><th>format</th><th>sha256</th><th>inputs</th>"
        "<th>versions</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _verdict(result: ArchiveDiff) -> str:
    compared = len(result.tensors)
    over = [t for t in result.tensors if t.diverges]
    first = result.first_divergence
    lines = [
        f"<p class='verdict {'bad' if over else 'good'}'>"
        + (
            f"{len(over)} of {compared} compared tensors over budget"
            if over
            else f"All {compared} compared tensors within budget"
        )
        + "</p>",
        f"<p>A tensor passes when <code>{_e(result.criterion)}</code>.",
    ]
    if result.layer_coverage is not None:
        lines.append(f" {_e(result.layer_coverage.sentence())}")
    if first is not None:
        where = first.place()
        lines.append(
            f" <b>First divergence</b>: <a href='#t-{_e(first.name)}'><code>{_e(named(first))}</code></a>"
            + (f" ({_e(where)})" if where else "")
            + f", relative error {_num(first.rel_error)}."
        )
    unpaired = [
        f"{len(names)} only in the {role}"
        for role, names in (("candidate", result.only_in_a), ("reference", result.only_in_b))
        if names
    ]
    if unpaired:
        lines.append(f" Unpaired, not judged: {', '.join(unpaired)}.")
    lines.append("</p>")
    lines += [f"<p class='warn'>Warning: {_e(w)}</p>" for w in result.warnings]
    return "".join(lines)


def _log_axis(values: Sequence[float]) -> tuple[float, float]:
    """Decades spanning the positive values (at most 12 below the largest)."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return -6.0, 0.0
    low = math.floor(math.log10(min(positive)))
    high = math.ceil(math.log10(max(positive)))
    low = max(low, high - 12)
    return float(low), float(max(high, low + 1))


def _svg(width: float, height: float, body: Sequence[str], cls: str, label: str, origin: str = "0 0") -> str:
    return (
        f"<svg class='{cls}' width='{width:.0f}' height='{height:.0f}' viewBox='{origin} {width:.0f} {height:.0f}'"
        f" role='img' aria-label='{_e(label)}'>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, cls: str = "tick", anchor: str = "start", extra: str = "") -> str:
    return f"<text class='{cls}' x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'{extra}>{_e(text)}</text>"


def _line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f"<line class='{cls}' x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}'/>"


def _rect(x: float, y: float, width: float, height: float, cls: str, tip: str) -> str:
    return (
        f"<rect class='{cls}' x='{x:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height:.1f}'>"
        f"<title>{_e(tip)}</title></rect>"
    )


#: Error chart geometry: plot area left margin, top margin and height (pixels); at most this many pixels
#: per tensor, at least this many (a model of 500 layers scrolls sideways).
CHART = {"left": 64.0, "top": 18.0, "height": 260.0, "width": 1080.0, "max_step": 100.0, "min_step": 3.0}


def error_chart(result: ArchiveDiff) -> str:
    """Relative error of each compared tensor along graph order (log scale) with the error each adds,
    the budget line, points over budget in red and the first divergence marked."""
    tensors = along(result)
    if not tensors:
        return "<p>No tensor was compared.</p>"
    budgets = [t.budget for t in tensors]
    judged = [b for b in budgets if b is not None]
    low, high = _log_axis([t.rel_error for t in tensors if t.rel_error is not None] + judged)
    step = max(CHART["min_step"], min(CHART["max_step"], CHART["width"] / len(tensors)))
    left, top, height = CHART["left"], CHART["top"], CHART["height"]
    right = left + step * len(tensors)
    bottom = top + height

    zero_gap = 16.0  # zero sits below the lowest decade, a log scale having no place for it

    def y(value: float | None) -> float:
        if value is None or value <= 0:
            return bottom
        if math.isinf(value):
            return top
        return bottom - zero_gap - (min(max(math.log10(value), low), high) - low) / (high - low) * (height - zero_gap)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    body = []
    for decade in range(int(low), int(high) + 1):
        body += [_line(left, y(10.0**decade), right, y(10.0**decade), "grid")]
        body += [_text(left - 6, y(10.0**decade) + 4, f"1e{decade}", anchor="end")]
    body += [_line(left, bottom, right, bottom, "axis"), _text(left - 6, bottom + 4, "0", anchor="end")]
    if judged:  # each tensor's budget, a step line (--max-error PATTERN=REL can vary it)
        steps = " ".join(
            f"{left + step * i:.1f},{y(b):.1f} {left + step * (i + 1):.1f},{y(b):.1f}"
            for i, b in enumerate(budgets)
            if b is not None
        )
        body.append(f"<polyline class='budget' points='{steps}'/>")
        body.append(_text(right, y(budgets[-1] or judged[-1]) - 4, f"budget {_num(judged[-1])}", "budget-label", "end"))
    bar = min(step * 0.7, 16.0)
    for i, t in enumerate(tensors):  # the error each tensor adds: where it grows
        if t.added_error is not None and t.added_error > 0:
            tip = f"{named(t)}: adds {_num(t.added_error)}"
            body.append(_rect(x(i) - bar / 2, y(t.added_error), bar, bottom - y(t.added_error), "added", tip))
    first = result.first_divergence
    if first is not None and first in tensors:
        i = tensors.index(first)
        anchor, shift = ("start", 5) if i < len(tensors) / 2 else ("end", -5)
        body.append(_line(x(i), top, x(i), bottom, "divergence"))
        body.append(_text(x(i) + shift, top - 4, f"first divergence: {named(first)}", "first-label", anchor))
    points = " ".join(f"{x(i):.1f},{y(t.rel_error):.1f}" for i, t in enumerate(tensors) if t.rel_error is not None)
    body.append(f"<polyline class='curve' points='{points}'/>")
    radius = max(1.5, min(4.0, step / 3))
    for i, t in enumerate(tensors):
        if t.rel_error is None and not t.diverges:
            continue
        cls = "pt over" if t.diverges else ("pt zero" if not t.rel_error else "pt")
        tip = f"{named(t)}: relative error {_num(t.rel_error)}, added {_num(t.added_error)}, {t.status}"
        body.append(
            f"<a href='#t-{_e(t.name)}'><circle class='{cls}' cx='{x(i):.1f}' cy='{y(t.rel_error):.1f}'"
            f" r='{radius:.1f}'><title>{_e(tip)}</title></circle></a>"
        )
    labelled = len(tensors) * 14 <= right - left  # names fit when each gets 14 pixels or more
    every = 1 if labelled else max(1, round(len(tensors) / 20))
    for i in range(0, len(tensors), every):
        if labelled:
            rotate = f" transform='rotate(35 {x(i):.1f} {bottom + 14:.1f})'"
            body.append(_text(x(i), bottom + 14, _short(tensors[i].reference_name), "xlabel", "start", rotate))
        else:
            body.append(_text(x(i), bottom + 14, str(i), "xlabel", "middle"))
    depth = 110.0 if labelled else 30.0
    chart = _svg(right + (140 if labelled else 20), bottom + depth, body, "chart", "relative error along graph order")
    legend = (
        "<p class='legend'><span class='key curve-key'></span> relative error ||c − r|| / ||r|| (log scale;"
        " hollow: 0) <span class='key added-key'></span> error the tensor adds (its own less its inputs')"
        " <span class='key over-key'></span> over budget"
        + ("" if labelled else "; x: position in graph order, hover a point for its name")
        + "</p>"
    )
    return "<div class='scroll'>" + chart + "</div>" + legend


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def chain(result: ArchiveDiff) -> str:
    """The compared tensors in graph order as boxes coloured by relative error."""
    boxes = []
    for t in along(result):
        fill = colour(t.rel_error, budget_of(result, t), t.diverges)
        label = t.layer or t.reference_name.rpartition(":")[0]
        tip = f"{named(t)} ({t.op_type or 'op'}): relative error {_num(t.rel_error)}, added {_num(t.added_error)}"
        first = " first" if t is result.first_divergence else ""
        boxes.append(
            f"<a class='node{first}' href='#t-{_e(t.name)}' style='background:{fill}' title='{_e(tip)}'>"
            f"<span class='n'>{_e(_short(label, 22))}</span><span class='v'>{_num(t.rel_error, 2)}</span></a>"
        )
    keys = "".join(f"<span class='swatch' style='background:{c}'></span>≤ {_num(bound)}× " for bound, c in STEPS)
    legend = (
        f"<p class='legend'>Relative error over the budget: {keys}"
        f"<span class='swatch' style='background:{DARKEST}'></span>more</p>"
    )
    compact = " compact" if len(boxes) > 100 else ""  # a large model: smaller boxes, more to a row
    return f"<div class='chain{compact}'>" + "".join(boxes) + "</div>" + legend


def _steps(edges: np.ndarray, heights: np.ndarray, width: float, base: float, cls: str) -> str:
    """A histogram as one filled step outline (``heights`` in pixels above ``base``)."""
    lo, span = float(edges[0]), float(edges[-1] - edges[0]) or 1.0
    px = [(float(e) - lo) / span * width for e in edges]
    path = [f"M{px[0]:.1f},{base:.1f}"]
    for k, height in enumerate(heights):
        path.append(f"L{px[k]:.1f},{base - height:.1f}L{px[k + 1]:.1f},{base - height:.1f}")
    path.append(f"L{px[-1]:.1f},{base:.1f}Z")
    return f"<path class='{cls}' d='{''.join(path)}'/>"


#: Histogram geometry (pixels): overlay width and height, difference strip height, error histogram width.
HIST = {"width": 300.0, "height": 120.0, "strip": 44.0, "error_width": 190.0}


def _overlay(h: Histograms) -> str:
    """Reference and candidate counts on a square-root scale (a spike of zeros after a ReLU does not flatten
    the rest), and below them the candidate's count less the reference's, bin by bin."""
    w, hh, dh = HIST["width"], HIST["height"], HIST["strip"]
    peak = max(1, int(max(h.reference.max(initial=0), h.candidate.max(initial=0))))

    def scaled(counts: np.ndarray) -> np.ndarray:
        return np.sqrt(counts.astype(np.float64) / peak) * hh

    body = [
        _steps(h.edges, scaled(h.reference), w, hh, "ref"),
        _steps(h.edges, scaled(h.candidate), w, hh, "cand"),
        _line(0, hh, w, hh, "axis"),
        _text(-4, 8, str(peak), anchor="end"),
        _text(-4, hh, "0", anchor="end"),
    ]
    diff = h.candidate.astype(np.int64) - h.reference.astype(np.int64)
    swing = max(1, int(np.abs(diff).max(initial=0)))
    mid, bar_w = hh + 8 + dh / 2, w / max(1, len(diff))
    body += [_line(0, mid, w, mid, "axis"), _text(-4, mid + 4, "c − r", anchor="end")]
    for k, d in enumerate(diff):
        if d:
            size = abs(float(d)) / swing * (dh / 2 - 2)
            tip = (
                f"[{_num(float(h.edges[k]))}, {_num(float(h.edges[k + 1]))}): candidate {int(h.candidate[k])},"
                f" reference {int(h.reference[k])}"
            )
            cls = "more" if d > 0 else "less"
            body.append(_rect(k * bar_w, mid - size if d > 0 else mid, max(bar_w - 0.5, 0.5), size, cls, tip))
    body += [
        _text(0, hh + dh + 24, _num(float(h.edges[0]))),
        _text(w, hh + dh + 24, _num(float(h.edges[-1])), anchor="end"),
    ]
    return _svg(w + 50, hh + dh + 36, body, "hist", f"histograms of {h.name}", origin="-44 -6")


def _errors(edges: np.ndarray, counts: np.ndarray) -> str:
    w, hh = HIST["error_width"], HIST["height"]
    peak = max(1, int(counts.max(initial=0)))
    lo, hi = float(edges[0]), float(edges[-1])
    body = [_steps(edges, np.sqrt(counts / peak) * hh, w, hh, "err"), _line(0, hh, w, hh, "axis")]
    if lo < 0 < hi:
        zero = (0 - lo) / (hi - lo) * w
        body.append(_line(zero, 0, zero, hh, "axis"))
    body += [_text(0, hh + 16, _num(lo)), _text(w, hh + 16, _num(hi), anchor="end")]
    return _svg(w + 16, hh + 28, body, "hist", "candidate minus reference", origin="-8 -6")


def _figure(svg: str, width: float, caption: str) -> str:
    return f"<figure style='width:{width:.0f}px'>{svg}<figcaption>{caption}</figcaption></figure>"


def histogram_panel(h: Histograms, t: TensorDiff, first: bool) -> str:
    """Reference and candidate histograms overlaid, their per-bin difference, and the element errors."""
    keys = "<span class='key ref-key'></span>reference<span class='key cand-key'></span>candidate"
    figures = [_figure(_overlay(h), HIST["width"] + 50, f"{keys} (√ count); below: candidate − reference per bin")]
    if h.error is not None and h.error_edges is not None:
        caption = "candidate − reference, element by element (√ count)"
        figures.append(_figure(_errors(h.error_edges, h.error), HIST["error_width"] + 16, caption))
    where = f" at {list(t.worst_index)}" if t.worst_index is not None else ""
    subtitle = (
        f"op {_e(t.op_type or '-')} · relative error {_num(t.rel_error)}"
        f" · added {_num(t.added_error)} · max abs error {_num(t.max_abs_error)}{where}"
    )
    title = ("First divergence: " if first else "") + named(t)
    return (
        f"<section class='panel{' first' if first else ''}' id='h-{_e(t.name)}'><h3>{_e(title)}</h3>"
        f"<p class='sub'>{subtitle}</p><div class='figs'>{''.join(figures)}</div></section>"
    )


_COLUMNS = (
    ("#", True),
    ("reference tensor", False),
    ("candidate tensor", False),
    ("paired by", False),
    ("op", False),
    ("layer", False),
    ("shape", False),
    ("status", False),
    ("rel error", True),
    ("added", True),
    ("budget", True),
    ("max abs error", True),
    ("SNR dB", True),
    ("cosine", True),
    ("out of tol", True),
)


def table(result: ArchiveDiff) -> str:
    """Every compared tensor, sortable by any column (click its header)."""
    head = "".join(f"<th{' data-num' if num else ''}>{_e(name)}</th>" for name, num in _COLUMNS)
    rows = []
    for i, t in enumerate(result.tensors):
        budget = budget_of(result, t)
        shape = format_shape(t.shape_a) + ("" if t.shape_a == t.shape_b else f" vs {format_shape(t.shape_b)}")
        share = "-" if t.out_of_tolerance is None else f"{t.out_of_tolerance} ({(t.share_out_of_tolerance or 0):.1%})"
        cls = " ".join(c for c in ("over" if t.diverges else "", "first" if t is result.first_divergence else "") if c)
        fill = colour(t.rel_error, budget, t.diverges)
        cells = [
            f"<td data-v='{i}'>{i}</td>",
            f"<td><code>{_e(t.reference_name)}</code></td>",
            f"<td><code>{_e('' if t.candidate_name == t.reference_name else t.candidate_name)}</code></td>",
            f"<td>{_e(t.paired_by)}</td>",
            f"<td>{_e(t.op_type or '-')}</td>",
            f"<td>{_e(t.layer or '-')}</td>",
            f"<td>{_e(shape)}</td>",
            f"<td>{_e(t.status)}</td>",
            f"<td data-v='{_sort_key(t.rel_error)}' style='background:{fill}'>{_num(t.rel_error)}</td>",
            f"<td data-v='{_sort_key(t.added_error)}'>{_num(t.added_error)}</td>",
            f"<td data-v='{_sort_key(t.budget)}'>{_num(t.budget)}</td>",
            f"<td data-v='{_sort_key(t.max_abs_error)}'>{_num(t.max_abs_error)}</td>",
            f"<td data-v='{_sort_key(t.snr_db)}'>{_num(t.snr_db)}</td>",
            f"<td data-v='{_sort_key(t.cosine)}'>{_num(t.cosine, 6)}</td>",
            f"<td data-v='{_sort_key(t.share_out_of_tolerance)}'>{_e(share)}</td>",
        ]
        rows.append(f"<tr id='t-{_e(t.name)}' class='{cls}'>" + "".join(cells) + "</tr>")
    unpaired = "".join(
        f"<details><summary>Only in the {role} ({len(names)})</summary><ul>"
        + "".join(f"<li><code>{_e(n)}</code></li>" for n in names)
        + "</ul></details>"
        for role, names in (("candidate", result.only_in_a), ("reference", result.only_in_b))
        if names
    )
    body = "".join(rows)
    listing = f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='tablewrap'>{listing}</div>{unpaired}"


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#212121}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:0 0 2px;word-break:break-all}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.prov th{white-space:nowrap}
.verdict{font-size:16px;font-weight:600;margin:12px 0 4px}
.bad{color:#c62828}
.good{color:#2e7d32}
.warn{color:#e65100}
.scroll{overflow-x:auto;border:1px solid #eee;padding:4px 0}
.tick{font-size:10px;fill:#616161}
.xlabel{font-size:10px;fill:#424242}
.grid{stroke:#eee}
.axis{stroke:#9e9e9e}
.budget{stroke:#c62828;stroke-dasharray:5 4;fill:none}
.budget-label{font-size:11px;fill:#c62828}
.curve{fill:none;stroke:#1565c0;stroke-width:1.5}
.pt{fill:#1565c0}
.pt.zero{fill:#fff;stroke:#1565c0}
.pt.over{fill:#e53935}
.added{fill:#ce93d8;opacity:.75}
.divergence{stroke:#6a1b9a;stroke-width:1.5}
.first-label{font-size:11px;fill:#6a1b9a;font-weight:600}
.legend{font-size:12px;color:#616161}
.key{display:inline-block;width:14px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
.curve-key{background:#1565c0}
.added-key{background:#ce93d8}
.over-key{background:#e53935}
.ref-key{background:#90caf9}
.cand-key{background:#ffcc80}
.swatch{display:inline-block;width:14px;height:10px;margin:0 2px 0 8px;border:1px solid #ccc;vertical-align:middle}
.chain{display:flex;flex-wrap:wrap;gap:4px 14px}
.node{display:flex;flex-direction:column;min-width:88px;max-width:150px;padding:3px 6px;border:1px solid #bdbdbd;
  border-radius:4px;color:#212121;text-decoration:none;position:relative;font-size:11px}
.node:not(:last-child)::after{content:"→";position:absolute;right:-13px;top:8px;color:#9e9e9e}
.node .n{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.node .v{font-weight:600}
.node.first{outline:2px solid #6a1b9a;outline-offset:1px}
.compact .node{min-width:56px;max-width:80px;font-size:10px;padding:1px 4px}
.panels{display:flex;flex-wrap:wrap;gap:14px}
.panel{box-sizing:border-box;border:1px solid #e0e0e0;border-radius:6px;padding:8px 10px;width:600px}
.panel.first{border-color:#6a1b9a;box-shadow:0 0 0 1px #6a1b9a}
.sub{margin:0 0 6px;color:#616161;font-size:12px}
.figs{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}
figcaption{font-size:11px;color:#616161}
.hist .ref{fill:#90caf9;fill-opacity:.6;stroke:#1565c0;stroke-width:1}
.hist .cand{fill:#ffcc80;fill-opacity:.45;stroke:#ef6c00;stroke-width:1}
.hist .err{fill:#b39ddb;stroke:#5e35b1;stroke-width:1}
.hist .more{fill:#ef6c00}
.hist .less{fill:#1565c0}
.tablewrap{max-height:70vh;overflow:auto;border:1px solid #eee}
.sortable th{position:sticky;top:0;background:#fafafa;cursor:pointer;white-space:nowrap;user-select:none}
.sortable th:hover{background:#f0f0f0}
.sortable td{white-space:nowrap;font-size:12px}
tr.over td:nth-child(8){color:#c62828;font-weight:600}
tr.first td{border-top:2px solid #6a1b9a;border-bottom:2px solid #6a1b9a}
:target{outline:2px solid #1565c0}
"""

#: Click a header to sort by it; again to reverse. Numbers sort by data-v, other cells by text.
_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col) {
  th.addEventListener('click', function() {
    var body = th.closest('table').tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1, num = th.hasAttribute('data-num');
    th.dataset.dir = dir > 0 ? 'asc' : 'desc';
    function key(row) {
      var cell = row.cells[col], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
      return num ? (v === '' ? -Infinity : parseFloat(v)) : v;
    }
    rows.sort(function(a, b) {
      var x = key(a), y = key(b);
      return dir * (num ? (x === y ? 0 : x < y ? -1 : 1) : String(x).localeCompare(String(y)));
    });
    rows.forEach(function(row) { body.appendChild(row); });
  });
});
"""


def _along_note(result: ArchiveDiff) -> str:
    shown = len(along(result))
    if shown == len(result.tensors):
        return f"All {shown} compared tensors, in graph order."
    return (
        f"{shown} of the {len(result.tensors)} compared tensors, in graph order: the model's inputs, layer outputs"
        " and outputs, and every tensor over budget (the table lists all)."
    )


def render_report(
    result: ArchiveDiff,
    found: Mapping[str, Histograms] | None = None,
    *,
    title: str = "probe compare",
    inputs: Mapping[str, list[InputRecord]] | None = None,
) -> str:
    """The whole page; ``found``: histograms by candidate tensor name (:func:`collect_histograms`),
    ``inputs``: the fed inputs by role (``reference``/``candidate``)."""
    found = found or {}
    reference, candidate = result.reference, result.candidate
    first = result.first_divergence
    panels = [
        histogram_panel(found[t.name], t, t is first) for t in chosen(result, len(result.tensors)) if t.name in found
    ]
    body = [
        f"<h1>{_e(title)}: where the candidate diverges from the reference</h1>",
        f"<p class='sub'>reference <code>{_e(reference)}</code> · candidate <code>{_e(candidate)}</code></p>",
        _verdict(result),
        "<h2>Models and inputs</h2>",
        _provenance(result, inputs or {}),
        "<h2>Relative error along the graph</h2>",
        f"<p class='legend'>{_along_note(result)}</p>",
        error_chart(result),
        "<h2>The chain, coloured by error</h2>",
        chain(result),
        "<h2>Distributions</h2>",
        "<div class='panels'>" + "".join(panels) + "</div>" if panels else "<p>No values to histogram.</p>",
        f"<h2>All {len(result.tensors)} compared tensors</h2>",
        "<p class='legend'>Click a column header to sort. The candidate's name is shown where it differs.</p>",
        table(result),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}: {_e(Path(candidate).name)} vs {_e(Path(reference).name)}</title>"
        f"<style>{_STYLE}</style></head><body>" + "\n".join(body) + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def build_report(
    result: ArchiveDiff,
    candidate: str | Path,
    reference: str | Path,
    *,
    title: str = "probe compare",
    worst: int = WORST,
) -> str:
    """:func:`render_report` with histograms and inputs read from the two archives (candidate's, reference's)."""
    with open_archive(candidate) as fc, open_archive(reference) as fr:
        inputs = {"candidate": read_input_records(fc), "reference": read_input_records(fr)}
        found = _histograms_of(result, fc, fr, worst)
    return render_report(result, found, title=title, inputs=inputs)


def write_report(path: str | Path, page: str) -> Path:
    """Writes the page, replacing any file there."""
    path = Path(path)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise FileProblem(f"cannot write the report {str(path)!r}: {exc.strerror or exc}") from None
    return path
