"""--stats-only's in-graph reductions equal NumPy's (probe_cli.core.distribution.of_array) on the same values:
finite or not, float or integer, scalars, and values outside the histogram's range."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import probe_cli as probe
from probe_cli.backends.tfgraph import DistributionRunner, HealthRunner
from probe_cli.core.distribution import Distribution, of_array
from probe_cli.core.types import Feed


@pytest.fixture(scope="module")
def model(keras: Any, tf: Any) -> Any:
    x = keras.Input((4, 3), name="x")
    log = keras.layers.Lambda(lambda t: tf.math.log(t), name="log")(x)  # NaN below 0, -inf at 0
    count = keras.layers.Lambda(lambda t: tf.reduce_sum(tf.cast(t > 0.5, tf.int32)), name="count")(x)  # a scalar int
    # rows of x whose sum passes 1e9: none, an empty (0, 3) tensor, as NMS keeping no box gives
    none = keras.layers.Lambda(lambda t: tf.boolean_mask(t[0], tf.reduce_sum(t[0], -1) > 1e9), name="none")(x)
    return probe.open(keras.Model(x, [log, count, none]))


def assert_same(got: Distribution, want: Distribution) -> None:
    assert (got.size, got.nan, got.inf, got.zeros, got.hist_range) == (
        want.size,
        want.nan,
        want.inf,
        want.zeros,
        want.hist_range,
    )
    np.testing.assert_array_equal(got.histogram, want.histogram)
    m, w = got.moments, want.moments
    assert int(m.count) == int(w.count)
    np.testing.assert_allclose([m.low, m.high, m.mean, m.m2], [w.low, w.high, w.mean, w.m2], rtol=1e-6, atol=1e-6)
    assert (got.channels is None) == (want.channels is None)
    if got.channels is not None and want.channels is not None:
        for a, b in zip(
            (got.channels.count, got.channels.mean, got.channels.m2),
            (want.channels.count, want.channels.mean, want.channels.m2),
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_in_graph_equals_numpy_batch_after_batch(model: Any) -> None:
    empty = next(t.name for t in model.index.tensors if t.layer == "none" and t.op_type == "GatherV2")
    chosen = [model.index.tensor(name) for name in ("log/Log:0", "count/Cast:0", "count/Sum:0", empty)]
    runner = DistributionRunner(model._traced, chosen, None, 8)
    rng = np.random.default_rng(3)
    first = rng.normal(1.0, 1.0, (5, 4, 3)).astype(np.float32)
    first[0, 0, 0] = 0.0  # log: -inf
    later = (rng.normal(1.0, 3.0, (4, 4, 3)) + 0.5).astype(np.float32)  # outside the first batch's range
    ranges: dict[str, tuple[float, float]] = {}
    for batch in (first, later):
        got = runner([Feed("x", batch, "test")])
        values = model.run(batch, tensors=[t.name for t in chosen])
        for info in chosen:
            want = of_array(values[info.name], ranges.get(info.name), 8)
            ranges.setdefault(info.name, want.hist_range)
            assert_same(got[info.name], want)
    assert got["log/Log:0"].nan > 0 and got["log/Log:0"].histogram[0] + got["log/Log:0"].histogram[-1] > 0
    nothing = got[empty]
    assert nothing.size == 0 and nothing.summary() == {**nothing.summary(), "mean": None, "std": None}
    assert np.all(nothing.channels.mean == 0) and np.all(nothing.channels.m2 == 0)  # type: ignore[union-attr]


@pytest.mark.parametrize("rows", [1, 5])
def test_fast_kernels_equal_numpy(keras: Any, tf: Any, rows: int) -> None:
    """The float32 path (MatMul sums, MaxPool maxima, FusedBatchNorm deviations, a mean far larger than
    the spread), the float64 one (integers), and a matrix of one row (the masked path) agree with NumPy."""
    check_fast_kernels(keras, tf, rows)


def test_a_tensorflow_refusing_noinline_still_reduces(keras: Any, tf: Any, monkeypatch: Any) -> None:
    """Older TensorFlow versions refuse ``_noinline`` on tf.function: the reductions are then inlined."""
    from tensorflow.python.eager.polymorphic_function import attributes

    allowed = attributes.POLYMORPHIC_FUNCTION_ALLOWLIST - {attributes.NO_INLINE}
    monkeypatch.setattr(attributes, "POLYMORPHIC_FUNCTION_ALLOWLIST", allowed)
    with pytest.raises(ValueError):
        tf.function(lambda: 0, experimental_attributes={"_noinline": True})
    check_fast_kernels(keras, tf, 5)


def check_fast_kernels(keras: Any, tf: Any, rows: int) -> None:
    x = keras.Input((6, 3), name="x")
    offset = keras.layers.Lambda(lambda t: t * 1e-3 + 1e3, name="offset")(x)
    whole = keras.layers.Lambda(lambda t: tf.cast(t * 10.0, tf.int32), name="whole")(x)
    total = keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=1), name="total")(x)  # (batch, 3)
    model = probe.open(keras.Model(x, [offset, whole, total]))
    chosen = [model.index.tensor(name) for name in ("offset/add:0", "whole/Cast:0", "total/Sum:0")]
    runner = DistributionRunner(model._traced, chosen, None, 8)
    batch = np.random.default_rng(5).normal(0.0, 1.0, (rows, 6, 3)).astype(np.float32)
    batch[0, 0] = 0.0  # zeros counted
    got = runner([Feed("x", batch, "test")])
    values = model.run(batch, tensors=[t.name for t in chosen])
    for info in chosen:
        assert_same(got[info.name], of_array(values[info.name], None, 8))
    assert got["whole/Cast:0"].zeros >= 3


@pytest.mark.parametrize("detailed", [True, False])
def test_the_model_waits_for_the_statistics_of_earlier_tensors(keras: Any, detailed: bool) -> None:
    """Each selected tensor's op waits for the reductions of the tensor AHEAD places back (the default
    statistics: for the last of them), which bounds how many tensors stay alive; the statistics are
    unchanged by it."""
    from probe_cli.backends.tfgraph import AHEAD

    x = keras.Input((5,), name="x")
    h = x
    for k in range(AHEAD + 4):
        h = keras.layers.Dense(5, activation="relu", name=f"d{k}")(h)
    model = probe.open(keras.Model(x, h))
    chosen = model.select(layers=["d.*"])
    if detailed:
        runner: Any = DistributionRunner(model._traced, chosen, None, 8)
        last = "PartitionedCall"  # the reductions' function call
    else:
        runner, last = HealthRunner(model._traced, chosen), "/zeros"  # the last count
    graph = runner.function.graph
    waiting = [op for op in graph.get_operations() if any(last in c.type + c.name for c in op.control_inputs)]
    assert len(waiting) == len(chosen) - AHEAD
    batch = np.random.default_rng(2).normal(0.0, 1.0, (6, 5)).astype(np.float32)
    got = runner([Feed("x", batch, "test")])
    values = model.run(batch, tensors=[t.name for t in chosen])
    for info in chosen:
        if detailed:
            assert_same(got[info.name], of_array(values[info.name], None, 8))
        else:
            assert_health(got[info.name], of_array(values[info.name], histogram=False, channels=False))


def assert_health(got: Distribution, want: Distribution, rtol: float = 1e-6) -> None:
    """The default statistics: FULL_HEALTH's counts and the moments, no histogram, no channels."""
    counts = ("size", "nan", "inf", "zeros", "negative", "neg_inf", "positive", "pos_inf")
    assert {k: getattr(got, k) for k in counts} == {k: getattr(want, k) for k in counts}
    m, w = got.moments, want.moments
    assert (int(m.count), float(m.low), float(m.high)) == (int(w.count), float(w.low), float(w.high))
    np.testing.assert_allclose([m.mean, m.m2], [w.mean, w.m2], rtol=rtol, atol=1e-6)
    assert got.histogram is None and got.hist_range is None and got.channels is None


