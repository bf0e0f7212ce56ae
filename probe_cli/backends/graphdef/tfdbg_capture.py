"""Values of ops inside while loops that freezing lowered into a GraphDef, from TF1's debugger."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from probe_cli.backends import tfenv
from probe_cli.backends.base import TracedModel
from probe_cli.core.errors import RunError
from probe_cli.core.types import Execution, Feed, TensorInfo


class LoweredLoopCapturer:
    """Values of ops inside lowered while loops, one per execution, from TF1's debugger.

    A Session cannot fetch such an op, but tfdbg v1 can watch it: with
    ``debug_utils.watch_graph`` the runtime writes every execution of the
    watched tensors to a dump directory, each with a timestamp. The capture
    graph runs every loop one iteration at a time (``parallel_iterations=1``),
    so that order is the iteration order; executions are numbered 0, 1, ...
    The graph runs once per batch, driven by fetching the model's outputs.
    """

    def __init__(self, traced: TracedModel, infos: Sequence[TensorInfo]) -> None:
        tf = tfenv.tf()
        self.infos = infos
        # One iteration at a time, so the order executions are recorded in is the iteration order.
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(traced.loaded.graph_def)
        for node in graph_def.node:
            if node.op in ("Enter", "RefEnter") and "parallel_iterations" in node.attr:
                node.attr["parallel_iterations"].i = 1
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name="")
        self.outputs = [traced.index.tensor(name).graph_name for name in traced.index.outputs]
        self.feeds = {spec.name: spec.graph_name for spec in traced.index.inputs}
        names = sorted({info.graph_name.rpartition(":")[0] for info in infos})
        self.allow = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        self.session = tf.compat.v1.Session(graph=self.graph, config=tfenv.session_config())

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, Any]:
        from tensorflow.python.debug.lib import debug_data, debug_utils

        tf = tfenv.tf()
        root = tempfile.mkdtemp(prefix="probe-tfdbg-")
        try:
            options = tf.compat.v1.RunOptions()
            debug_utils.watch_graph(
                options, self.graph, debug_urls=f"file://{root}", node_name_regex_allowlist=self.allow
            )
            try:
                self.session.run(self.outputs, feed_dict={self.feeds[f.name]: f.array for f in feeds}, options=options)
            except tf.errors.OpError as exc:
                raise RunError.from_exception(exc) from None
            dump = debug_data.DebugDumpDir(root)
            result = {}
            for info in self.infos:
                op, _, slot = info.graph_name.rpartition(":")
                try:
                    data = dump.watch_key_to_data(f"{op}:{slot}:DebugIdentity")
                except ValueError:  # never executed (a branch not taken)
                    data = []
                data = sorted(data, key=lambda d: d.timestamp)
                result[info.name] = [Execution(k, (k,), np.asarray(d.get_tensor())) for k, d in enumerate(data)]
            return result
        finally:
            shutil.rmtree(root, ignore_errors=True)
