"""Values of tensors inside loop bodies and branches of a Keras model, one per execution.

Capturing: the model's forward function is traced again
in a ``tf.function`` with an op callback (the mechanism tfdbg v2 uses) that,
for each requested op inside a function graph, adds a stateful
``tf.numpy_function`` recording the op's outputs together with the loop
counters of every enclosing loop. Automatic control dependencies make the
recorder run whenever the op runs; one execution of the re-traced function
then yields every value, sorted by those counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe_cli.backends import tfenv
from probe_cli.backends.base import TracedModel
from probe_cli.backends.keras.tracer import untouched
from probe_cli.backends.tfgraph import Runner, to_numpy
from probe_cli.core.errors import RunError
from probe_cli.core.types import Execution, Feed, Region, TensorInfo

#: Name scope of the recording ops, at the root of each function graph, so no model op is renamed.
_SCOPE = "probe_capture"


def _strip_uid(function_name: str) -> str:
    """``functional_1_ROI_1_map_while_body_105`` -> ``..._body``: the uid differs between traces."""
    return re.sub(r"_\d+$", "", function_name)


def capture_key(tensor: Any) -> tuple[str, str]:
    """What identifies a body op across two traces of the same model: its function graph and op name."""
    return _strip_uid(tensor.graph.name), tensor.op.name


def _loop_counters(graph: Any) -> list[Any]:
    """Loop counter of every loop enclosing ``graph`` (itself included), outermost first."""
    from tensorflow.python.ops import control_flow_v2_func_graphs as cfg

    counters = []
    while graph is not None:
        if isinstance(graph, (cfg.WhileBodyFuncGraph, cfg.WhileCondFuncGraph)):
            counters.append(graph.inputs[0])  # while_v2 passes the loop counter first
        graph = getattr(graph, "outer_graph", None)
    return counters[::-1]


@dataclass
class _Recording:
    """Values recorded during one execution, in execution order: (path, values of the requested slots)."""

    rows: dict[tuple[str, str], list[tuple[tuple[int, ...], list[np.ndarray]]]] = field(default_factory=dict)


class Capturer:
    """The model re-traced with recorders on the requested body tensors; call it with one batch's feeds.

    Top-level tensors among ``infos`` come back as a single ``Execution(0, (), value)``,
    so a mixed request works through one object. When body tensors are requested too,
    the re-traced function also returns the top-level ones it holds under the same op
    name and type, so one execution computes everything; any other top-level tensor
    is computed by :class:`probe_cli.backends.tfgraph.Runner` (a second execution on the same feeds).
    Like the Runner, it runs with Grappler off (:func:`~probe_cli.backends.tfenv.grappler_off`).
    """

    def __init__(self, traced: TracedModel, infos: Sequence[TensorInfo]) -> None:
        tf = tfenv.tf()
        self._tf = tf
        self.traced = traced
        self.body = [info for info in infos if info.region is Region.BODY]
        self.top = [info for info in infos if info.region is Region.TOP]
        #: top-level tensors the re-traced function returns beside the model's outputs
        self._returned: list[TensorInfo] = []
        self._runner = None
        self._function = None
        self._recording = _Recording()
        #: capture key -> output slots wanted
        self._wanted: dict[tuple[str, str], list[int]] = {}
        #: probe name -> (capture key, position among the recorded slots of that op)
        self._where: dict[str, tuple[tuple[str, str], int]] = {}
        if self.body:
            self._plan()
            self._function = self._retrace()
        returned = {info.name for info in self._returned}
        rest = [info for info in self.top if info.name not in returned]
        if rest:
            self._runner = Runner(traced, rest)

    def _plan(self) -> None:
        for info in self.body:
            tensor = self.traced.graph_tensors.get(info.name)
            if tensor is None:
                raise RunError(f"cannot capture {info.name!r}: it is not a tensor of the traced model")
            key = capture_key(tensor)
            slots = self._wanted.setdefault(key, [])
            if tensor.value_index not in slots:
                slots.append(tensor.value_index)
        for slots in self._wanted.values():
            slots.sort()
        for info in self.body:
            tensor = self.traced.graph_tensors[info.name]
            key = capture_key(tensor)
            self._where[info.name] = (key, self._wanted[key].index(tensor.value_index))

    def _retrace(self) -> Any:
        """Traces the forward function again with the recording op callback installed."""
        from tensorflow.python.framework import op_callbacks
        from tensorflow.python.ops import control_flow_v2_func_graphs as cfg

        tf = self._tf
        forward = getattr(self.traced, "forward", None)
        signature = getattr(self.traced, "signature", None)
        if forward is None or signature is None:
            name = self.body[0].name
            raise RunError(
                f"cannot capture {name!r}: values inside loops and branches need a Keras model to re-trace, "
                f"and this {self.traced.loaded.model_format} model has none"
            )
        function_types = (cfg.WhileBodyFuncGraph, cfg.WhileCondFuncGraph, cfg.CondBranchFuncGraph)
        seen: dict[tuple[str, str], int] = {}
        recording = self._recording

        def callback(
            op_type: str, inputs: Any, attrs: Any, outputs: Any, op_name: str | None = None, graph: Any = None
        ) -> None:
            if not isinstance(graph, function_types) or not outputs:
                return None
            key = capture_key(outputs[0])
            slots = self._wanted.get(key)
            if slots is None:
                return None
            seen[key] = seen.get(key, 0) + 1
            counters = _loop_counters(graph)
            record = _recorder(recording, key, len(counters))
            with graph.name_scope(None), graph.name_scope(_SCOPE):
                tf.numpy_function(record, [*counters, *(outputs[s] for s in slots)], tf.int32, stateful=True)
            return None

        # Top-level tensors of the first trace, found again by name and op type (placeholders left to the
        # Runner: a captured array's placeholder may be named differently in a new trace).
        wanted_top: dict[str, tuple[TensorInfo, str]] = {}
        for info in self.top:
            tensor = self.traced.graph_tensors.get(info.name)
            if tensor is not None and tensor.op.type != "Placeholder":
                wanted_top[tensor.name] = (info, _kind(tensor.op.type))
        returned = self._returned

        def forward_and_top(*xs: Any) -> Any:
            outputs = forward(*xs)
            graph = tf.compat.v1.get_default_graph()
            found = []
            for name, (info, op_type) in wanted_top.items():
                try:
                    tensor = graph.get_tensor_by_name(name)
                except (KeyError, ValueError):
                    continue
                if _kind(tensor.op.type) == op_type:
                    returned.append(info)
                    found.append(tensor)
            return outputs, found

        op_callbacks.add_op_callback(callback)
        try:
            with untouched(self.traced.loaded.keras_model):
                function = tf.function(forward_and_top, autograph=False).get_concrete_function(*signature)
        except Exception as exc:  # noqa: BLE001 - tracing runs arbitrary layer code
            raise RunError(f"cannot re-trace the model to capture loop values: {str(exc).splitlines()[0]}") from exc
        finally:
            op_callbacks.remove_op_callback(callback)
        for info in self.body:
            key = self._where[info.name][0]
            if seen.get(key, 0) != 1:
                why = "was not created" if not seen.get(key) else "was created more than once"
                raise RunError(f"cannot capture {info.name!r}: its op {key[1]!r} {why} when the model was re-traced")
        return function

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, list[Execution]]:
        """Every value of each requested tensor for one batch, sorted by loop counters (execution order on ties)."""
        tf = self._tf
        result: dict[str, list[Execution]] = {}
        if self._runner is not None:
            for name, value in self._runner(feeds).items():
                result[name] = [Execution(0, (), value)]
        if self._function is None:
            return result
        fed = {feed.name: feed.array for feed in feeds}
        order = [spec.name for spec in self.traced.index.inputs]
        self._recording.rows.clear()
        try:
            with tfenv.grappler_off():
                _, top = self._function(*[tf.constant(fed[name]) for name in order])
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            raise RunError.from_exception(exc) from exc
        for info, value in zip(self._returned, top):
            result[info.name] = [Execution(0, (), to_numpy(value))]
        for info in self.body:
            key, position = self._where[info.name]
            rows = sorted(self._recording.rows.get(key, []), key=lambda row: row[0])  # stable: ties keep their order
            result[info.name] = [Execution(path[-1] if path else 0, path, values[position]) for path, values in rows]
        return result


def _kind(op_type: str) -> str:
    """An op type up to statefulness: a loop whose body records values becomes a While, not a StatelessWhile."""
    return op_type.removeprefix("Stateless")


def _recorder(recording: _Recording, key: tuple[str, str], depth: int) -> Callable[..., np.int32]:
    """The Python side of one recording op: stores (loop counters, copies of the values)."""

    def record(*args: Any) -> np.int32:
        path = tuple(int(a) for a in args[:depth])
        values = [np.array(a, copy=True) for a in args[depth:]]
        recording.rows.setdefault(key, []).append((path, values))
        return np.int32(0)

    return record
