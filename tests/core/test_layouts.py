"""Lining up one tensor's layouts across two forms of a model (no TensorFlow)."""

from __future__ import annotations

import numpy as np

from probe_cli.core import layouts


def test_an_untracked_tensorflow_side_is_channels_last_against_a_tracked_channel_first_one() -> None:
    assert layouts.differing("NCHW", None, "onnx", "keras") == ("NCHW", "NHWC")
    assert layouts.differing(None, "NCW", "saved-model", "onnx") == ("NWC", "NCW")


def test_an_untracked_onnx_side_is_not_guessed_and_equal_layouts_need_nothing() -> None:
    assert layouts.differing(None, "NCHW", "onnx", "onnx") is None
    assert layouts.differing("NCHW", "NCHW", "onnx", "onnx") is None
    assert layouts.differing(None, None, "keras", "keras") is None


def test_axes_bring_a_tensor_from_one_layout_to_the_other() -> None:
    nhwc = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    axes = layouts.axes("NHWC", "NCHW")
    assert axes == (0, 3, 1, 2)
    assert np.transpose(nhwc, axes)[1, 4, 2, 3] == nhwc[1, 2, 3, 4]
    assert layouts.axes("NHWC", "NCW") is None
