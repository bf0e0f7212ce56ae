"""Graph helpers every TensorFlow backend shares: walk, index, prune and run a traced graph.

The traced function is pruned once to the requested tensors (a new function
made of the ops they need), so fetching an early tensor runs only the ops in
front of it, and each batch is one call of the pruned function.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from probe_cli.backends import control_flow, tfenv
from probe_cli.backends.base import TracedModel
from probe_cli.core.distribution import Distribution, Moments, of_array
from probe_cli.core.errors import RunError
from probe_cli.core.names import Owner, unique_names
from probe_cli.core.types import Feed, ModelIndex, Region, Shape, TensorInfo


def shape_of(tensor: Any) -> Shape | None:
    if tensor.shape.rank is None:
        return None
    return tuple(tensor.shape.as_list())


def reachable_ops(outputs: Sequence[Any], stop: Collection[str] = ()) -> set[Any]:
    """Every op the outputs depend on; each op visited once, no depth cap.

    Ops named in ``stop`` (fed or captured tensors' ops) are neither included nor walked through.
    """
    seen: set[Any] = set()
    stack = [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen or op.name in stop:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def index_graph(
    graph: Any,
    outputs: list[Any],
    name_of: Callable[[Any], tuple[str, str | None]],
    model_format: str,
    owners: Mapping[str, Owner] | None = None,
) -> tuple[ModelIndex, dict[str, Any]]:
    """Every value tensor the outputs depend on, in graph (creation, hence topological) order.

    With ``owners`` (Keras models), the ops inside loop bodies and branches are
    listed too (:func:`probe_cli.control_flow.expand`), right before the outputs
    of the While/If/Case op that runs them.
    """
    reachable = reachable_ops(outputs)
    ops = [op for op in graph.get_operations() if op in reachable]
    inner: dict[Any, list[control_flow.BodyOp]] = {}
    if owners is not None:
        for op in ops:
            if op.type in control_flow.CONTROL_FLOW_TYPES:
                name, layer = name_of(op)
                inner[op] = control_flow.expand(op, name, layer, owners)
    pairs = [(op.name, name_of(op)[0]) for op in ops]
    pairs += [(entry.key, entry.name) for entries in inner.values() for entry in entries]
    op_names = unique_names(pairs)
    tensors: list[TensorInfo] = []
    graph_tensors: dict[str, Any] = {}
    for op in ops:
        base = op_names[op.name]
        layer = name_of(op)[1]
        for entry in inner.get(op, ()):
            for tensor in control_flow.value_outputs(entry.op):
                name = f"{op_names[entry.key]}:{tensor.value_index}"
                tensors.append(
                    TensorInfo(
                        name=name,
                        graph_name=f"{entry.key}:{tensor.value_index}",
                        op_type=entry.op.type,
                        dtype=tensor.dtype.name,
                        shape=shape_of(tensor),
                        layer=entry.layer,
                        order=len(tensors),
                        context=entry.context,
                        region=Region.BODY,
                    )
                )
                graph_tensors[name] = tensor
        for tensor in control_flow.value_outputs(op):
            name = f"{base}:{tensor.value_index}"
            tensors.append(
                TensorInfo(
                    name=name,
                    graph_name=tensor.name,
                    op_type=op.type,
                    dtype=tensor.dtype.name,
                    shape=shape_of(tensor),
                    layer=layer,
                    order=len(tensors),
                )
            )
            graph_tensors[name] = tensor
    by_graph = {t.graph_name: t.name for t in tensors}
    index = ModelIndex(
        model_format=model_format,
        inputs=(),
        outputs=tuple(by_graph[t.name] for t in outputs if t.name in by_graph),
        layers=(),
        tensors=tuple(tensors),
    )
    return index, graph_tensors


def to_numpy(tensor: object) -> np.ndarray:
    """A read-only view of an eager tensor's buffer: ``.numpy()`` copies, and a full dump is gigabytes."""
    try:
        return np.asarray(memoryview(tensor))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):  # strings and other non-buffer dtypes
        return tensor.numpy()  # type: ignore[attr-defined]


