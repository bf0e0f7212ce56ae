"""Stage 5: one graph execution computing every requested tensor, and only what they need.

The traced function is pruned to the requested tensors (``WrappedFunction.prune``),
so fetching an early tensor runs only the ops in front of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe_cli import _tf
from probe_cli.errors import RunError
from probe_cli.feed import Feed
from probe_cli.index import TensorInfo
from probe_cli.trace import TracedModel


def run(traced: TracedModel, feeds: Sequence[Feed], fetches: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """Values of ``fetches`` (by probe name) for one execution on ``feeds``."""
    tf = _tf.tf()
    fed = {feed.name: feed.array for feed in feeds}
    by_placeholder = {traced.placeholders[name].name: name for name in fed}
    values: dict[str, np.ndarray] = {}
    computed = []
    for info in fetches:
        if info.graph_name in by_placeholder:
            values[info.name] = fed[by_placeholder[info.graph_name]]
        else:
            computed.append(info)
    if not computed:
        return values
    placeholders = [traced.placeholders[feed.name] for feed in feeds]
    try:
        pruned = traced.function.prune(
            feeds=placeholders, fetches=[traced.graph_tensors[info.name] for info in computed]
        )
        results = pruned(*[tf.constant(feed.array) for feed in feeds])
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        raise RunError(f"running the model failed: {message.strip().splitlines()[0]}") from exc
    for info, result in zip(computed, results):
        values[info.name] = result.numpy()
    return values
