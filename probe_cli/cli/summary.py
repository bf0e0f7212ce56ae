"""A short Markdown verdict for CI: appended to ``$GITHUB_STEP_SUMMARY`` when it is set.

GitHub Actions shows that file on the run's page. ``probe diff`` (and any later command
comparing archives) appends the verdict, the first divergence and the worst tensors; without the
variable nothing is written. The file is only ever appended to, never truncated: each step and
each command adds its own section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from probe_cli.analysis.diff import ELEMENTWISE, SHAPE_MISMATCH, ArchiveDiff, TensorDiff

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
#: Rows of the worst-tensors table, and names listed per "only in" line.
WORST = 5
NAMES = 10


def step_summary_path(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The file to append to, or None when not running in GitHub Actions (or the variable is empty)."""
    value = environ.get(STEP_SUMMARY)
    return Path(value) if value else None


def append_step_summary(markdown: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Appends ``markdown`` (and a blank line) to the step summary; returns the file, None when off.

    Raises OSError when the file cannot be written.
    """
    path = step_summary_path(environ)
    if path is None:
        return None
    with path.open("a", encoding="utf-8") as f:
        f.write(markdown.rstrip("\n") + "\n\n")
    return path


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _code(text: str) -> str:
    """A name as inline code in a table cell (a ``|`` would end the cell)."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _out_of_tolerance(t: TensorDiff) -> str:
    share = t.share_out_of_tolerance
    if share is None or t.out_of_tolerance is None:
        return "-"
    return f"{t.out_of_tolerance} of {t.size} ({100 * share:.3g}%)"


def _shapes(t: TensorDiff) -> str:
    return f"shape {list(t.shape_b)} in the reference, {list(t.shape_a)} in the candidate"


def _severity(t: TensorDiff) -> tuple[int, float, float]:
    """Sort key, worst first: uncomparable shapes, then the largest relative error, then absolute error."""
    rel = t.rel_error
    return (
        0 if t.status == SHAPE_MISMATCH else 1,
        -(rel if rel is not None else 0.0),
        -(t.max_abs_error if t.max_abs_error is not None else 0.0),
    )


def worst_tensors(result: ArchiveDiff, count: int = WORST) -> list[TensorDiff]:
    """The ``count`` differing tensors that differ most."""
    return sorted(result.differing, key=_severity)[:count]


def _names(label: str, names: Sequence[str]) -> str:
    shown = ", ".join(_code(n) for n in names[:NAMES])
    more = f" and {len(names) - NAMES} more" if len(names) > NAMES else ""
    return f"Only in the {label} ({len(names)}): {shown}{more}"


def _first_divergence(t: TensorDiff) -> str:
    where = t.place()
    if t.status == SHAPE_MISMATCH:
        detail = _shapes(t)
    else:
        at = f" at {list(t.worst_index)}" if t.worst_index is not None else ""
        budget = f" (budget {_num(t.budget)})" if t.budget is not None else ""
        detail = f"relative error {_num(t.rel_error)}{budget}, max abs error {_num(t.max_abs_error)}{at}"
        if t.out_of_tolerance is not None and t.budget is None:
            detail += f", {_out_of_tolerance(t)} elements out of tolerance"
    return f"**First divergence:** {_name(t)}" + (f" ({where})" if where else "") + f": {detail}"


def _name(t: TensorDiff) -> str:
    """The reference's name, and the candidate's where it differs."""
    return _code(t.reference_name) + (f" = {_code(t.candidate_name)}" if t.candidate_name != t.reference_name else "")


def _criterion(result: ArchiveDiff) -> str:
    if result.criterion.startswith(ELEMENTWISE):
        return f"A tensor passes when {result.criterion}; atol {result.atol:g}, rtol {result.rtol:g}."
    return f"A tensor passes when {result.criterion} (c: the candidate's values, r: the reference's)."


def diff_markdown(result: ArchiveDiff, title: str = "probe diff") -> str:
    """The step summary of a comparison: verdict, counts, first divergence, worst tensors, one-sided tensors."""
    verdict = "✅ same" if result.same else "❌ different"
    common, differing = len(result.tensors), len(result.differing)
    counts = f"{differing} of {common} paired tensor(s) differ" if differing else f"all {common} paired tensor(s) pass"
    if result.only_in_a or result.only_in_b:
        counts += f"; {len(result.only_in_b)} only in the reference, {len(result.only_in_a)} only in the candidate"
    lines = [
        f"### {title}: {verdict}",
        "",
        f"Reference {_code(result.reference)}, candidate {_code(result.candidate)}: {counts}.",
        "",
        _criterion(result),
        "",
    ]
    if result.layer_coverage is not None:
        lines += [result.layer_coverage.sentence(), ""]
    first = result.first_divergence
    if first is not None:
        lines += [_first_divergence(first), ""]
    worst = worst_tensors(result)
    if worst:
        more = f" (worst {len(worst)} of {differing})" if differing > len(worst) else ""
        lines += [
            f"Differing tensors{more}:",
            "",
            "| tensor | status | max abs error | rel error | out of tolerance |",
            "|---|---|--:|--:|--:|",
        ]
        for t in worst:
            status = f"{t.status}: {_shapes(t)}" if t.status == SHAPE_MISMATCH else t.status
            status += f" (after {t.layout_change})" if t.layout_change else ""
            row = [_name(t), status, _num(t.max_abs_error), _num(t.rel_error), _out_of_tolerance(t)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for label, names in (("reference", result.only_in_b), ("candidate", result.only_in_a)):
        if names:
            lines += [_names(label, names), ""]
    lines += [f"- Warning: {message}" for message in result.warnings]
    return "\n".join(lines).rstrip("\n") + "\n"


def append_diff_summary(
    result: ArchiveDiff, title: str = "probe diff", environ: Mapping[str, str] = os.environ
) -> str | None:
    """Appends :func:`diff_markdown` when ``$GITHUB_STEP_SUMMARY`` is set; a warning to print if it could not.

    A summary that cannot be written does not change the comparison's exit code.
    """
    path = step_summary_path(environ)
    if path is None:
        return None
    try:
        append_step_summary(diff_markdown(result, title), environ)
    except OSError as exc:
        return f"could not append the summary to ${STEP_SUMMARY} ({path}): {exc.strerror or exc}"
    return None