def prune(
    graph: Any,
    feeds: Sequence[Any],
    fetches: Sequence[str],
    reduce: Callable[[list[Any], Any], list[Any]] | None = None,
    emit: Callable[[Any, Sequence[Any]], list[str]] | None = None,
) -> Any:
    """A function of ``feeds`` computing ``fetches``: the ops they need, imported from ``graph``'s GraphDef.

    ``WrappedFunction.prune`` does the same by copying op by op in Python
    (``lift_to_graph``), 0.6 s for ResNet50's layer outputs; serializing the
    graph, walking its NodeDefs and importing the subgraph in C++ takes a third
    of that. Feeds and captured variables are mapped onto the new function's
    arguments and captures, so nothing is frozen; ops keep the graph's names
    (unless one clashes with an argument's, which only error messages show).
    With ``reduce``, the function takes one more argument (float64 ``[len(fetches), 2]``)
    and returns ``reduce(values, that argument)`` instead of the values. With ``emit``, called with
    the subgraph's GraphDef and the fetched graph tensors, the function returns the tensors
    named in the list it returns, whose NodeDefs it added to that GraphDef: the same ops as
    ``reduce`` would create, at a fraction of the cost of creating ops in Python.
    """
    tf = tfenv.tf()
    graph_def = graph.as_graph_def()
    captured = {internal.op.name: external for external, internal in graph.captures}
    stop = {tensor.op.name for tensor in feeds} | captured.keys()
    keep = {op.name for op in reachable_ops([graph.get_tensor_by_name(name) for name in fetches], stop)}
    sub = tf.compat.v1.GraphDef()
    sub.versions.CopyFrom(graph_def.versions)
    sub.library.CopyFrom(graph_def.library)
    for node in graph_def.node:  # graph order
        if node.name in keep:
            copy = sub.node.add()
            copy.CopyFrom(node)
            if "_class" in copy.attr and any(
                c.decode().removeprefix("loc:@") not in keep for c in copy.attr["_class"].list.s
            ):
                del copy.attr["_class"]  # colocation with an op left out would fail the import
    returned = None if emit is None else emit(sub, [graph.get_tensor_by_name(name) for name in fetches])
    data_used = {source.split(":", 1)[0] for node in sub.node for source in node.input if source[0] != "^"}
    control_used = {source[1:] for node in sub.node for source in node.input if source[0] == "^"}
    fetched_captures = {name.rsplit(":", 1)[0] for name in fetches} & captured.keys()
    if returned is not None:  # the emitted nodes read any fetched capture (data_used maps it)
        fetches, fetched_captures = returned, set()
    imported = [name for name in fetches if name.rsplit(":", 1)[0] not in fetched_captures]

    def body(*args: Any) -> Any:
        inner = tf.compat.v1.get_default_graph()
        sources = {feed.op.name: (feed.name, arg) for feed, arg in zip(feeds, args)}
        for name, external in captured.items():
            if name in data_used or name in control_used or name in fetched_captures:
                sources[name] = (f"{name}:0", inner.capture(external))
        input_map = {}
        for name, (tensor_name, tensor) in sources.items():
            if name in data_used:
                input_map[tensor_name] = tensor
            if name in control_used:
                input_map[f"^{name}"] = tensor
        values = iter(tf.import_graph_def(sub, input_map=input_map, return_elements=imported, name=""))
        # a captured tensor (a constant or array a layer holds) is the capture itself
        ops = [name.rsplit(":", 1)[0] for name in fetches]
        fetched = [sources[op][1] if op in fetched_captures else next(values) for op in ops]
        return fetched if reduce is None else reduce(fetched, args[len(feeds)])

    specs = [tf.TensorSpec(feed.shape, feed.dtype) for feed in feeds]
    if reduce is not None:
        specs.append(tf.TensorSpec((len(fetches), 2), tf.float64))
    return tf.compat.v1.wrap_function(body, specs)


def op_inputs(traced: TracedModel, info: TensorInfo) -> list[TensorInfo]:
    """The listed tensors feeding the graph op that produced ``info`` (handles and the like omitted)."""
    by_graph = traced.index.by_graph_name
    op = traced.graph_tensors[info.name].op
    return [by_graph[t.name] for t in op.inputs if t.name in by_graph]


def _pruned(traced: TracedModel, fetches: Sequence[TensorInfo], reduce: Any = None, emit: Any = None) -> Any:
    """:func:`prune` of the traced model to ``fetches`` (fed its inputs in index order), failures as RunError."""
    try:
        return prune(
            traced.function.graph,
            [traced.placeholders[spec.name] for spec in traced.index.inputs],
            [traced.graph_tensors[info.name].name for info in fetches],
            reduce,
            emit=emit,
        )
    except Exception as exc:  # noqa: BLE001 - importing a graph raises ValueError, OpError and others
        raise RunError.from_exception(exc) from exc


def _execute(function: Any, feeds: Sequence[Feed], order: Sequence[str], *extra: Any) -> list[Any]:
    """One call of a pruned function on one batch's feeds (in ``order``), Grappler off, failures as RunError."""
    tf = tfenv.tf()
    fed = {feed.name: feed.array for feed in feeds}
    try:
        with tfenv.grappler_off():
            args = [tf.constant(fed[name]) for name in order] + [tf.constant(value) for value in extra]
            return list(tf.nest.flatten(function(*args)))
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        raise RunError.from_exception(exc) from exc


