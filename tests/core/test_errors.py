"""TensorFlow's error messages cut to one line: the cause and the failing node, no stack (no TensorFlow)."""

from __future__ import annotations

import pytest

from probe_cli.core.errors import FAILURE, RunError

#: Messages as TensorFlow 2.21 words them (``OpError.message``), with and without a Python stack.
RESHAPE = (
    "Graph execution error:\n\nDetected at node Reshape defined at (most recent call last):\n"
    '  File "/tmp/f.py", line 6, in <module>\n\n  File "/tmp/f.py", line 4, in f\n'
    "    return tf.reshape(x, tf.stack([n]))\n\n"  # some versions quote the source line
    "Input to reshape is a tensor with 6 values, but the requested shape has 5\n"
    "\t [[{{node Reshape}}]] [Op:__inference_f_11]"
)
ASSERTION = (
    "Graph execution error:\n\nDetected at node check/Assert defined at (most recent call last):\n"
    "<stack traces unavailable>\nassertion failed: [x must be >= 0] [x (x:0) = ] [[-1 -1 -1]...]\n"
    "\t [[{{node check/Assert}}]] [Op:__inference_signature_wrapper_52]"
)


class FakeOpError(Exception):
    """Stands in for ``tf.errors.OpError``: the text is in ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            FakeOpError(RESHAPE),
            "Input to reshape is a tensor with 6 values, but the requested shape has 5 (at node Reshape)",
        ),
        (
            FakeOpError(ASSERTION),
            "assertion failed: [x must be >= 0] [x (x:0) = ] [[-1 -1 -1]...] (at node check/Assert)",
        ),
        (ValueError("Cannot convert a float to int\n  in the second line"), "Cannot convert a float to int"),
        (TypeError(""), "TypeError"),
        (FakeOpError("Graph execution error:\n\n  \n"), "FakeOpError"),
    ],
    ids=["with-stack", "stack-unavailable", "plain", "empty", "headers-only"],
)
def test_run_error_keeps_cause_and_node(exc: Exception, expected: str) -> None:
    error = RunError.from_exception(exc)
    assert str(error) == f"running the model failed: {expected}"
    assert error.exit_code == FAILURE
