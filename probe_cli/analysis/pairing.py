"""Which tensor of one form of a model is which tensor of another (a Keras file, its SavedModel, a frozen
graph, a TFLite or ONNX conversion): one mechanism for every pair of formats.

Rules, in this order (each pair records which one made it):

1. ``map``: an explicit ``--map FILE`` (reference name -> candidate name);
2. ``name``: the same probe name;
3. ``graph name``: the same graph name with call wrappers, the model scope and scope counters removed
   (:func:`probe_cli.core.graph_names.pairing_key`); a key two tensors of one side share pairs nothing;
4. ``input`` / ``output``: the model's inputs in signature order, its outputs in order (a reference
   output left unpaired pairs with its place's candidate even if that one has a partner already);
5. ``copy``: an identity, cast, quantize/dequantize, reshape or transpose of a paired tensor pairs with
   that tensor's partner;
6. ``fused``: a fused op's output pairs with the tensor at the end of the chain it replaced: an anchor
   (convolution, matrix product, pooling, addition, ...) of the same family reading the partners of the
   tensors it reads (through paddings, copies and scales a converter folds into it), followed by its
   epilogue (bias, batch-norm offset and scale, activation). The chain is read from the graph
   (:mod:`probe_cli.core.op_roles`), never from values, shapes or name counters.

Rules 5 and 6 repeat until nothing more pairs, in both directions (the candidate's fused op against the
reference's chain, and the reverse). A tensor with no counterpart stays unpaired, classified by why; one
computed inside a paired fused op, or an offset a converter dropped, records the op that accounts for it
(``fused_into``), which the layer coverage (:mod:`probe_cli.analysis.coverage`) counts as compared
downstream. Pure Python.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from probe_cli.core import op_roles
from probe_cli.core.errors import FileProblem
from probe_cli.core.graph import GraphNode, ModelGraph
from probe_cli.core.graph_names import pairing_key

BY_MAP = "map"
BY_NAME = "name"
BY_GRAPH_NAME = "graph name"
BY_INPUT = "input"
BY_OUTPUT = "output"
BY_COPY = "copy"
BY_FUSED = "fused"
#: Why a tensor has no counterpart.
WEIGHT = "weights and constants"
FUSED_AWAY = "intermediate ops of fused layers"
INSERTED = "ops inserted by the converter"
NO_COUNTERPART = "other tensors"
#: A converter's own ops: tf2onnx's ``__N`` suffix, TensorFlow Lite's ``tfl.`` ops, a SavedModel's call plumbing.
_INSERTED = re.compile(r"(__\d+(:\d+)?$)|(^tfl\.)|(^Func/)")
#: How far a chain of unpaired tensors is followed to confirm a fused op's partner downstream.
_DOWNSTREAM_DEPTH = 24


class Named(Protocol):
    """A tensor as listed or stored: its probe name and its name in the graph."""

    @property
    def name(self) -> str: ...

    @property
    def graph_name(self) -> str: ...


@dataclass(frozen=True)
class Pair:
    reference: str
    candidate: str
    #: how the two were found to be one tensor: one of the ``BY_*`` rules
    how: str
    #: ``fused``: the reference's (or, reversed, the candidate's) ops the fused op stands for, in order
    chain: tuple[str, ...] = ()
    #: ``fused``: the reference's tensors whose values this pair checks, in graph order and ending with
    #: ``reference``: the unpaired ones a fused op computes away (its padding, a Conv before the BatchNorm
    #: it absorbed); empty for the other pairs, which check ``reference`` alone
    covers: tuple[str, ...] = ()


@dataclass
class Pairing:
    """Pairs in the reference's graph order; unpaired tensors of each side, with why."""

    pairs: list[Pair] = field(default_factory=list)
    only_reference: list[str] = field(default_factory=list)
    only_candidate: list[str] = field(default_factory=list)
    #: unpaired tensor -> why (:data:`WEIGHT`, :data:`FUSED_AWAY`, :data:`INSERTED`, :data:`NO_COUNTERPART`)
    why_reference: dict[str, str] = field(default_factory=dict)
    why_candidate: dict[str, str] = field(default_factory=dict)
    #: an unpaired tensor a fusion swallowed -> the other side's tensor whose op computes it away
    #: (a Keras Conv's output -> the TFLite CONV_2D that folded its BatchNorm)
    fused_into_reference: dict[str, str] = field(default_factory=dict)
    fused_into_candidate: dict[str, str] = field(default_factory=dict)

    def candidate_of(self) -> dict[str, str]:
        """Reference name -> its first partner."""
        found: dict[str, str] = {}
        for p in self.pairs:
            found.setdefault(p.reference, p.candidate)
        return found

    def restricted(self, reference: Collection[str], candidate: Collection[str]) -> Pairing:
        """The pairs of which both tensors are in the given sets (those stored, those selected), and the
        tensors of those sets left unpaired."""
        pairs = [p for p in self.pairs if p.reference in reference and p.candidate in candidate]
        ref_paired = {p.reference for p in pairs}
        cand_paired = {p.candidate for p in pairs}
        only_r = [n for n in self.order_r if n in reference and n not in ref_paired]
        only_c = [n for n in self.order_c if n in candidate and n not in cand_paired]
        return Pairing(
            pairs,
            only_r,
            only_c,
            {n: self.why_reference.get(n, NO_COUNTERPART) for n in only_r},
            {n: self.why_candidate.get(n, NO_COUNTERPART) for n in only_c},
            {n: self.fused_into_reference[n] for n in only_r if n in self.fused_into_reference},
            {n: self.fused_into_candidate[n] for n in only_c if n in self.fused_into_candidate},
            self.order_r,
            self.order_c,
        )

    #: every tensor of each side in graph order, for :meth:`restricted`
    order_r: list[str] = field(default_factory=list, repr=False)
    order_c: list[str] = field(default_factory=list, repr=False)