def test_default_statistics_equal_numpy(model: Any) -> None:
    """Every path of HealthRunner: the fast kernels (float32 per channel, integers as float64), and the
    masked second run for NaN, -Inf, +Inf and an empty value; the fed input reduced in the graph too."""
    empty = next(t.name for t in model.index.tensors if t.layer == "none" and t.op_type == "GatherV2")
    chosen = [model.index.tensor(name) for name in ("x:0", "log/Log:0", "count/Cast:0", "count/Sum:0", empty)]
    runner = HealthRunner(model._traced, chosen)
    rng = np.random.default_rng(4)
    healthy = rng.uniform(0.1, 2.0, (5, 4, 3)).astype(np.float32)
    broken = rng.normal(0.5, 1.0, (4, 4, 3)).astype(np.float32)
    broken[0, 0] = [0.0, np.inf, -1.0]  # log: -inf, +inf, NaN
    for batch, masked in ((healthy, 0), (broken, 1)):
        got = runner([Feed("x", batch, "test")])
        values = model.run(batch, tensors=[t.name for t in chosen])
        for info in chosen:
            assert_health(got[info.name], of_array(values[info.name], histogram=False, channels=False))
        assert len(runner.masked) == masked  # only the batch with NaN and Inf took the second run
    log = got["log/Log:0"]
    assert (log.neg_inf, log.pos_inf) == (1, 1) and log.nan > 0 and log.negative > 0 and log.positive > 0


