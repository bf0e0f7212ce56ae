"""A failure inside TensorFlow reaches the user as one line: the cause and the failing node, no stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke, leftovers, ok, tensors_of

from probe_cli.core.errors import FAILURE


class NonNegativeSqrt:
    """A SavedModel whose graph refuses negative inputs at run time, as a data-dependent check would."""

    def __init__(self, tf: Any) -> None:
        self.module = tf.Module()
        self.module.__call__ = tf.function(self.call, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        self.tf = tf

    def call(self, x: Any) -> dict[str, Any]:
        with self.tf.control_dependencies([self.tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
            return {"y": self.tf.sqrt(x)}


@pytest.fixture(scope="module")
def checked_model(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("errors") / "nonneg_sqrt"
    model = NonNegativeSqrt(tf)
    tf.saved_model.save(model.module, str(path), signatures=model.module.__call__)
    return path


def test_failing_op_is_one_line_naming_cause_and_node(checked_model: Path, tmp_path: Path) -> None:
    negative = tmp_path / "neg.npy"
    np.save(negative, -np.ones((2, 3), np.float32))
    archive = tmp_path / "out.h5"
    line = assert_one_line_error(invoke("dump", checked_model, "-i", negative, "-o", archive), FAILURE)
    assert line.startswith("Error: running the model failed: assertion failed: [x must be >= 0")
    assert line.endswith("/Assert)") and " (at node " in line
    assert not archive.exists() and leftovers(tmp_path) == []

    positive = tmp_path / "pos.npy"
    np.save(positive, np.array([[0, 1, 4], [9, 16, 2]], np.float32))
    ok(invoke("dump", checked_model, "-i", positive, "-o", archive))
    np.testing.assert_array_equal(tensors_of(archive)["Identity:0"], np.sqrt(np.load(positive)))
