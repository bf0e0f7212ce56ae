"""Tensors inside loop bodies and branches: listing them under stable names.

Control flow v2 keeps the ops of a ``tf.while_loop``/``tf.map_fn`` body (and of
Keras' recurrent layers), of ``tf.cond`` branches and of ``tf.switch_case``
branches in function graphs, not in ``graph.get_operations()``, and a body op
runs once per iteration, so it cannot be pruned to and fetched like a
top-level tensor.

Listing (:func:`expand`): every value tensor reachable from a function
graph's outputs is named after the control-flow op that runs it::

    <probe name of While op>/body/<op path inside the loop>:<k>   (also /cond/)
    <probe name of If op>/then/...  /else/...
    <probe name of Case op>/branch_<i>/...

recursively for nested loops. The op path is the op's graph name relative to
the control-flow op's scope, with the scopes of layers called inside the body
(an LSTM's cell) replaced by the layer's name, so no tracing suffix leaks in.
Function arguments (Placeholders) are not listed: each is an outer tensor or
the value a listed body op produced in the previous iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probe_cli.core.names import Owner

WHILE_TYPES = frozenset({"While", "StatelessWhile"})
IF_TYPES = frozenset({"If", "StatelessIf"})
CASE_TYPES = frozenset({"Case", "StatelessCase"})
CONTROL_FLOW_TYPES = WHILE_TYPES | IF_TYPES | CASE_TYPES

#: Tensors of these dtypes are handles, not values: nothing to dump.
_UNFETCHABLE = {"resource", "variant"}


@dataclass(frozen=True)
class BodyOp:
    """One op inside a function graph of a control-flow op, under probe's name."""

    #: Unique raw name: the control-flow op's graph name, the function kind, the op's raw path.
    key: str
    #: probe op name (before :func:`probe_cli.names.unique_names`)
    name: str
    layer: str | None
    #: ``"loop <path>"`` or ``"branch <path>"`` (see :attr:`TensorInfo.context`)
    context: str
    #: the op, in its function graph
    op: Any


def functions_of(op: Any) -> list[tuple[str, Any]]:
    """``(kind, function graph)`` pairs a control-flow op runs: cond and body, then and else, branch_<i>.

    Empty when the function graphs are unavailable (e.g. ops imported from a GraphDef).
    """
    attrs = op.node_def.attr
    if op.type in WHILE_TYPES:
        names = [("cond", attrs["cond"].func.name), ("body", attrs["body"].func.name)]
    elif op.type in IF_TYPES:
        names = [("then", attrs["then_branch"].func.name), ("else", attrs["else_branch"].func.name)]
    elif op.type in CASE_TYPES:
        names = [(f"branch_{i}", f.name) for i, f in enumerate(attrs["branches"].list.func)]
    else:
        return []
    result = []
    for kind, name in names:
        graph = _function_graph(op.graph, name)
        if graph is None:
            return []
        result.append((kind, graph))
    return result


def _function_graph(graph: Any, name: str) -> Any | None:
    """The FuncGraph a function name refers to, looked up from the op's graph outwards."""
    while graph is not None:
        function = graph._get_function(name)  # noqa: SLF001 - the only way from a name to its FuncGraph
        if function is not None:
            return getattr(function, "graph", None)
        graph = getattr(graph, "outer_graph", None)
    return None


def _reachable_in(graph: Any) -> list[Any]:
    """Ops of a function graph its outputs depend on, in creation order; arguments left out."""
    seen: set[Any] = set()
    stack = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    while stack:
        op = stack.pop()
        if op in seen or op.graph is not graph:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return [op for op in graph.get_operations() if op in seen and op.type != "Placeholder"]


def _owner_of(name: str, owners: Mapping[str, Owner]) -> Owner | None:
    """The layer call whose scope is the longest prefix of ``name``."""
    parts = name.split("/")
    for cut in range(len(parts), 0, -1):
        owner = owners.get("/".join(parts[:cut]))
        if owner is not None:
            return owner
    return None


def _relative(raw: str, base: str, owners: Mapping[str, Owner]) -> tuple[str, str | None]:
    """An op's path below the control-flow op ``base``, and the layer called inside the body owning it.

    Scopes of layers called inside the body (an RNN's cell, ``lstm_cell_1``) are
    replaced by the layer's path relative to the control-flow op's layer (``lstm_cell``).
    """
    if not raw.startswith(base + "/"):
        return raw, None
    parts = raw[len(base) + 1 :].split("/")
    outer = _owner_of(base, owners)
    for cut in range(len(parts) - 1, 0, -1):
        owner = owners.get(base + "/" + "/".join(parts[:cut]))
        if owner is None:
            continue
        prefix = owner.prefix
        if outer is not None and outer.prefix and prefix.startswith(outer.prefix + "/"):
            prefix = prefix[len(outer.prefix) + 1 :]
        return "/".join([prefix, *parts[cut:]]), owner.layer
    return "/".join(parts), None


def expand(op: Any, name: str, layer: str | None, owners: Mapping[str, Owner] | None = None) -> list[BodyOp]:
    """Every op inside the function graphs of control-flow op ``op`` (probe name ``name``), recursively.

    Order: for a While, its cond graph then its body graph; for an If, then then
    else; for a Case, branch 0, 1, ...; within a graph, creation (topological)
    order, each nested control-flow op's own functions listed right before it.
    ``layer`` is the control-flow op's owning layer; an op inside a layer called
    in the body (an RNN cell) is attributed to that layer instead.
    """
    owners = owners or {}
    result: list[BodyOp] = []
    kind = "loop" if op.type in WHILE_TYPES else "branch"
    for part, graph in functions_of(op):
        path = f"{name}/{part}"
        for inner in _reachable_in(graph):
            rel, inner_layer = _relative(inner.name, op.name, owners)
            raw = inner.name.removeprefix(op.name + "/")
            entry = BodyOp(
                key=f"{op.name}/{part}/{raw}",
                name=f"{path}/{rel}",
                layer=inner_layer or layer,
                context=f"{kind} {path}",
                op=inner,
            )
            if inner.type in CONTROL_FLOW_TYPES:
                result.extend(expand(inner, entry.name, entry.layer, owners))
            result.append(entry)
    return result


def value_outputs(op: Any) -> list[Any]:
    """The outputs of an op worth listing (handles left out)."""
    return [t for t in op.outputs if t.dtype.name not in _UNFETCHABLE]