def _op(tensor: str) -> str:
    """The op of a tensor name (``bn/FusedBatchNormV3`` of ``bn/FusedBatchNormV3:2``): its outputs are siblings."""
    return tensor.rpartition(":")[0] or tensor


def as_graph(tensors: Sequence[Named] | ModelGraph) -> ModelGraph:
    """A graph for a plain list of tensors (no op inputs known: only names pair them)."""
    if isinstance(tensors, ModelGraph):
        return tensors
    return ModelGraph(tuple(GraphNode(t.name, t.graph_name) for t in tensors))


def _alike(a: GraphNode, b: GraphNode) -> bool:
    """Same dtype and the same known sizes past the batch axis, where both sides say."""
    if a.dtype and b.dtype and a.dtype != b.dtype:
        return False
    if a.shape is None or b.shape is None:
        return True
    if len(a.shape) != len(b.shape):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a.shape[1:], b.shape[1:]))


class _Side:
    """One graph and what pairing needs of it: which tensors are constant, who reads what."""

    def __init__(self, graph: ModelGraph) -> None:
        self.graph = graph
        self.nodes = graph.by_name
        self.order = {node.name: i for i, node in enumerate(graph.nodes)}
        self.reads = {node.name: self._own_inputs(node) for node in graph.nodes}
        consumers: dict[str, list[str]] = {}
        for node in graph.nodes:
            for source in self.reads[node.name]:
                consumers.setdefault(source, []).append(node.name)
        self.consumers = consumers
        inputs = set(graph.inputs)
        self.const: set[str] = set()
        self.roles: dict[str, str] = {}
        known = bool(graph.inputs or graph.outputs or any(n.op_inputs for n in graph.nodes))
        for node in graph.nodes:  # graph order: an op's inputs come first
            listed = [x for x in node.op_inputs if x in self.nodes]
            data = [x for x in self.reads[node.name] if x not in self.const]
            if node.name in inputs or not known:
                role = op_roles.ANCHOR
            else:
                role = op_roles.role(node.op_type, len(data), len(listed))
            self.roles[node.name] = role
            if role == op_roles.CONST:
                self.const.add(node.name)

    def _own_inputs(self, node: GraphNode) -> tuple[str, ...]:
        """What one output of an op reads: all its inputs, but output k of an IdentityN passes on input k
        (Keras' swish wraps its result in one, with its gradient's inputs)."""
        listed = tuple(x for x in dict.fromkeys(node.op_inputs) if x in self.nodes)
        if node.op_type in op_roles.PER_OUTPUT_OPS:
            index = node.name.rpartition(":")[2]
            k = int(index) if index.isdigit() else 0
            return node.op_inputs[k : k + 1] if k < len(node.op_inputs) and node.op_inputs[k] in self.nodes else listed
        return listed

    def prologue(self, name: str) -> bool:
        """Whether an op may stand between a tensor and the anchor that reads it, folded into the anchor by a
        converter: a padding, a copy, or a scale or offset (TFLite folds an input's rescaling into the first
        convolution's weights; tf2onnx drops the add of a zero bias)."""
        return self.nodes[name].op_type in op_roles.PROLOGUE_OPS or self.roles[name] == op_roles.AFFINE

    def data_inputs(self, name: str) -> list[str]:
        return [x for x in self.reads[name] if x not in self.const]

    def data_consumers(self, name: str) -> list[str]:
        return [c for c in self.consumers.get(name, ()) if c not in self.const]