class Runner:
    """The model pruned to ``fetches``; call it with the feeds of one batch."""

    def __init__(self, traced: TracedModel, fetches: Sequence[TensorInfo]) -> None:
        self.traced = traced
        inputs = {traced.placeholders[spec.name].name: spec.name for spec in traced.index.inputs}
        #: fetches that are inputs themselves come straight from the feeds
        self.passthrough = {info.name: inputs[info.graph_name] for info in fetches if info.graph_name in inputs}
        self.computed = [info for info in fetches if info.name not in self.passthrough]
        self.order = [spec.name for spec in traced.index.inputs]
        self.function = None
        #: position of each computed fetch among the function's flat outputs
        self.positions = list(range(len(self.computed)))
        if not self.computed:
            return
        outputs = [t.name for t in getattr(traced.function, "outputs", [])]
        function_inputs = [t.name for t in getattr(traced.function, "inputs", [])]
        placeholders = [traced.placeholders[name].name for name in self.order]
        wanted = [info.graph_name for info in self.computed]
        if function_inputs[: len(placeholders)] == placeholders and set(wanted) <= set(outputs):
            # Only model outputs requested: the traced function already computes exactly those.
            self.function = traced.function
            self.positions = [outputs.index(name) for name in wanted]
            return
        self.function = _pruned(traced, self.computed)

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, np.ndarray]:
        """Values of the fetches (by probe name) for one execution."""
        fed = {feed.name: feed.array for feed in feeds}
        values = {name: np.asarray(fed[source]) for name, source in self.passthrough.items()}
        if self.function is None:
            return values
        results = _execute(self.function, feeds, self.order)
        for info, position in zip(self.computed, self.positions):
            values[info.name] = to_numpy(results[position])
        return values


#: Per tensor, what :func:`_distribution_ops` returns, in order.
_DISTRIBUTION_FIELDS = ("size", "nan", "inf", "zeros", "count", "low", "high", "mean", "m2", "range", "histogram",
                        "negative", "neg_inf", "ch_count", "ch_low", "ch_high", "ch_mean", "ch_m2")  # fmt: skip
_CHANNEL_FIELDS = _DISTRIBUTION_FIELDS[_DISTRIBUTION_FIELDS.index("ch_count") :]