def test_default_statistics_of_big_offsets_and_vectors(keras: Any, tf: Any) -> None:
    """float32 with a mean far above the spread, a float64 tensor, a vector and a batch of one row agree
    with NumPy."""
    x = keras.Input((6, 3), name="x")
    offset = keras.layers.Lambda(lambda t: t * 0.1 + 100.0, name="offset")(x)
    wide = keras.layers.Lambda(lambda t: tf.cast(t, tf.float64) * 1e6, name="wide")(x)
    flat = keras.layers.Lambda(lambda t: tf.reshape(t, [-1]), name="flat")(x)
    model = probe.open(keras.Model(x, [offset, wide, flat]))
    chosen = [model.index.tensor(name) for name in ("offset/add:0", "wide/mul:0", "flat/Reshape:0")]
    runner = HealthRunner(model._traced, chosen)
    for rows in (1, 7):
        batch = np.random.default_rng(rows).normal(0.0, 1.0, (rows, 6, 3)).astype(np.float32)
        batch[0, 0] = 0.0
        got = runner([Feed("x", batch, "test")])
        values = model.run(batch, tensors=[t.name for t in chosen])
        for info in chosen:
            # a float32 mean 1e3 times the spread: M2 within 1e-4 (and so are the detailed statistics')
            rtol = 1e-4 if info.name == "offset/add:0" else 1e-6
            assert_health(got[info.name], of_array(values[info.name], histogram=False, channels=False), rtol)
    assert not runner.masked


def test_weights_are_reduced_once_and_counted_per_batch(keras: Any) -> None:
    """Tensors that read no input (a Dense layer's kernel and bias) are fetched and reduced once; each
    batch counts them again, as if reduced every time, and the per-batch function leaves them out."""
    x = keras.Input((4,), name="x")
    model = probe.open(keras.Model(x, keras.layers.Dense(3, name="dense")(x)))
    chosen = model.select(tensors=["dense/.*"])
    weights = [info for info in chosen if info.op_type == "ReadVariableOp"]
    assert len(weights) == 2 and len(chosen) > 2
    runner = HealthRunner(model._traced, chosen)
    assert {info.name for info in runner.fetches} == {info.name for info in chosen} - {w.name for w in weights}
    rng = np.random.default_rng(6)
    merged: dict[str, Distribution] = {}
    for rows in (5, 2):
        batch = rng.normal(0.0, 1.0, (rows, 4)).astype(np.float32)
        got = runner([Feed("x", batch, "test")])
        values = model.run(batch, tensors=[t.name for t in chosen])
        for info in chosen:
            want = of_array(values[info.name], histogram=False, channels=False)
            assert_health(got[info.name], want)
            merged[info.name] = merged[info.name].merge(got[info.name]) if info.name in merged else got[info.name]
    kernel = merged[weights[0].name]
    assert kernel.size == 2 * np.prod(model.index.tensor(weights[0].name).shape)  # counted in both batches


def test_a_variable_the_model_writes_is_reduced_every_batch(keras: Any, tf: Any) -> None:
    """A variable the forward pass assigns (a counter here, a stateful RNN's state) changes between
    batches: its reads are no constant, so they are reduced in every run, not once."""

    class Counter(keras.layers.Layer):
        def build(self, shape: Any) -> None:
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

        def call(self, t: Any) -> Any:
            self.calls.assign_add(1.0)
            return t * tf.identity(self.calls.value)

    x = keras.Input((3,), name="x")
    model = probe.open(keras.Model(x, Counter(name="counter")(x)))
    chosen = model.select(tensors=["counter/.*"])
    reads = [info for info in chosen if info.op_type == "ReadVariableOp"]
    runner = HealthRunner(model._traced, chosen)
    assert reads and {info.name for info in reads} <= {info.name for info in runner.fetches}


def test_a_stats_only_archive_says_where_its_inputs_came_from(tmp_path: Any) -> None:
    """No values are stored, but show names the inputs, their sources and the seed of random ones."""
    from conftest import CNN_H5

    m = probe.open(CNN_H5)
    m.dump(tmp_path / "random.h5", samples=4, stats_only=True, seed=7)
    (record,) = probe.show(tmp_path / "random.h5").inputs
    assert (record.name, record.shape, record.source, record.seed) == ("image", (4, 28, 28, 1), "random", 7)
    images = np.zeros((4, 28, 28, 1), np.float32)
    m.dump(tmp_path / "given.h5", {"image": images}, stats_only=True)
    (given,) = probe.show(tmp_path / "given.h5").inputs
    assert (given.source, given.seed) == ("array", None)
