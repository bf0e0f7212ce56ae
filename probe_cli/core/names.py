"""probe's tensor names, derived from the name scopes Keras opens while tracing.

A traced graph names layer ``conv1`` of model ``mini_rcnn`` as
``mini_rcnn_1/conv1_1/Relu``: a model-scope prefix and numeric suffixes that
depend on how often a scope was opened. During tracing probe records the
scope each layer call actually got; here every op name is rewritten by
replacing its longest recorded scope with the layer's path (``conv1/Relu``).
Pure string logic, no TensorFlow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Frame:
    """One layer on the call stack: a key telling apart layers with equal names, and which call it is."""

    key: int
    name: str
    call: int


@dataclass(frozen=True)
class LayerCall:
    """One call of one layer during tracing."""

    #: The graph name scope the call ran in, e.g. ``mini_rcnn_1/conv1_1``.
    scope: str
    #: Every layer on the call stack, outermost first, the traced model itself excluded.
    stack: tuple[Frame, ...]


@dataclass(frozen=True)
class Owner:
    """Where an op lives: the display prefix replacing its scope, and its layer's name."""

    prefix: str
    layer: str | None


def call_owners(calls: Sequence[LayerCall]) -> dict[str, Owner]:
    """Maps each recorded scope to its display prefix.

    A layer called more than once (a shared layer) gets ``call_<k>`` after its
    name, so each call's tensors are distinct and stably named
    (``shared/call_1/MatMul``), while the owning layer stays ``shared``.
    """
    times = Counter(c.stack[-1].key for c in calls if c.stack)
    owners: dict[str, Owner] = {}
    for c in calls:
        parts = []
        for frame in c.stack:
            parts.append(frame.name)
            if times[frame.key] > 1:
                parts.append(f"call_{frame.call}")
        layer = "/".join(frame.name for frame in c.stack) or None
        owners.setdefault(c.scope, Owner("/".join(parts), layer))
    return owners


def display_name(op_name: str, owners: dict[str, Owner]) -> tuple[str, str | None]:
    """``(probe name, owning layer)`` of an op; ops outside every layer keep their graph name."""
    parts = op_name.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        owner = owners.get("/".join(parts[:cut]))
        if owner is not None:
            rest = "/".join(parts[cut:])
            return (f"{owner.prefix}/{rest}" if owner.prefix else rest), owner.layer
    return op_name, None


def unique_names(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """graph name -> display name, falling back to the graph name when two ops would share one.

    Graph names are unique, so an op falling back to its graph name only clashes
    with an earlier op *displayed* under that name; that op falls back in turn.
    """
    result: dict[str, str] = {}
    holder: dict[str, str] = {}  # name in use -> graph name of the op using it
    for graph_name, name in pairs:
        if name in holder:
            name = graph_name
        while name in holder:
            displaced = holder.pop(name)
            result[graph_name], holder[name] = name, graph_name
            graph_name, name = displaced, displaced
        holder[name] = graph_name
        result[graph_name] = name
    return result