def _distribution_ops(value: Any, hist_range: Any, bins: int) -> list[Any]:
    """The reductions of :func:`probe_cli.core.distribution.of_array`, as graph ops: only these leave TensorFlow.

    The values are read as a ``[rows, channels]`` matrix (a reshape, no copy) and reduced, where a
    kernel allows, without materializing anything their size: a MatMul with a row of ones sums the
    channels, a MaxPool as tall as the matrix takes their maxima, FusedBatchNorm's training
    statistics give their squared deviations (docs/performance.md has the measurements). Values
    with a NaN or Inf, and the odd shapes those kernels refuse, take a slower masked path; values
    outside the histogram's range are counted only when there are some. Traced once per rank and
    dtype (:class:`DistributionRunner`). ``hist_range`` (float64 ``[2]``) holds NaN until the first
    batch has fixed the histogram's range.
    """
    tf = tfenv.tf()
    x = value if value.dtype in (tf.float32, tf.float64) else tf.cast(value, tf.float64)
    real = x.dtype
    rank = x.shape.rank
    per_channel = rank is not None and rank >= 2  # channels: the last axis
    size = tf.size(x, out_type=tf.int64)
    columns = tf.shape(x, out_type=tf.int64)[-1] if per_channel else tf.constant(1, tf.int64)
    rows = size // tf.maximum(columns, 1)
    matrix = tf.reshape(x, tf.stack([rows, columns]))
    sums = tf.matmul(tf.ones(tf.stack([1, rows]), real), matrix)[0]  # a NaN or Inf anywhere reaches its sum
    fast = tf.reduce_all(tf.math.is_finite(sums)) & (rows > 1) & (columns > 0) & (size < 2**31)
    none = tf.constant(0, tf.int64)

    def fast_path() -> list[Any]:  # int32 counts: fewer than 2**31 values
        mean = tf.cast(sums, tf.float64) / tf.cast(rows, tf.float64)
        low, high = tf.reduce_min(matrix, axis=0), _column_max(matrix, rows, columns)
        lowest, highest = tf.reduce_min(low), tf.reduce_max(high)
        span = _histogram_span(hist_range, lowest, highest)
        lo, hi = tf.cast(span[0], real), tf.cast(span[1], real)
        under = tf.cond(lowest < lo, lambda: _count(x < lo, tf.int32), lambda: none)
        over = tf.cond(highest > hi, lambda: _count(x > hi, tf.int32), lambda: none)
        count = tf.fill(tf.shape(sums), rows)
        m2 = _column_m2(matrix, rows, columns, mean)
        zeros, negative = _count(tf.equal(x, 0), tf.int32), _count(x < 0, tf.int32)
        return [count, low, high, mean, m2, none, none, zeros, under, over, span, x, negative, none]

    def masked_path() -> list[Any]:  # an empty value (NMS keeping no box) has count 0 and mean 0, as in NumPy
        ok = tf.math.is_finite(matrix)
        count = tf.reduce_sum(tf.cast(ok, tf.int64), axis=0)
        zeros = tf.zeros_like(matrix)
        mean = tf.math.divide_no_nan(tf.reduce_sum(tf.where(ok, matrix, zeros), axis=0), tf.cast(count, real))
        m2 = tf.reduce_sum(tf.where(ok, tf.math.squared_difference(matrix, mean), zeros), axis=0)
        big = tf.constant(np.inf, real) * tf.ones_like(matrix)
        low = tf.reduce_min(tf.where(ok, matrix, big), axis=0)
        high = tf.reduce_max(tf.where(ok, matrix, -big), axis=0)
        span = _histogram_span(hist_range, tf.reduce_min(low), tf.reduce_max(high))
        lo, hi = tf.cast(span[0], real), tf.cast(span[1], real)
        clean = tf.where(tf.math.is_finite(x), x, lo * tf.ones_like(x))  # non-finite values: set to lo, taken out below
        counts = [_count(tf.math.is_nan(x), tf.int64), _count(tf.math.is_inf(x), tf.int64)]
        counts += [_count(tf.equal(x, 0), tf.int64), _count(clean < lo, tf.int64), _count(clean > hi, tf.int64)]
        neg_inf = _count(tf.equal(x, -np.inf), tf.int64)
        negative = _count(x < 0, tf.int64) - neg_inf
        return [count, low, high, tf.cast(mean, tf.float64), tf.cast(m2, tf.float64), *counts, span, clean, negative,
                neg_inf]  # fmt: skip

    ch_count, ch_low, ch_high, ch_mean, ch_m2, nan, inf, zeros, under, over, span, clean, negative, neg_inf = tf.cond(
        fast, fast_path, masked_path
    )
    ch = [tf.cast(t, tf.float64) for t in (ch_count, ch_low, ch_high, ch_mean, ch_m2)]
    count = tf.reduce_sum(ch_count)
    mean = tf.math.divide_no_nan(tf.reduce_sum(ch[0] * ch[3]), tf.cast(count, tf.float64))
    m2 = tf.reduce_sum(ch[4]) + tf.reduce_sum(ch[0] * tf.math.squared_difference(ch[3], mean))  # Chan's update
    low, high = tf.reduce_min(ch[1]), tf.reduce_max(ch[2])
    # values below lo (and the non-finite, set to lo) land in the first bin, above hi in the last: take them out
    counts = tf.histogram_fixed_width(clean, tf.cast(span, real), nbins=bins, dtype=tf.int64)
    counts = (
        counts
        - tf.one_hot(0, bins, dtype=tf.int64) * (under + nan + inf)
        - tf.one_hot(bins - 1, bins, dtype=tf.int64) * over
    )
    histogram = tf.concat([[under], counts, [over]], 0)
    flat = [size, nan, inf, zeros, count, low, high, mean, m2, span, histogram, negative, neg_inf]
    if not per_channel:
        return flat + [tf.zeros([0], tf.int64)] + [tf.zeros([0], tf.float64)] * 4
    return flat + [ch_count, *ch[1:]]


def _histogram_span(hist_range: Any, low: Any, high: Any) -> Any:
    """The histogram's range: ``hist_range`` once fixed, else the finite values' minimum and maximum."""
    tf = tfenv.tf()
    low, high = tf.cast(low, tf.float64), tf.cast(high, tf.float64)
    given = tf.logical_not(tf.reduce_any(tf.math.is_nan(hist_range)))
    known = tf.logical_and(tf.math.is_finite(low), tf.math.is_finite(high))
    widened = tf.where(high > low, tf.stack([low, high]), tf.stack([low - 0.5, high + 0.5]))
    return tf.where(given, hist_range, tf.where(known, widened, tf.constant([0.0, 1.0], tf.float64)))


def _count(mask: Any, dtype: Any) -> Any:
    """How many of ``mask`` are true, as int64, summed in ``dtype`` (int32 moves half the bytes of int64)."""
    tf = tfenv.tf()
    return tf.cast(tf.reduce_sum(tf.cast(mask, dtype)), tf.int64)


def _column_m2(matrix: Any, rows: Any, columns: Any, mean: Any) -> Any:
    """Each column's sum of squared deviations from its ``mean`` (float64), without a cancelling
    subtraction: FusedBatchNorm's training statistics for float32 (oneDNN's kernel, two passes
    without materializing the deviations), else the squared deviations summed. ``rows`` > 1."""
    tf = tfenv.tf()
    if matrix.dtype != tf.float32:
        deviations = tf.math.squared_difference(matrix, tf.cast(mean, matrix.dtype))
        return tf.cast(tf.reduce_sum(deviations, axis=0), tf.float64)
    ones = tf.ones(tf.reshape(columns, [1]), tf.float32)
    image = tf.reshape(matrix, tf.stack([1, rows, 1, columns]))
    out = tf.raw_ops.FusedBatchNormV3(
        x=image, scale=ones, offset=0.0 * ones, mean=[], variance=[], epsilon=0.0, is_training=True
    )
    return tf.cast(out.batch_variance, tf.float64) * tf.cast(rows - 1, tf.float64)  # the unbiased variance


