"""Turns ``--tensor``/``--layer`` regexes into tensors, in graph order.

Semantics (shared by ``list --match`` and ``dump``): a pattern selects a tensor
when it matches its full name (``op:0``) or its op name (``op``) completely, as
``re.fullmatch`` does. One pass over the graph order per call, so the cost is
linear in the graph size and the result has no duplicates.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from probe_cli.core.errors import PatternError, given, in_python
from probe_cli.core.types import LayerInfo, ModelIndex, TensorInfo


def compile_pattern(pattern: str, option: str = "--tensor") -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:  # 'a{99999999999}', deep nesting
        raise PatternError(f"{given(option, repr(pattern))} is not a valid regular expression: {exc}") from None


def tensor_matches(regex: re.Pattern[str], tensor: TensorInfo) -> bool:
    return bool(regex.fullmatch(tensor.name) or regex.fullmatch(tensor.op_name))


def _widened(pattern: str, example: str) -> str:
    """``pattern`` matching anywhere in a name, written as a person would: ``conv.*`` -> ``.*conv.*``, not
    ``.*conv.*.*``; an alternation is grouped, so ``a|b`` stays one pattern."""
    core = pattern[2:] if pattern.startswith(".*") and len(pattern) > 2 else pattern
    core = core[:-2] if core.endswith(".*") and not core.endswith("\\.*") and len(core) > 2 else core
    for candidate in ([] if "|" in core else [f".*{core}.*"]) + [f".*({core}).*"]:
        try:
            if re.fullmatch(candidate, example):
                return candidate
        except re.error:  # the '.*' taken off was part of something else, e.g. '(a.*)'
            continue
    return f".*({pattern}).*"


def _no_match(pattern: str, option: str, names: Sequence[str], what: str = "tensor") -> PatternError:
    """Names the closest existing names and the most likely fix."""
    regex = re.compile(pattern)
    partial = [n for n in names if regex.search(n)]
    if partial:
        widened = _widened(pattern, partial[0])
        hint = f"patterns must match the whole name; try {widened!r} (it would match e.g. {partial[0]})"
    else:
        folded = re.compile(pattern, re.IGNORECASE)
        caseless = [n for n in names if folded.fullmatch(n) or folded.search(n)]
        if caseless:
            hint = f"names are case-sensitive; did you mean {caseless[0]}?"
        else:
            close = difflib.get_close_matches(pattern, list(dict.fromkeys(names)), n=3, cutoff=0.3)
            names_at = f"Model.{what}s lists the names" if in_python() else "run 'probe list MODEL' to see the names"
            hint = ("closest: " + ", ".join(close)) if close else names_at
    return PatternError(f"{given(option, repr(pattern))} matches no {what}", hint)


def match_layers(index: ModelIndex, patterns: Sequence[str], option: str = "--layer") -> list[LayerInfo]:
    """Layers whose name some pattern fully matches, in index order; every pattern must match.

    ``option`` is what errors call the patterns: the option the user typed them after.
    """
    regexes = [compile_pattern(p, option) for p in patterns]
    hit = [False] * len(regexes)
    selected = []
    for layer in index.layers:
        matched = False
        for i, regex in enumerate(regexes):
            if regex.fullmatch(layer.name):
                hit[i] = matched = True
        if matched:
            selected.append(layer)
    for pattern, ok in zip(patterns, hit):
        if not ok:
            raise _no_match(pattern, option, [layer.name for layer in index.layers], "layer")
    return selected


def resolve(
    index: ModelIndex,
    tensor_patterns: Sequence[str] = (),
    layer_patterns: Sequence[str] = (),
    tensor_option: str = "--tensor",
) -> list[TensorInfo]:
    """The tensors the patterns select, in graph order, each once.

    A pattern that selects nothing raises :class:`PatternError` naming the
    closest names, so a typo never silently yields an empty archive.
    ``tensor_option`` is what errors call the tensor patterns (``list --match``).
    """
    regexes = [compile_pattern(p, tensor_option) for p in tensor_patterns]
    wanted: set[str] = {t.name for t in index.layer_outputs(match_layers(index, layer_patterns))}
    hit = [False] * len(regexes)
    for tensor in index.tensors:
        for i, regex in enumerate(regexes):
            if tensor_matches(regex, tensor):
                hit[i] = True
                wanted.add(tensor.name)
    for pattern, ok in zip(tensor_patterns, hit):
        if not ok:
            names = [n for t in index.tensors for n in (t.name, t.op_name)]
            raise _no_match(pattern, tensor_option, names)
    return [t for t in index.tensors if t.name in wanted]
