"""diff aligns two tensors by their tracked layouts (``layout_axes``), which shapes cannot tell when H == W == C."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke, ok

from probe_cli.analysis.diff import diff_archives, paired_values
from probe_cli.archive.writer import write_archive
from probe_cli.core.types import TensorInfo
from probe_cli.feed import Feed

PROVENANCE = {"probe_version": "0.1.0", "model_path": "m", "model_sha256": "ab" * 32, "model_format": "x"}


def _archive(path: Path, values: dict[str, tuple[np.ndarray, str | None]], model_format: str = "x") -> Path:
    tensors = [
        (TensorInfo(name, name, "Conv", str(v.dtype), v.shape, None, order, layout=layout), v)
        for order, (name, (v, layout)) in enumerate(values.items())
    ]
    feeds = [Feed("x", np.zeros((2, 3), np.float32), "random")]
    return write_archive(path, tensors, feeds, {**PROVENANCE, "model_format": model_format, "seed": 0}, seed=0)


def test_a_tracked_nchw_tensor_is_compared_with_the_nhwc_one_transposed_even_when_h_w_c_are_equal(
    tmp_path: Path,
) -> None:
    nhwc = np.random.default_rng(0).random((2, 4, 4, 4), dtype=np.float32)
    nchw = np.transpose(nhwc, (0, 3, 1, 2)).copy()
    onnx_side = _archive(tmp_path / "a.h5", {"c:0": (nchw, "NCHW"), "d:0": (nchw, "NCHW")})
    keras_side = _archive(tmp_path / "b.h5", {"c:0": (nhwc, None), "d:0": (nhwc, "NHWC")})
    result = diff_archives(onnx_side, keras_side)
    assert result.same, [(t.name, t.rel_error) for t in result.tensors]
    for tensor in result.tensors:
        assert tensor.max_abs_error == 0.0
        assert tensor.layout_change == "reference transposed NHWC -> NCHW (tracked layout)"
    # the other way round: B is the tracked NCHW one
    back = diff_archives(keras_side, onnx_side)
    assert back.same and {t.layout_change for t in back.tensors} == {
        "reference transposed NCHW -> NHWC (tracked layout)"
    }


def test_equal_tracked_layouts_compare_as_stored_and_shapes_alone_still_align(tmp_path: Path) -> None:
    value = np.random.default_rng(1).random((2, 4, 4, 4), dtype=np.float32)
    a = _archive(tmp_path / "a.h5", {"c:0": (value, "NCHW"), "g:0": (value[:, :, :1, :1], "NCHW")})
    b = _archive(tmp_path / "b.h5", {"c:0": (value, "NCHW"), "g:0": (value[:, :, 0, 0], None)})
    result = diff_archives(a, b)
    assert result.same
    by_name = {t.name: t for t in result.tensors}
    assert by_name["c:0"].layout_change is None  # the same layout: as stored, not transposed
    assert by_name["g:0"].layout_change == "reference reshaped (2, 4) -> (2, 4, 1, 1)"  # ranks differ: unit axes


def test_without_tracked_layouts_an_h_w_c_tensor_is_not_transposed(tmp_path: Path) -> None:
    """The old guess from shapes cannot see a transposition of (2, 4, 4, 4): the values differ."""
    nhwc = np.random.default_rng(2).random((2, 4, 4, 4), dtype=np.float32)
    a = _archive(tmp_path / "a.h5", {"c:0": (np.transpose(nhwc, (0, 3, 1, 2)).copy(), None)})
    b = _archive(tmp_path / "b.h5", {"c:0": (nhwc, None)})
    assert not diff_archives(a, b).same


def test_an_onnx_tensor_whose_layout_was_not_tracked_is_not_guessed_channels_last(tmp_path: Path) -> None:
    """Only TensorFlow's forms are channels-last by default: an untracked ONNX tensor equal to a tracked
    NCHW one is compared as stored, not transposed into a false difference."""
    nchw = np.random.default_rng(4).random((2, 4, 4, 4), dtype=np.float32)
    tracked = _archive(tmp_path / "a.h5", {"c:0": (nchw, "NCHW")}, "onnx")
    untracked = _archive(tmp_path / "b.h5", {"c:0": (nchw.copy(), None)}, "onnx")
    result = diff_archives(tracked, untracked)
    assert result.same and result.tensors[0].layout_change is None
    keras = _archive(tmp_path / "k.h5", {"c:0": (np.transpose(nchw, (0, 2, 3, 1)).copy(), None)}, "keras")
    assert diff_archives(tracked, keras).same  # a Keras tensor is channels-last: transposed


def test_a_reshape_of_the_nhwc_tensor_is_compared_with_the_tracked_nchw_one(tmp_path: Path) -> None:
    """A Keras Reshape of a conv's NHWC output, paired with the NCHW tensor of an ONNX Conv: B is brought to
    the NHWC shape, then transposed (and the other way round: transposed, then reshaped)."""
    nhwc = np.random.default_rng(3).random((2, 5, 5, 4), dtype=np.float32)
    nchw = np.transpose(nhwc, (0, 3, 1, 2)).copy()
    onnx_side = _archive(tmp_path / "a.h5", {"c:0": (nchw, "NCHW")})
    keras_side = _archive(tmp_path / "b.h5", {"c:0": (nhwc.reshape(2, 25, 4), None)})
    (tensor,) = diff_archives(onnx_side, keras_side).tensors
    assert tensor.max_abs_error == 0.0 and not tensor.failed
    assert (
        tensor.layout_change
        == "reference reshaped (2, 25, 4) -> (2, 5, 5, 4) and transposed NHWC -> NCHW (tracked layout)"
    )
    (back,) = diff_archives(keras_side, onnx_side).tensors
    assert back.max_abs_error == 0.0 and not back.failed
    assert back.layout_change == "reference transposed NCHW -> NHWC (tracked layout) and reshaped -> (2, 25, 4)"


def test_paired_values_line_up_by_the_tracked_layout(tmp_path: Path) -> None:
    """The values the HTML report draws are lined up as the comparison lines them up."""
    nhwc = np.random.default_rng(4).random((2, 4, 4, 4), dtype=np.float32)
    a = _archive(tmp_path / "a.h5", {"c:0": (np.transpose(nhwc, (0, 3, 1, 2)).copy(), "NCHW")})
    b = _archive(tmp_path / "b.h5", {"c:0": (nhwc, None)})
    with h5py.File(a) as fa, h5py.File(b) as fb:
        pairs = list(paired_values(fa["tensors/c:0"], fb["tensors/c:0"]))
    assert pairs and all(np.array_equal(x, y) for x, y in pairs)


def test_plot_draws_the_channels_of_an_nchw_tensor(tmp_path: Path) -> None:
    """The channel maps of a tracked NCHW tensor are its channels: pixel for pixel those of the NHWC tensor."""
    pytest.importorskip("matplotlib")
    image = pytest.importorskip("matplotlib.image")
    from probe_cli.analysis import plot as plot_module

    nhwc = np.random.default_rng(5).normal(size=(2, 6, 7, 5)).astype(np.float32)
    pngs = []
    for layout, value in (("NCHW", np.transpose(nhwc, (0, 3, 1, 2)).copy()), (None, nhwc)):
        archive = _archive(tmp_path / f"{layout}.h5", {"conv/Relu:0": (value, layout)})
        out = tmp_path / f"{layout}.png"
        ok(invoke("plot", archive, "-t", "conv/Relu:0", "-o", out))
        pngs.append(image.imread(out))
    maps = int(plot_module.HIST_WIDTH * plot_module.DPI)
    assert np.array_equal(pngs[0][:, maps:], pngs[1][:, maps:])