def _column_max(matrix: Any, rows: Any, columns: Any) -> Any:
    """Each column's maximum: one MaxPool window as tall as the matrix (0 < ``rows`` < 2**31), several
    times faster than ``reduce_max`` over the leading axis."""
    tf = tfenv.tf()
    image = tf.reshape(matrix, tf.stack([1, rows, 1, columns]))
    window = tf.stack([1, tf.cast(rows, tf.int32), 1, 1])
    return tf.reshape(tf.raw_ops.MaxPoolV2(input=image, ksize=window, strides=window, padding="VALID"), [-1])


#: How many selected tensors the model may compute ahead of their statistics. Each stays alive until
#: reduced, and the model outruns the reductions: without a bound, a batch of 32 could hold all of
#: ResNet50's layer outputs (4.4 GiB) at once, which made peak memory vary from run to run.
AHEAD = 1


def _throttle(values: Sequence[Any], reductions: Sequence[Any], ahead: int) -> None:
    """Makes the op computing ``values[k]`` wait for the reduction of ``values[k - ahead]``, where that op
    was created after the earlier value's. A graph's ops are created after their inputs, so every edge,
    these too, leads to a later op and none closes a cycle (and one op's outputs never wait on each other)."""
    if len(values) <= ahead:
        return
    position = {op: i for i, op in enumerate(values[0].graph.get_operations())}
    for k in range(ahead, len(values)):
        op = values[k].op
        if op.type != "Placeholder" and position[op] > position[values[k - ahead].op]:
            op._add_control_input(reductions[k - ahead])  # noqa: SLF001 - no public call adds one afterwards


class DistributionRunner:
    """The model pruned to ``fetches`` with their distributions computed in the same function: one call per
    batch returns a :class:`~probe_cli.core.distribution.Distribution` per tensor, never the tensors.

    Histogram ranges are ``hist_range`` when given, else each tensor's finite min and max over the first batch.
    """

    def __init__(
        self, traced: TracedModel, fetches: Sequence[TensorInfo], hist_range: tuple[float, float] | None, bins: int
    ) -> None:
        self.fetches = list(fetches)
        self.bins = bins
        self.order = [spec.name for spec in traced.index.inputs]
        self.ranges = np.full((len(self.fetches), 2), np.nan)
        if hist_range is not None:
            self.ranges[:] = hist_range

        tf = tfenv.tf()
        # One function per rank and dtype, called for each tensor and kept a call: building its ops and conds
        # for each tensor, and instantiating them all inlined, cost seconds (docs/performance.md).
        functions: dict[tuple[Any, Any], Any] = {}

        def distribution(value: Any, span: Any) -> Any:
            rank = value.shape.rank
            key = (rank, value.dtype)
            if key not in functions:
                shape = None if rank is None else [None] * rank
                specs = (tf.TensorSpec(shape, value.dtype), tf.TensorSpec([2], tf.float64))
                ops = partial(_distribution_ops, bins=bins)
                try:
                    wrapped = tf.function(ops, experimental_attributes={"_noinline": True})
                except ValueError:  # a TensorFlow that does not take the attribute: inlined, slower to start
                    wrapped = tf.function(ops)
                functions[key] = wrapped.get_concrete_function(*specs)
            return functions[key](value, span)

        def reduce(values: list[Any], ranges: Any) -> list[Any]:
            results = [distribution(value, ranges[k]) for k, value in enumerate(values)]
            _throttle(values, [result[0].op for result in results], AHEAD)
            return [op for result in results for op in result]

        self.function = _pruned(traced, self.fetches, reduce)

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, Distribution]:
        flat = [np.asarray(t) for t in _execute(self.function, feeds, self.order, self.ranges)]
        width = len(_DISTRIBUTION_FIELDS)
        result = {}
        for k, info in enumerate(self.fetches):
            f = dict(zip(_DISTRIBUTION_FIELDS, flat[k * width : (k + 1) * width]))
            self.ranges[k] = f["range"]  # fixed by the first batch
            channels = None if f["ch_count"].size == 0 else Moments(*(f[key] for key in _CHANNEL_FIELDS))
            result[info.name] = Distribution(
                size=int(f["size"]),
                nan=int(f["nan"]),
                inf=int(f["inf"]),
                zeros=int(f["zeros"]),
                moments=Moments(int(f["count"]), float(f["low"]), float(f["high"]), float(f["mean"]), float(f["m2"])),
                hist_range=(float(f["range"][0]), float(f["range"][1])),
                histogram=f["histogram"],
                channels=channels,
                negative=int(f["negative"]),
                neg_inf=int(f["neg_inf"]),
            )
        return result


