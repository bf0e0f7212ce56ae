"""Keras names for the ops of a graph exported from a Keras model (a SavedModel, a frozen ``.pb``).

Exporting wraps the traced model in call ops and keeps the scopes Keras opened while
tracing: layer ``conv1`` of model ``cnn`` becomes ``StatefulPartitionedCall/cnn_1/conv1_1/Relu``,
where probe's Keras backend names it ``conv1/Relu``. Here the call wrappers and the model scope
are dropped and the layer scope's uniquifying suffix removed, so both forms share a name. When
the file lists its layers (``keras_metadata.pb`` of tf.keras 2), only scopes of those layers are
renamed. Anything that does not have that shape keeps its graph name. Pure string logic.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable

#: Ops that call a function; freezing keeps them as scopes of the function's ops.
CALL_WRAPPERS = ("StatefulPartitionedCall", "PartitionedCall")
_SUFFIX = re.compile(r"^(.+?)_(\d+)$")


def strip_wrappers(name: str) -> str:
    """``StatefulPartitionedCall/StatefulPartitionedCall/m_1/d_1/Relu`` -> ``m_1/d_1/Relu``."""
    parts = name.split("/")
    cut = 0
    while cut < len(parts) - 1 and parts[cut] in CALL_WRAPPERS:
        cut += 1
    return "/".join(parts[cut:])


def unsuffixed(component: str) -> str:
    """``conv1_1`` -> ``conv1``: a scope without the counter TensorFlow adds to reused names."""
    match = _SUFFIX.match(component)
    return match.group(1) if match else component


def model_scope(op_names: Iterable[str]) -> str | None:
    """The scope the model was called in: the most common first scope with a counter (``cnn_1``)."""
    parts = (strip_wrappers(name).split("/") for name in op_names)
    firsts = Counter(p[0] for p in parts if len(p) >= 3 and _SUFFIX.match(p[0]))
    return firsts.most_common(1)[0][0] if firsts else None


def layer_of(component: str, layers: Collection[str] | None) -> str | None:
    """The layer a scope was opened by: with the file's layer names, only those; else any counted scope."""
    if layers is not None:
        if component in layers:
            return component
        base = unsuffixed(component)
        return base if base != component and base in layers else None
    base = unsuffixed(component)
    return base if base != component else None


def keras_names(op_names: Iterable[str], layers: Collection[str] | None = None) -> dict[str, tuple[str, str]]:
    """graph op name -> (probe op name, layer) for each op inside a layer scope of the model scope."""
    names = list(op_names)
    scope = model_scope(names)
    if scope is None:
        return {}
    found: dict[str, tuple[str, str]] = {}
    for name in names:
        parts = strip_wrappers(name).split("/")
        if len(parts) < 3 or parts[0] != scope:
            continue
        layer = layer_of(parts[1], layers)
        if layer is not None:
            found[name] = ("/".join([layer, *parts[2:]]), layer)
    return found


def pairing_key(graph_name: str) -> str:
    """A graph tensor name with call wrappers, the model scope and scope counters removed, for pairing
    tensors of two forms of one model when their probe names differ (``cnn_1/conv1_1/Relu:0`` and
    ``StatefulPartitionedCall/cnn_1/conv1_1/Relu:0`` -> ``conv1/Relu:0``). The op's own name keeps
    its counter (``add_1`` is not ``add``)."""
    parts = strip_wrappers(graph_name).split("/")
    if len(parts) >= 3 and _SUFFIX.match(parts[0]):
        parts = parts[1:]
    return "/".join([*(unsuffixed(p) for p in parts[:-1]), parts[-1]])
