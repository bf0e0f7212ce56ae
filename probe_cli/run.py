"""Stage 5: graph executions computing every requested tensor, and only what they need.

The traced function is pruned once to the requested tensors
(``WrappedFunction.prune``), so fetching an early tensor runs only the ops in
front of it, and each batch is one call of the pruned function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from probe_cli import _tf
from probe_cli.errors import RunError
from probe_cli.feed import Feed
from probe_cli.index import TensorInfo
from probe_cli.trace import TracedModel


def _run_error(exc: Exception) -> RunError:
    """TensorFlow's message without its header and Python stack: the cause and the failing node."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in message.splitlines()]
    cause = next(
        (
            line
            for line in lines
            if line
            and line != "Graph execution error:"
            and not line.startswith(("Detected at node", "File ", "[[", "defined at"))
            and not line.endswith(("(most recent call last):",))
            and not message.splitlines()[lines.index(line)].startswith(("  ", "\t"))
        ),
        lines[0] if lines else type(exc).__name__,
    )
    node = re.search(r"\{\{node ([^}]+)\}\}", message)
    where = f" (at node {node.group(1)})" if node else ""
    return RunError(f"running the model failed: {cause}{where}")


class Runner:
    """The model pruned to ``fetches``; call it with the feeds of one batch."""

    def __init__(self, traced: TracedModel, fetches: Sequence[TensorInfo]) -> None:
        tf = _tf.tf()
        self._tf = tf
        self.traced = traced
        inputs = {traced.placeholders[spec.name].name: spec.name for spec in traced.index.inputs}
        #: fetches that are inputs themselves come straight from the feeds
        self.passthrough = {info.name: inputs[info.graph_name] for info in fetches if info.graph_name in inputs}
        self.computed = [info for info in fetches if info.name not in self.passthrough]
        self.order = [spec.name for spec in traced.index.inputs]
        self.pruned = None
        if self.computed:
            try:
                self.pruned = traced.function.prune(
                    feeds=[traced.placeholders[name] for name in self.order],
                    fetches=[traced.graph_tensors[info.name] for info in self.computed],
                )
            except (tf.errors.OpError, ValueError, TypeError) as exc:
                raise _run_error(exc) from exc

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, np.ndarray]:
        """Values of the fetches (by probe name) for one execution."""
        fed = {feed.name: feed.array for feed in feeds}
        values = {name: np.asarray(fed[source]) for name, source in self.passthrough.items()}
        if self.pruned is None:
            return values
        tf = self._tf
        try:
            results = self.pruned(*[tf.constant(fed[name]) for name in self.order])
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise _run_error(exc) from exc
        for info, result in zip(self.computed, results):
            values[info.name] = result.numpy()
        return values


def run(traced: TracedModel, feeds: Sequence[Feed], fetches: Sequence[TensorInfo]) -> dict[str, np.ndarray]:
    """One execution: values of ``fetches`` by probe name."""
    return Runner(traced, fetches)(feeds)
