"""Which of the reference's layers a comparison checks: by their own output, downstream (inside an op the
converter fused, a Conv folded with its BatchNorm checked where the fused op ends, at the BatchNorm's
output; or through an op it dropped, a zero offset's add checked at the pairs that read it), or not at all.
A layer is known by its output tensors, as the index lists them (``ModelGraph.layer_outputs``, each
tensor's ``layer``). Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from probe_cli.analysis.pairing import Pair, Pairing
from probe_cli.core.graph import ModelGraph


@dataclass(frozen=True)
class LayerCoverage:
    """The reference's layers with an output among the tensors compared or left unpaired, in graph order."""

    layers: tuple[str, ...]
    #: compared only downstream: no output of their own paired, one computed inside (or dropped by) a paired op
    downstream: tuple[str, ...]
    not_compared: tuple[str, ...]

    @property
    def compared(self) -> int:
        return len(self.layers) - len(self.not_compared)

    def sentence(self, hint: str = "") -> str:
        """``Reference layers: 177 of 177 compared, 54 of them downstream (fused or dropped by the converter).``;
        ``hint`` follows the count of those not compared."""
        count = len(self.downstream)
        inside = f", {count} of them downstream (fused or dropped by the converter)" if count else ""
        missing = f"; {len(self.not_compared)} not compared{hint}" if self.not_compared else ""
        return f"Reference layers: {self.compared} of {len(self.layers)} compared{inside}{missing}."

    def record(self) -> dict[str, Any]:
        return {
            "layers": len(self.layers),
            "compared": self.compared,
            "downstream": list(self.downstream),
            "not_compared": list(self.not_compared),
        }


def layers_of(graph: ModelGraph, tensors: Iterable[str]) -> tuple[str, ...]:
    """The layers of the graph's tensors, in their order, each once."""
    nodes = graph.by_name
    found = (nodes[t].layer for t in tensors if t in nodes)
    return tuple(dict.fromkeys(layer for layer in found if layer))


def pair_layers(graph: ModelGraph, p: Pair) -> tuple[str, ...]:
    """The reference layers whose values one pair checks: its tensor's layer, or, for a fused op, the layers
    of the chain it stands for (``conv2_block1_2_conv``, ``conv2_block1_2_bn``)."""
    return layers_of(graph, p.covers or (p.reference,))


def layer_coverage(graph: ModelGraph, pairing: Pairing) -> LayerCoverage | None:
    """How the reference's layers are compared (``graph`` is the reference's); None when it knows no layers."""
    paired = {p.reference for p in pairing.pairs}
    considered = paired | set(pairing.only_reference)
    paired_c = {p.candidate for p in pairing.pairs}
    covered = {t for p in pairing.pairs for t in p.covers}
    covered |= {t for t, by in pairing.fused_into_reference.items() if by in paired_c}
    nodes = graph.by_name
    outputs: dict[str, list[str]] = {}
    for t in graph.layer_outputs:
        if t in considered and t in nodes:
            outputs.setdefault(nodes[t].layer or t.rpartition(":")[0], []).append(t)
    if not outputs:
        return None
    own = {layer for layer, ts in outputs.items() if any(t in paired for t in ts)}
    fused = tuple(layer for layer, ts in outputs.items() if layer not in own and any(t in covered for t in ts))
    rest = tuple(layer for layer in outputs if layer not in own and layer not in fused)
    return LayerCoverage(tuple(outputs), fused, rest)