class _Pairer:
    def __init__(self, reference: ModelGraph, candidate: ModelGraph) -> None:
        self.r, self.c = _Side(reference), _Side(candidate)
        self.pairs: list[Pair] = []
        #: partner of each paired tensor, per side (the first one made)
        self.r2c: dict[str, str] = {}
        self.c2r: dict[str, str] = {}
        #: tensors a fusion swallowed -> the tensor of the other side that computes them away
        self.fused_r: dict[str, str] = {}
        self.fused_c: dict[str, str] = {}

    def add(self, ref: str, cand: str, how: str, chain: tuple[str, ...] = (), covers: tuple[str, ...] = ()) -> None:
        self.pairs.append(Pair(ref, cand, how, chain, covers))
        self.r2c.setdefault(ref, cand)
        self.c2r.setdefault(cand, ref)

    def by_names(self, mapping: Mapping[str, str]) -> None:
        r_nodes, c_nodes = self.r.graph.nodes, self.c.graph.nodes
        for node in r_nodes:
            partner = mapping.get(node.name)
            if partner is not None and partner in self.c.nodes and partner not in self.c2r:
                self.add(node.name, partner, BY_MAP)
        for node in r_nodes:
            if node.name not in self.r2c and node.name in self.c.nodes and node.name not in self.c2r:
                self.add(node.name, node.name, BY_NAME)
        # a key must be unique over the whole of each side: one shared by two tensors, paired or not, pairs nothing
        keys_r = Counter(pairing_key(n.graph_name) for n in r_nodes)
        keys_c = Counter(pairing_key(n.graph_name) for n in c_nodes)
        unique_c = {pairing_key(n.graph_name): n.name for n in c_nodes}
        for node in r_nodes:
            key = pairing_key(node.graph_name)
            if node.name in self.r2c or keys_r[key] != 1 or keys_c.get(key) != 1 or unique_c[key] in self.c2r:
                continue
            self.add(node.name, unique_c[key], BY_GRAPH_NAME)

    def by_position(self, refs: Sequence[str], cands: Sequence[str], how: str) -> None:
        """The i-th input (output) with the i-th. A candidate's output that copies a paired tensor (a
        SavedModel's ``Identity:0`` of the Softmax) pairs with that tensor's partner, whatever its place;
        with several, a place pairs only tensors of one dtype and shape (formats order a signature's
        outputs differently: by name, or as the model returns them)."""
        if len(refs) != len(cands):
            return
        for ref, cand in zip(refs, cands):
            if cand in self.c2r or ref not in self.r.nodes or cand not in self.c.nodes:
                continue
            source = self._copied(self.c, cand, self.c2r)
            if source is not None:
                self.add(self.c2r[source], cand, how)
            elif len(refs) == 1 or _alike(self.r.nodes[ref], self.c.nodes[cand]):
                self.add(ref, cand, how)

    def outputs_left(self) -> None:
        """A reference output still unpaired once everything else is, computed (through unpaired scales,
        offsets and copies) from the tensor its place's candidate output pairs with: tf2onnx drops a zero
        bias, so ONNX's output is the MatMul that pairs by name with the Keras MatMul before the BiasAdd."""
        refs, cands = self.r.graph.outputs, self.c.graph.outputs
        if len(refs) != len(cands):
            return
        for ref, cand in zip(refs, cands):
            if ref in self.r2c or cand not in self.c2r or ref not in self.r.nodes:
                continue
            partner = self.c2r[cand]
            x = ref
            while x != partner and x not in self.r2c and len(ups := self.r.data_inputs(x)) == 1:
                if self.r.roles[x] not in (op_roles.AFFINE, op_roles.COPY):
                    break
                x = ups[0]
            if x == partner:
                self.add(ref, cand, BY_OUTPUT)

    @staticmethod
    def _copied(side: _Side, name: str, mine: Mapping[str, str]) -> str | None:
        """The paired tensor ``name`` copies through a chain of copies, if it does."""
        x = name
        while side.roles.get(x) == op_roles.COPY and len(ups := side.data_inputs(x)) == 1:
            x = ups[0]
            if x in mine:
                return x
        return None

    def refine(self, this: _Side, other: _Side, mine: dict[str, str], theirs: dict[str, str], flip: bool) -> None:
        """A name can name the anchor of a fused op whose value is the end of the chain it replaced
        (TFLite's ``stem_conv/convolution;;stem_conv_pad/Pad1`` holds the folded BatchNorm's output, tf2onnx's
        Conv ``bn/batchnorm/mul_1`` the BatchNorm's ``add_1``): when
        every paired tensor reading it reads, on the other side, the end of its partner's chain (directly or
        through unpaired ops) and no other tensor of that chain, it pairs with that end. A chain named after
        an offset or scale starts at the anchor of the op's family before it that reads what the op reads (the
        Conv and BiasAdd before ``mul_1``): the fused op computes them too."""
        for name, partner in list(mine.items()):
            if this.roles[name] != op_roles.ANCHOR or other.roles.get(partner) not in (
                op_roles.ANCHOR,
                op_roles.AFFINE,
            ):
                continue
            if name in this.graph.inputs or partner in other.graph.inputs:  # an input holds itself
                continue
            if len(self._chain(this, name, mine)) > 1:
                continue
            chain = self._chain(other, partner, theirs)
            readers = [mine[r] for r in this.data_consumers(name) if r in mine]
            if len(chain) == 1 or not readers or theirs.get(partner) != name:
                continue
            end = chain[-1]
            if not all(self._reaches(other, r, set(chain), theirs) == {end} for r in readers):
                continue
            ref, cand = (partner, name) if flip else (name, partner)
            self.pairs = [p for p in self.pairs if (p.reference, p.candidate) != (ref, cand)]
            del mine[name], theirs[partner]
            anchor = self._anchor_before(other, partner, theirs, op_roles.family(this.nodes[name].op_type))
            if anchor is not None and self._sources(other, anchor, theirs) == self._partners(this, name, mine):
                whole = self._chain(other, anchor, theirs)
                chain = whole if whole[-1] == end and partner in whole else chain
            swallowed = self._prologue(other, chain[0], theirs) + chain[:-1]
            ref, cand = (end, name) if flip else (name, end)
            covers = tuple(swallowed + [end]) if flip else ()
            self.add(ref, cand, BY_FUSED, tuple(other.nodes[x].op_type for x in chain), covers)
            (self.fused_r if flip else self.fused_c).update(dict.fromkeys(swallowed, name))

    @staticmethod
    def _anchor_before(side: _Side, name: str, mine: Mapping[str, str], kind: str) -> str | None:
        """The unpaired anchor of family ``kind`` before the offsets and scales that lead to ``name`` (the Conv
        and BiasAdd before the BatchNorm's ``mul_1`` that tf2onnx names its Conv after), if there is one."""
        x = name
        while side.roles[x] == op_roles.AFFINE:
            ups = side.data_inputs(x)
            if len(ups) != 1 or ups[0] in mine:
                return None
            x = ups[0]
        if x == name or side.roles[x] != op_roles.ANCHOR or op_roles.family(side.nodes[x].op_type) != kind:
            return None
        return x

    def _partners(self, side: _Side, name: str, mine: Mapping[str, str]) -> set[str] | None:
        """The partners of the paired tensors an op reads (through its prologue), None if one is unpaired."""
        sources = self._sources(side, name, mine)
        return None if sources is None else {mine[s] for s in sources}

    @staticmethod
    def _prologue(side: _Side, anchor: str, mine: Mapping[str, str]) -> list[str]:
        """The unpaired prologue ops (pads, copies, scales) between an anchor and the paired tensors it reads;
        a walk that does not end at a paired tensor adds nothing."""
        found: list[str] = []
        for x in side.data_inputs(anchor):
            walk: list[str] = []
            while x not in mine and side.prologue(x) and len(ups := side.data_inputs(x)) == 1:
                walk.append(x)
                x = ups[0]
            if x in mine:
                found += walk
        return sorted(set(found), key=side.order.__getitem__)

    @staticmethod
    def _reaches(side: _Side, start: str, targets: set[str], mine: Mapping[str, str]) -> set[str]:
        """Which of ``targets`` a tensor reads, directly or through unpaired tensors (a swish's
        ``x * beta`` before its sigmoid)."""
        hits: set[str] = set()
        frontier, seen = [start], {start}
        while frontier and len(seen) <= _DOWNSTREAM_DEPTH:
            for up in side.data_inputs(frontier.pop()):
                if up in targets:
                    hits.add(up)
                elif up not in mine and up not in seen:
                    seen.add(up)
                    frontier.append(up)
        return hits

    def copies(self, this: _Side, other: _Side, mine: dict[str, str], flip: bool) -> bool:
        """Unpaired copies (identity, cast, quantize, reshape, ...) of paired tensors pair with the partner."""
        found = False
        for node in this.graph.nodes:
            if node.name in mine or this.roles[node.name] != op_roles.COPY:
                continue
            sources = this.data_inputs(node.name)
            if len(sources) == 1 and (source := sources[0]) in mine:
                ref, cand = (mine[source], node.name) if flip else (node.name, mine[source])
                self.add(ref, cand, BY_COPY)
                found = True
        return found

    def _sources(self, side: _Side, name: str, mine: Mapping[str, str]) -> set[str] | None:
        """The paired tensors an op reads, through unpaired prologue ops (pads, copies); None if one is unpaired."""
        found: set[str] = set()
        for x in side.data_inputs(name):
            while x not in mine:
                ups = side.data_inputs(x)
                if not side.prologue(x) or len(ups) != 1:
                    return None
                x = ups[0]
            found.add(x)
        return found or None

    def _chain(self, side: _Side, start: str, mine: Mapping[str, str]) -> list[str]:
        """An anchor and the epilogue after it: each next op its single reader, unpaired, with one data input."""
        chain = [start]
        while True:
            readers = side.data_consumers(chain[-1])
            if len(readers) != 1:
                return chain
            (nxt,) = readers
            if nxt in mine or side.roles[nxt] not in (op_roles.AFFINE, op_roles.ACTIVATION):
                return chain
            chain.append(nxt)

    @staticmethod
    def _points(side: _Side, chain: Sequence[str]) -> list[str]:
        """Where a chain's value can be seen from outside a fusion: before and after each activation, its end."""
        points = []
        for i, name in enumerate(chain):
            last = i == len(chain) - 1
            if last or side.roles[name] == op_roles.ACTIVATION or side.roles[chain[i + 1]] == op_roles.ACTIVATION:
                points.append(name)
        return points

    def _downstream(self, side: _Side, name: str, mine: Mapping[str, str]) -> set[str]:
        """The first paired tensors reading ``name``, through unpaired ones."""
        found: set[str] = set()
        frontier, seen = [name], {name}
        for _ in range(_DOWNSTREAM_DEPTH):
            nxt = []
            for x in frontier:
                for reader in side.data_consumers(x):
                    if reader in mine:
                        found.add(reader)
                    elif reader not in seen:
                        seen.add(reader)
                        nxt.append(reader)
            if not nxt:
                break
            frontier = nxt
        return found

    def fused(self, this: _Side, other: _Side, mine: dict[str, str], theirs: dict[str, str], flip: bool) -> bool:
        """Each unpaired anchor of ``this`` side with the end of the chain it replaced on the ``other``."""
        found = False
        for node in this.graph.nodes:
            name = node.name
            if name in mine or this.roles[name] != op_roles.ANCHOR or name in this.graph.inputs:
                continue
            sources = self._sources(this, name, mine)
            if sources is None:
                continue
            wanted = {mine[s] for s in sources}
            kind = op_roles.family(node.op_type)
            options = []
            for start in self._readers_through_prologue(other, wanted, theirs):
                if op_roles.family(other.nodes[start].op_type) != kind:
                    continue
                if self._sources(other, start, theirs) == wanted:
                    options.append(start)
            if not options:
                continue
            mine_chain = self._chain(this, name, mine)
            chains = {start: self._chain(other, start, theirs) for start in options}
            if len(chains) > 1:  # several alike (branches reading one tensor): the one feeding the same readers
                after = {mine[x] for x in self._downstream(this, mine_chain[-1], mine)}
                chains = {
                    s: ch for s, ch in chains.items() if after and after <= self._downstream(other, ch[-1], theirs)
                }
                if len(chains) != 1:
                    continue
            (other_chain,) = chains.values()
            mine_points, other_points = self._points(this, mine_chain), self._points(other, other_chain)
            mine_before, other_before = self._prologue(this, name, mine), self._prologue(other, other_chain[0], theirs)
            ops = tuple(other.nodes[x].op_type for x in other_chain)
            # where the reference holds the chain: the tensors each pair checks, from the previous pair's on
            ref_chain, begin = other_before + other_chain, 0
            for a, b in list(zip(reversed(mine_points), reversed(other_points)))[::-1]:
                covers: tuple[str, ...] = ()
                if flip:
                    at = ref_chain.index(b) + 1
                    covers, begin = tuple(ref_chain[begin:at]), at
                self.add(*((b, a) if flip else (a, b)), BY_FUSED, ops, covers)
            # what the fusion swallowed on either side, for the summary of unpaired tensors
            (self.fused_c if flip else self.fused_r).update(dict.fromkeys(mine_before + mine_chain, other_chain[-1]))
            (self.fused_r if flip else self.fused_c).update(dict.fromkeys(other_before + other_chain, mine_chain[-1]))
            found = True
        return found

    def _readers_through_prologue(self, side: _Side, tensors: Iterable[str], mine: Mapping[str, str]) -> list[str]:
        """Unpaired tensors reading any of ``tensors`` directly or through unpaired prologue ops."""
        found: list[str] = []
        frontier = list(tensors)
        seen = set(frontier)
        while frontier:
            x = frontier.pop()
            for reader in side.data_consumers(x):
                if reader in mine or reader in seen:
                    continue
                seen.add(reader)
                if side.prologue(reader):
                    frontier.append(reader)
                else:
                    found.append(reader)
        return sorted(found, key=side.order.__getitem__)

    def structural(self) -> None:
        while True:
            found = self.copies(self.c, self.r, self.c2r, True)
            found |= self.copies(self.r, self.c, self.r2c, False)
            found |= self.fused(self.c, self.r, self.c2r, self.r2c, True)
            found |= self.fused(self.r, self.c, self.r2c, self.c2r, False)
            if not found:
                return

    def absorbed(
        self, this: _Side, other: _Side, mine: Mapping[str, str], theirs: Mapping[str, str], flip: bool
    ) -> None:
        """A fused op paired by name with the end of the chain it replaced (TFLite's CONV_2D with a fused ReLU
        is named after the Relu, its MUL with a fused ReLU after a BatchNorm's Relu): the chain's unpaired ops
        before that end, each read by the next alone, reading the partners of what the fused op reads, are
        computed inside it and checked where it ends. An anchor stands for a chain from an anchor of its family."""
        for name, partner in list(mine.items()):
            role = this.roles[name]
            if role not in (op_roles.ANCHOR, op_roles.AFFINE) or name in this.graph.inputs:
                continue
            if other.roles.get(partner) not in (op_roles.AFFINE, op_roles.ACTIVATION):
                continue
            family = op_roles.family(this.nodes[name].op_type)
            chain: list[str] = []  # from the end back
            x = partner
            while len(ups := other.data_inputs(x)) == 1 and ups[0] not in theirs:
                x = ups[0]
                nxt = chain[-1] if chain else partner
                if any(_op(c) != _op(nxt) for c in other.data_consumers(x)):  # read by the next op alone
                    break
                up_role = other.roles[x]
                if (
                    up_role == op_roles.ANCHOR
                    and role == op_roles.ANCHOR
                    and op_roles.family(other.nodes[x].op_type) == family
                ):
                    chain.append(x)
                    break
                if up_role not in (op_roles.AFFINE, op_roles.ACTIVATION):
                    break
                chain.append(x)
            if not chain or (role == op_roles.ANCHOR and other.roles[chain[-1]] != op_roles.ANCHOR):
                continue
            if self._sources(other, chain[-1], theirs) != self._partners(this, name, mine):
                continue
            swallowed = self._prologue(other, chain[-1], theirs) + chain[::-1]
            (self.fused_r if flip else self.fused_c).update(dict.fromkeys(swallowed, name))
            if flip:
                covers = (*swallowed, partner)
                self.pairs = [
                    replace(p, covers=covers) if (p.reference, p.candidate) == (partner, name) else p
                    for p in self.pairs
                ]

    def bypassed(
        self, this: _Side, other: _Side, mine: Mapping[str, str], theirs: Mapping[str, str], flip: bool
    ) -> None:
        """An offset or scale the other side does without (tf2onnx drops a BatchNorm's add of a zero offset):
        an unpaired affine op of ``other`` reading a paired tensor, whose first paired readers (through unpaired
        ops: a swish's ``x * beta``) all pair with tensors reading that tensor's partner directly. Its value
        flows into those pairs, so it is checked there; it is recorded as computed away by that partner."""
        explained = self.fused_r if flip else self.fused_c
        for node in other.graph.nodes:
            x = node.name
            if x in theirs or x in explained or other.roles[x] != op_roles.AFFINE:
                continue
            ups = other.data_inputs(x)
            after = self._downstream(other, x, theirs)
            if len(ups) != 1 or ups[0] not in theirs or not after:
                continue
            partner = theirs[ups[0]]
            if any(c not in mine for c in this.data_consumers(partner)):  # the other side may compute it there
                continue
            if all(partner in this.data_inputs(theirs[r]) for r in after):
                explained[x] = partner

    @staticmethod
    def _between(side: _Side, paired: Collection[str]) -> set[str]:
        """Unpaired tensors computed from paired ones and read, in the end, by paired ones: what a
        conversion fused into the ops around them (a Conv and BiasAdd before the ReLU a TFLite CONV_2D
        is named after)."""
        up: set[str] = set()
        for node in side.graph.nodes:
            if any(x in paired or x in up for x in side.data_inputs(node.name)):
                up.add(node.name)
        down: set[str] = set()
        for node in reversed(side.graph.nodes):
            if any(x in paired or x in down for x in side.data_consumers(node.name)):
                down.add(node.name)
        return (up & down) - set(paired)

    def why(self, side: _Side, name: str, fused: set[str]) -> str:
        if name in side.const:
            return WEIGHT
        if _INSERTED.search(side.nodes[name].graph_name) or _INSERTED.search(name):
            return INSERTED
        if name in fused:
            return FUSED_AWAY
        return NO_COUNTERPART

    def result(self) -> Pairing:
        order = self.r.order
        pairs = sorted(dict.fromkeys(self.pairs), key=lambda p: (order[p.reference], self.c.order.get(p.candidate, 0)))
        paired_r = {p.reference for p in pairs}
        # a tensor a fused op covers but that pairs on its own (a copy paired later) is checked by its own pair
        pairs = [
            replace(p, covers=tuple(x for x in p.covers if x == p.reference or x not in paired_r)) if p.covers else p
            for p in pairs
        ]
        paired_c = {p.candidate for p in pairs}
        only_r = [n.name for n in self.r.graph.nodes if n.name not in paired_r]
        only_c = [n.name for n in self.c.graph.nodes if n.name not in paired_c]
        fused_r = set(self.fused_r) | self._between(self.r, paired_r)
        fused_c = set(self.fused_c) | self._between(self.c, paired_c)
        return Pairing(
            pairs,
            only_r,
            only_c,
            {n: self.why(self.r, n, fused_r) for n in only_r},
            {n: self.why(self.c, n, fused_c) for n in only_c},
            {n: self.fused_r[n] for n in only_r if n in self.fused_r},
            {n: self.fused_c[n] for n in only_c if n in self.fused_c},
            [n.name for n in self.r.graph.nodes],
            [n.name for n in self.c.graph.nodes],
        )


