"""diff's verdict: scale-aware by default, elementwise with --atol/--rtol; metrics; layouts (no TensorFlow)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_show_diff import make_archive

from probe_cli.analysis.diff import ELEMENTWISE, SCALE_AWARE, diff_archives

RNG = np.random.default_rng(7)
#: Activations around 1e-4, as in a randomly initialised MobileNetV2: atol=1e-5 would swallow a 1% change.
TINY = (RNG.random((4, 8, 8, 16), dtype=np.float32) * 2e-4).astype(np.float32)


def verdict(tmp_path: Path, a: np.ndarray, b: np.ndarray, **options: float) -> tuple[bool, float | None]:
    number = len(list(tmp_path.glob("*.h5")))
    pa = make_archive(tmp_path / f"a{number}.h5", {"layer/Relu:0": a})
    pb = make_archive(tmp_path / f"b{number}.h5", {"layer/Relu:0": b})
    result = diff_archives(pa, pb, **options)
    return result.same, result.tensors[0].rel_error


def test_a_one_percent_change_is_caught_at_any_scale(tmp_path: Path) -> None:
    for scale in (1e-2, 1.0, 1e4):  # activations from 1e-6 to 1
        same, rel = verdict(tmp_path, (TINY * 1.01 * scale).astype(np.float32), (TINY * scale).astype(np.float32))
        assert not same and rel == pytest.approx(0.01, rel=1e-3), scale


def test_float32_rounding_between_kernels_passes(tmp_path: Path) -> None:
    noise = (1 + RNG.normal(0, 1e-6, TINY.shape)).astype(np.float32)
    same, rel = verdict(tmp_path, (TINY * noise).astype(np.float32), TINY)
    assert same and rel is not None and 0 < rel < 1e-5


def test_the_old_tolerances_swallow_a_change_at_tiny_scale_and_still_mean_what_they_say(tmp_path: Path) -> None:
    """Given explicitly, --atol/--rtol decide element by element, as before."""
    changed = (TINY * 1.01).astype(np.float32)
    assert verdict(tmp_path, changed, TINY, atol=1e-5, rtol=1e-4)[0]  # the 1% change passes: why they are no default
    assert not verdict(tmp_path, changed, TINY, atol=0.0, rtol=1e-3)[0]


def test_an_all_zero_reference_tolerates_rounding_noise_only(tmp_path: Path) -> None:
    zeros = np.zeros((2, 100), np.float32)
    assert verdict(tmp_path, np.full_like(zeros, 1e-12), zeros)[0]
    same, rel = verdict(tmp_path, np.full_like(zeros, 1e-3), zeros)
    assert not same and rel == math.inf


def test_integers_must_be_equal(tmp_path: Path) -> None:
    keep = np.array([3, 1, 7, 0], np.int32)
    assert verdict(tmp_path, keep, keep)[0]
    assert not verdict(tmp_path, np.array([3, 1, 7, 2], np.int32), keep)[0]


def test_metrics(tmp_path: Path) -> None:
    b = np.array([3.0, 4.0], np.float32)
    a = np.array([3.0, 4.5], np.float32)
    pa, pb = make_archive(tmp_path / "a.h5", {"t:0": a}), make_archive(tmp_path / "b.h5", {"t:0": b})
    result = diff_archives(pa, pb)
    t = result.tensors[0]
    assert result.criterion == SCALE_AWARE and diff_archives(pa, pb, rtol=0.1).criterion == ELEMENTWISE
    assert t.rel_error == pytest.approx(0.5 / 5.0)
    assert t.snr_db == pytest.approx(10 * math.log10(25 / 0.25))
    assert t.cosine == pytest.approx((9 + 18) / (5 * math.hypot(3, 4.5)))
    assert (t.max_abs_error, t.max_rel_error) == (pytest.approx(0.5), pytest.approx(0.125))


@pytest.mark.parametrize(
    ("a", "b", "change"),
    [
        (np.arange(10.0).reshape(1, 10), np.arange(10.0), "reference reshaped (10,) -> (1, 10)"),
        (
            np.arange(24.0).reshape(1, 2, 3, 4),
            np.arange(24.0).reshape(1, 2, 3, 4).transpose(0, 3, 1, 2),
            "reference transposed NCHW -> NHWC",
        ),  # fmt: skip
    ],
    ids=["batch-axis", "layout"],
)
def test_layouts_are_aligned_and_said(tmp_path: Path, a: np.ndarray, b: np.ndarray, change: str) -> None:
    pa, pb = make_archive(tmp_path / "a.h5", {"t:0": a}), make_archive(tmp_path / "b.h5", {"t:0": b})
    t = diff_archives(pa, pb).tensors[0]
    assert (t.status, t.layout_change, t.rel_error) == ("ok", change, 0.0)
    pc = make_archive(tmp_path / "c.h5", {"t:0": np.arange(12.0).reshape(3, 4)})
    assert diff_archives(pa, pc).tensors[0].status == "shape mismatch"


def test_integers_must_be_equal_whatever_the_tolerances(tmp_path: Path) -> None:
    keep = np.array([3, 1, 7, 0], np.int32)
    assert not verdict(tmp_path, np.array([3, 1, 7, 1], np.int32), keep, atol=1.0, rtol=0.5)[0]
