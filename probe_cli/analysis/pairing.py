"""Which tensor of one form of a model is which tensor of another (a Keras file, its SavedModel, a frozen graph).

Pairs are found, in this order: by an explicit map (``--map FILE``), by probe name, then by graph
name with call wrappers, the model scope and scope counters removed
(:func:`probe_cli.core.graph_names.pairing_key`). A key shared by two tensors on one side pairs
nothing: two different tensors are never paired by a guess. Pure Python.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from probe_cli.core.errors import FileProblem
from probe_cli.core.graph_names import pairing_key

BY_MAP = "map"
BY_NAME = "name"
BY_GRAPH_NAME = "graph name"


class Named(Protocol):
    """A tensor as listed or stored: its probe name and its name in the graph."""

    @property
    def name(self) -> str: ...

    @property
    def graph_name(self) -> str: ...


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    #: how the two were found to be one tensor: ``map``, ``name`` or ``graph name``
    how: str


@dataclass
class Pairing:
    """Pairs in A's order, and the tensors of each side left without a partner."""

    pairs: list[Pair] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def b_of(self) -> dict[str, str]:
        return {pair.a: pair.b for pair in self.pairs}


def pair(a: Sequence[Named], b: Sequence[Named], mapping: Mapping[str, str] | None = None) -> Pairing:
    """Pairs A's tensors with B's; see the module docstring for the order of the rules."""
    mapping = dict(mapping or {})
    names_b = {t.name for t in b}
    found: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for t in a:
        partner = mapping.get(t.name)
        if partner is not None and partner in names_b and partner not in taken:
            found[t.name] = (partner, BY_MAP)
            taken.add(partner)
    for t in a:
        if t.name not in found and t.name in names_b and t.name not in taken:
            found[t.name] = (t.name, BY_NAME)
            taken.add(t.name)
    # a key must be unique over the whole of each side: one shared by two tensors, paired or not, pairs nothing
    keys_a = Counter(pairing_key(t.graph_name) for t in a)
    keys_b = Counter(pairing_key(t.graph_name) for t in b)
    unique_b = {pairing_key(t.graph_name): t.name for t in b}
    for t in a:
        key = pairing_key(t.graph_name)
        if t.name in found or keys_a[key] != 1 or keys_b.get(key) != 1 or unique_b[key] in taken:
            continue
        found[t.name] = (unique_b[key], BY_GRAPH_NAME)
        taken.add(unique_b[key])
    return Pairing(
        pairs=[Pair(t.name, *found[t.name]) for t in a if t.name in found],
        only_a=[t.name for t in a if t.name not in found],
        only_b=[t.name for t in b if t.name not in taken],
    )


def read_map(path: str | Path) -> dict[str, str]:
    """``--map FILE``: A's tensor name -> B's, from a JSON object, a JSON list of pairs, or a two-column CSV."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FileProblem(f"--map file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FileProblem(f"--map file {str(path)!r} is not valid JSON: {exc}") from None
        rows = list(data.items()) if isinstance(data, dict) else data
    else:
        rows = [row for row in csv.reader(text.splitlines()) if row and not row[0].startswith("#")]
    mapping: dict[str, str] = {}
    for row in rows:
        if not (isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(x, str) for x in row)):
            raise FileProblem(f"--map file {str(path)!r}: {row!r} is not a pair of tensor names")
        mapping[row[0].strip()] = row[1].strip()
    return mapping