def pair(
    reference: Sequence[Named] | ModelGraph,
    candidate: Sequence[Named] | ModelGraph,
    mapping: Mapping[str, str] | None = None,
) -> Pairing:
    """Pairs the candidate's tensors with the reference's; see the module docstring for the rules."""
    pairer = _Pairer(as_graph(reference), as_graph(candidate))
    pairer.by_names(dict(mapping or {}))
    pairer.by_position(pairer.r.graph.inputs, pairer.c.graph.inputs, BY_INPUT)
    pairer.by_position(pairer.r.graph.outputs, pairer.c.graph.outputs, BY_OUTPUT)
    pairer.refine(pairer.c, pairer.r, pairer.c2r, pairer.r2c, True)
    pairer.refine(pairer.r, pairer.c, pairer.r2c, pairer.c2r, False)
    pairer.structural()
    pairer.outputs_left()
    pairer.absorbed(pairer.c, pairer.r, pairer.c2r, pairer.r2c, True)
    pairer.absorbed(pairer.r, pairer.c, pairer.r2c, pairer.c2r, False)
    pairer.bypassed(pairer.c, pairer.r, pairer.c2r, pairer.r2c, True)
    pairer.bypassed(pairer.r, pairer.c, pairer.r2c, pairer.c2r, False)
    return pairer.result()


def read_map(path: str | Path) -> dict[str, str]:
    """``--map FILE``: tensor name pairs, from a JSON object, a JSON list of pairs, or a two-column CSV, as
    written (see :func:`oriented` for which side comes first)."""
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


def oriented(mapping: Mapping[str, str], reference: Collection[str], candidate: Collection[str]) -> dict[str, str]:
    """A ``--map`` as reference name -> candidate name. A map written the other way round (earlier versions
    wanted the candidate's name first) is turned round when its names say so unambiguously, and
    refused when they fit neither way, so a map is never silently misread."""
    if not mapping:
        return {}
    forward = all(r in reference for r in mapping) and all(c in candidate for c in mapping.values())
    backward = all(c in candidate for c in mapping) and all(r in reference for r in mapping.values())
    if forward:
        return dict(mapping)
    if backward:
        return {r: c for c, r in mapping.items()}
    bad = next((f"{k!r} -> {v!r}" for k, v in mapping.items() if not (k in reference and v in candidate)), "a pair")
    raise FileProblem(
        f"--map pair {bad} does not name a reference tensor and then a candidate tensor",
        "write each pair as REFERENCE_NAME,CANDIDATE_NAME (names as `probe list` shows them)",
    )