class GraphBackend:
    """What the backends of TensorFlow graphs share: which tensors feed an op, and ``--stats-only``'s
    reductions inside the pruned graph."""

    def op_inputs(self, traced: TracedModel, info: TensorInfo) -> list[TensorInfo]:
        return op_inputs(traced, info)

    def distributions(
        self,
        traced: TracedModel,
        selection: Sequence[TensorInfo],
        hist_range: tuple[float, float] | None,
        bins: int,
        detail: bool = True,
    ) -> DistributionRunner | HealthRunner:
        """The top-level tensors' distributions, reduced inside the pruned graph: with ``detail``, the
        histogram and per-channel moments too (several times slower, docs/performance.md)."""
        if detail:
            return DistributionRunner(traced, selection, hist_range, bins)
        return HealthRunner(traced, selection)


#: Per tensor, what :func:`_emit_health` returns, in order.
_HEALTH_FIELDS = ("size", "low", "high", "mean", "m2", "negative", "zeros")


class _Emitter:
    """NodeDefs added straight to a GraphDef: the ops of 800 tensors' reductions built in Python with
    ``tf.*`` calls took seconds (about 1 ms per op with its constants); as NodeDefs, imported in one
    ``import_graph_def``, a small part of that."""

    def __init__(self, graph_def: Any) -> None:
        self.graph_def = graph_def
        self.make_proto = tfenv.tf().make_tensor_proto
        scopes = {node.name.split("/", 1)[0] for node in graph_def.node}
        self.prefix = next(p for p in (f"probe_stats{k or ''}" for k in range(len(scopes) + 1)) if p not in scopes)
        self.constants: dict[tuple[Any, ...], str] = {}

    def node(self, name: str, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        node = self.graph_def.node.add()
        node.name, node.op = f"{self.prefix}/{name}", op
        node.input.extend(inputs)
        for key, value in attrs.items():
            if isinstance(value, bool):
                node.attr[key].b = value
            elif isinstance(value, float):
                node.attr[key].f = value
            elif isinstance(value, str):
                node.attr[key].s = value.encode()
            else:  # a DType
                node.attr[key].type = value.as_datatype_enum
        return node.name

    def const(self, value: Any, dtype: Any) -> str:
        """One Const node per distinct value and dtype, shared by every tensor's reductions."""
        key = (tuple(np.ravel(value).tolist()), np.shape(value), dtype.name)
        if key not in self.constants:
            name = self.node(f"c/{len(self.constants)}", "Const", [], dtype=dtype)
            self.graph_def.node[-1].attr["value"].tensor.CopyFrom(self.make_proto(value, dtype))
            self.constants[key] = name
        return self.constants[key]


def _emit_health(out: _Emitter, k: int, tensor: Any) -> tuple[list[str], str]:
    """The NodeDefs of one tensor's default statistics (:data:`_HEALTH_FIELDS`), and the one that runs
    last. As few nodes as can be: instantiating the function on its first call costs time per node.

    Every kernel reads the values in place, in their own float type (integers as float64): minimum,
    maximum, mean, the squared deviations from it summed (no cancelling subtraction), and the
    negatives and zeros counted as int32 sums of masks. Each waits for the one before, so at most
    one temporary of the tensor's size (the deviations, a mask) is alive per tensor. FusedBatchNorm's
    per-channel moments were slower on the first call (a oneDNN kernel made per shape) and later, and
    less precise for a mean far above the spread (docs/performance.md). NaN or Inf make some results
    non-finite; :class:`HealthRunner` then reduces that tensor again with masks.
    """
    tf = tfenv.tf()
    real = tensor.dtype if tensor.dtype in (tf.float32, tf.float64) else tf.float64
    source = tensor.name[:-2] if tensor.name.endswith(":0") else tensor.name
    at = f"t{k}"
    if real != tensor.dtype:
        source = out.node(f"{at}/cast", "Cast", [source], SrcT=tensor.dtype, DstT=real, Truncate=False)
    i32, i64 = tf.int32, tf.int64
    size = out.node(f"{at}/size", "Size", [source], T=real, out_type=i64)
    if tensor.shape.rank is None:  # an unknown rank: flattened, then reduced along its one axis
        flat = out.node(f"{at}/flat", "Reshape", [source, out.const([-1], i32)], T=real, Tshape=i32)
        axis = out.const([0], i32)
    else:
        flat, axis = source, out.const(list(range(tensor.shape.rank)), i32)  # every axis

    def reduce(name: str, op: str, value: str, after: str | None, dtype: Any = real) -> str:
        inputs = [value, axis] + ([f"^{after}"] if after else [])
        return out.node(f"{at}/{name}", op, inputs, T=dtype, Tidx=i32, keep_dims=False)

    low = reduce("min", "Min", flat, None)
    high = reduce("max", "Max", flat, low)
    mean = reduce("mean", "Mean", flat, high)
    deviations = out.node(f"{at}/deviations", "SquaredDifference", [flat, mean], T=real)  # mean: a scalar
    last = m2 = reduce("m2", "Sum", deviations, None)
    counts = []
    zero = out.const(0, real)
    for name, op in (("negative", "Less"), ("zeros", "Equal")):
        mask = out.node(f"{at}/{name}/mask", op, [flat, zero, f"^{last}"], T=real)
        ones = out.node(f"{at}/{name}/int", "Cast", [mask], SrcT=tf.bool, DstT=i32, Truncate=False)
        last = reduce(name, "Sum", ones, None, i32)
        counts.append(last)
    return [size, low, high, mean, m2, *counts], last


#: Ops whose outputs are the same in every run when all their inputs are: what weights and constants are
#: read through. Placeholders count only when they are not the model's inputs (then they are captures).
_CONSTANT_TYPES = {"Const", "ReadVariableOp", "Identity", "Placeholder"}


def _constant_ops(traced: TracedModel) -> set[Any]:
    """The ops of the traced graph that read no input of the model, nor anything stateful but a variable
    the graph never writes (a stateful RNN's state or a counter changes from run to run)."""
    ops = traced.function.graph.get_operations()
    feeds = {traced.placeholders[spec.name].op for spec in traced.index.inputs}
    written = {t.op for op in ops if op.type != "ReadVariableOp" for t in op.inputs if t.dtype.name == "resource"}
    found: set[Any] = set()
    for op in ops:  # creation order: inputs before the ops reading them
        inputs = [t.op for t in op.inputs] + list(op.control_inputs)
        if op.type in _CONSTANT_TYPES and op not in feeds | written and all(i in found for i in inputs):
            found.add(op)
    return found


def _throttle_nodes(graph_def: Any, tensors: Sequence[Any], done: Sequence[str], ahead: int) -> None:
    """:func:`_throttle` for a GraphDef: the node computing ``tensors[k]`` waits for ``done[k - ahead]``
    when it comes after that tensor's node in graph (creation) order, so no edge closes a cycle."""
    found = {node.name: (i, node) for i, node in enumerate(graph_def.node)}
    for k in range(ahead, len(tensors)):
        name, earlier = tensors[k].op.name, tensors[k - ahead].op.name
        if name in found and earlier in found and found[name][0] > found[earlier][0]:
            node = found[name][1]
            if node.op != "Placeholder":
                node.input.append(f"^{done[k - ahead]}")


def _masked_health(value: Any) -> list[Any]:
    """One tensor's default statistics over masks of its finite values: slower, for values holding NaN
    or Inf (or overflowing float32); returns :data:`_HEALTH_FIELDS`, with the NaN and -Inf/+Inf
    counts after them. Each reduction waits for the one before, so few temporaries of the tensor's
    size are alive at once (a model whose input holds a NaN sends every tensor here)."""
    tf = tfenv.tf()
    x = tf.reshape(value if value.dtype in (tf.float32, tf.float64) else tf.cast(value, tf.float64), [-1])
    found: list[Any] = []

    def then(make: Any) -> Any:
        with tf.control_dependencies(found[-1:]):
            found.append(make())
        return found[-1]

    inf = tf.constant(np.inf, x.dtype)
    size = tf.size(x, out_type=tf.int64)
    count = then(lambda: _count(tf.math.is_finite(x), tf.int64))
    clean = lambda fill: tf.where(tf.math.is_finite(x), x, fill)  # noqa: E731 - a mask made where it is used
    total = then(lambda: tf.reduce_sum(tf.cast(clean(tf.zeros([], x.dtype)), tf.float64)))
    mean = tf.math.divide_no_nan(total, tf.cast(count, tf.float64))
    deviations = lambda: tf.math.squared_difference(tf.cast(x, tf.float64), mean)  # noqa: E731
    m2 = then(lambda: tf.reduce_sum(tf.where(tf.math.is_finite(x), deviations(), tf.zeros([], tf.float64))))
    low = then(lambda: tf.reduce_min(clean(inf)))
    high = then(lambda: tf.reduce_max(clean(-inf)))
    neg_inf = then(lambda: _count(tf.equal(x, -inf), tf.int64))
    pos_inf = then(lambda: _count(tf.equal(x, inf), tf.int64))
    negative = then(lambda: _count(x < 0, tf.int64)) - neg_inf
    zeros = then(lambda: _count(tf.equal(x, 0), tf.int64))
    nan = then(lambda: _count(tf.math.is_nan(x), tf.int64))
    return [size, low, high, mean, m2, negative, zeros, nan, neg_inf, pos_inf]


class HealthRunner:
    """``--stats-only``'s default: per tensor, TensorFlow Debugger's FULL_HEALTH counts (NaN, -Inf, +Inf,
    negative, zero, positive) and the exact minimum, maximum, mean and M2, reduced inside the pruned
    model; one call per batch returns a :class:`~probe_cli.core.distribution.Distribution` per tensor.

    Values with NaN or Inf make the fast kernels' results non-finite: those tensors are reduced again,
    with masks, in a second run of the same batch (:func:`_masked_health`), so a healthy model pays
    nothing for them. Tensors that read no input (weights, constants: 40% of MobileNetV2's) are the
    same in every batch: fetched once and reduced by NumPy, their statistics count again for each
    batch, and the function run per batch, with fewer nodes, starts sooner.
    """

    def __init__(self, traced: TracedModel, fetches: Sequence[TensorInfo]) -> None:
        self.traced = traced
        constant = _constant_ops(traced)
        is_fixed = [traced.graph_tensors[info.name].op in constant for info in fetches]
        fixed = [info for info, same in zip(fetches, is_fixed) if same]
        self.fixed = Runner(traced, fixed) if fixed else None
        self.fixed_found: dict[str, Distribution] | None = None
        self.fetches = [info for info, same in zip(fetches, is_fixed) if not same]
        self.order = [spec.name for spec in traced.index.inputs]
        self.masked: dict[tuple[str, ...], Any] = {}

        def emit(graph_def: Any, tensors: Sequence[Any]) -> list[str]:
            out = _Emitter(graph_def)
            returned, done = [], []
            for k, tensor in enumerate(tensors):
                names, finished = _emit_health(out, k, tensor)
                returned += [f"{name}:0" for name in names]
                done.append(finished)
            _throttle_nodes(graph_def, tensors, done, AHEAD)
            return returned

        self.function = _pruned(traced, self.fetches, emit=emit) if self.fetches else None

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, Distribution]:
        result: dict[str, Distribution] = {}
        if self.fixed is not None:
            if self.fixed_found is None:
                values = self.fixed(feeds)
                self.fixed_found = {
                    name: of_array(value, histogram=False, channels=False) for name, value in values.items()
                }
            result.update(self.fixed_found)
        if self.function is None:
            return result
        flat = [np.asarray(t) for t in _execute(self.function, feeds, self.order)]
        width = len(_HEALTH_FIELDS)
        again = []
        for k, info in enumerate(self.fetches):
            found = _healthy(*flat[k * width : (k + 1) * width])
            if found is None:
                again.append(info)
            else:
                result[info.name] = found
        if again:
            result.update(self._masked(again, feeds))
        return result

    def _masked(self, fetches: list[TensorInfo], feeds: Sequence[Feed]) -> dict[str, Distribution]:
        """The tensors whose fast statistics were not finite, reduced with masks in a second run of the batch."""
        key = tuple(info.name for info in fetches)
        if key not in self.masked:
            tf = tfenv.tf()

            def reduce(values: list[Any], _: Any) -> list[Any]:
                results = [_masked_health(value) for value in values]
                _throttle(values, [tf.group(*result) for result in results], AHEAD)
                return [t for result in results for t in result]

            self.masked[key] = _pruned(self.traced, fetches, reduce)
        span = np.zeros((len(fetches), 2))
        flat = [np.asarray(t) for t in _execute(self.masked[key], feeds, self.order, span)]
        width = len(_HEALTH_FIELDS) + 3
        result = {}
        for k, info in enumerate(fetches):
            size, low, high, mean, m2, negative, zeros, nan, neg_inf, pos_inf = flat[k * width : (k + 1) * width]
            count = int(size) - int(nan) - int(neg_inf) - int(pos_inf)
            result[info.name] = Distribution(
                size=int(size),
                nan=int(nan),
                inf=int(neg_inf) + int(pos_inf),
                zeros=int(zeros),
                moments=Moments(count, float(low), float(high), float(mean), float(m2)),
                negative=int(negative),
                neg_inf=int(neg_inf),
            )
        return result


def _healthy(size: Any, low: Any, high: Any, mean: Any, m2: Any, negative: Any, zeros: Any) -> Distribution | None:
    """A tensor's :class:`Distribution` from the fast kernels' results; None where they cannot be trusted
    (a NaN or an Inf made them non-finite; int32 counts of 2**31 values or more)."""
    total = int(size)
    if total == 0:  # nothing to reduce (NMS keeping no box): count 0 and mean 0, as in NumPy
        return Distribution(0, 0, 0, 0, Moments(0, np.inf, -np.inf, 0.0, 0.0), negative=0, neg_inf=0)
    if total >= 2**31 or not np.isfinite([low, high, mean, m2]).all():
        return None
    return Distribution(
        size=total,
        nan=0,
        inf=0,
        zeros=int(zeros),
        moments=Moments(total, float(low), float(high), float(mean), float(m2)),
        negative=int(negative),
        neg_inf=0,
    )
