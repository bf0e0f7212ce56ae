"""Unit tests of ``probe_cli.stats.summarize`` (no TensorFlow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from probe_cli.core.stats import RunningStats, summarize

EMPTY = {"min": None, "max": None, "mean": None, "std": None, "nan": 0, "inf": 0}


def test_float_values() -> None:
    out = summarize(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    assert out == {"min": 1.0, "max": 4.0, "mean": 2.5, "std": pytest.approx(math.sqrt(1.25)), "nan": 0, "inf": 0}


def test_multidimensional_float() -> None:
    array = np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 5.5
    out = summarize(array)
    assert out["min"] == -5.5 and out["max"] == 17.5
    assert out["mean"] == pytest.approx(6.0)
    assert out["std"] == pytest.approx(float(np.std(array)))


def test_nan_and_inf_counted_and_excluded() -> None:
    out = summarize(np.array([1.0, np.nan, np.inf, -np.inf, 3.0, np.nan], np.float32))
    assert out == {"min": 1.0, "max": 3.0, "mean": 2.0, "std": 1.0, "nan": 2, "inf": 2}


def test_only_non_finite_values() -> None:
    out = summarize(np.array([np.nan, np.inf], np.float64))
    assert out == {**EMPTY, "nan": 1, "inf": 1}


def test_integers() -> None:
    out = summarize(np.array([[-5, 0], [5, 10]], np.int32))
    assert out == {"min": -5.0, "max": 10.0, "mean": 2.5, "std": pytest.approx(math.sqrt(31.25)), "nan": 0, "inf": 0}
    assert all(isinstance(out[k], float) for k in ("min", "max", "mean", "std"))


def test_large_unsigned_integers_exact_extremes() -> None:
    big = np.iinfo(np.uint64).max
    out = summarize(np.array([0, big], np.uint64))
    assert out["min"] == 0.0 and out["max"] == float(big)
    assert out["mean"] == pytest.approx(float(big) / 2)


def test_int8_mean_does_not_overflow() -> None:
    out = summarize(np.full(1000, 127, np.int8))
    assert out["mean"] == 127.0 and out["std"] == 0.0


def test_float16_mean_does_not_overflow() -> None:
    """float16 sums overflow at 65504: statistics are computed in float64."""
    out = summarize(np.full(100, 60000, np.float16))
    assert out["mean"] == 60000.0 and out["std"] == 0.0 and out["inf"] == 0


@pytest.mark.filterwarnings("error")  # near float32's maximum, no RuntimeWarning either
@pytest.mark.parametrize(
    ("array", "rel"),
    [
        # large mean, small spread: 2e-9 off; a float32 sum across the blocks is 1.4e-8 off
        (np.random.default_rng(0).normal(1e6, 10, 10**6), 5e-9),
        (np.random.default_rng(1).normal(0, 1, 3 * 4096 + 17), 1e-6),  # blocks and a remainder
        (np.random.default_rng(2).random(100), 1e-6),  # shorter than a block
        (np.full(5000, 3e38), 1e-6),  # float32 block sums overflow
    ],
    ids=["large-mean", "remainder", "short", "near-float32-max"],
)
def test_float32_mean_without_std_matches_float64(array: np.ndarray, rel: float) -> None:
    """dump's statistics (no std) sum float32 in blocks; the mean stays that of the float64 values."""
    values = array.astype(np.float32)
    out = summarize(values, with_std=False)
    assert out["std"] is None
    expected = values.astype(np.float64).mean()
    assert out["mean"] == pytest.approx(expected, rel=rel)


def test_bool() -> None:
    out = summarize(np.array([True, False, True, True]))
    assert out == {"min": 0.0, "max": 1.0, "mean": 0.75, "std": pytest.approx(math.sqrt(0.1875)), "nan": 0, "inf": 0}


@pytest.mark.parametrize(
    "array",
    [
        np.array([b"a", b"bc"], dtype=object),
        np.array(["x", "yz"]),
        np.array([b"a", b"b"]),
        np.array([1 + 2j, 3j]),
    ],
    ids=["object-bytes", "unicode", "bytes", "complex"],
)
def test_non_numeric_has_no_statistics(array: np.ndarray) -> None:
    assert summarize(array) == EMPTY


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_empty_array(dtype: type) -> None:
    assert summarize(np.zeros((0, 3), dtype)) == EMPTY


def test_scalar() -> None:
    assert summarize(np.float32(2.5)) == {"min": 2.5, "max": 2.5, "mean": 2.5, "std": 0.0, "nan": 0, "inf": 0}


def test_accepts_lists() -> None:
    assert summarize([1, 2, 3])["mean"] == 2.0  # type: ignore[arg-type]


def test_result_is_json_serializable() -> None:
    out = summarize(np.array([np.nan, 1.5, np.inf], np.float32))
    assert json.loads(json.dumps(out)) == {"min": 1.5, "max": 1.5, "mean": 1.5, "std": 0.0, "nan": 1, "inf": 1}
    assert type(out["nan"]) is int and type(out["min"]) is float


def test_input_not_modified() -> None:
    array = np.array([1.0, np.nan, 2.0], np.float32)
    summarize(array)
    assert np.isnan(array[1]) and array.dtype == np.float32


def test_running_stats_merge_stays_accurate_with_a_large_mean() -> None:
    """Batches merged with Chan's update match numpy on the whole, even for mean 1e6 and std 1e-2."""
    rng = np.random.default_rng(0)
    data = 1e6 + 1e-2 * rng.standard_normal(10_000)
    running = RunningStats()
    for part in np.array_split(data, 7):
        running.update(part)
    result = running.result()
    assert result["mean"] == pytest.approx(data.mean(), rel=1e-12)
    assert result["std"] == pytest.approx(data.std(), rel=1e-6)
    assert (result["min"], result["max"]) == (data.min(), data.max())


def test_running_stats_without_std_skips_it() -> None:
    running = RunningStats(with_std=False)
    running.update(np.arange(10, dtype=np.float32))
    assert running.result() == {"min": 0.0, "max": 9.0, "mean": 4.5, "std": None, "nan": 0, "inf": 0}


def test_values_near_the_float_range_without_warnings_or_overflow() -> None:
    """float64 values whose sums overflow still get finite statistics (scaled first), with no
    RuntimeWarning on stderr and no OverflowError or NaN in the running merge."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        top = summarize(np.array([1.7e308, 1.7e308]))
        assert (top["mean"], top["std"]) == (1.7e308, 0.0)
        spread = summarize(np.array([1e200, -1e200, 1e300]))  # mean ~1e300/3, std ~sqrt(2)/3 * 1e300
        assert spread["mean"] == pytest.approx(1e300 / 3) and spread["std"] == pytest.approx(math.sqrt(2) / 3 * 1e300)
        running = RunningStats()
        running.update(np.full(10, 1e308))
        running.update(np.ones(10))
        result = running.result()
    assert result["mean"] == pytest.approx(5e307) and (result["min"], result["max"]) == (1.0, 1e308)
    assert result["std"] == np.inf  # the true std, 5e307, overflows the merge's sum of squares: documented
