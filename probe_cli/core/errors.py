"""Domain errors. The CLI turns each into one ``Error: ...`` line and its exit code.

Exit codes (documented in the README):

* ``USAGE`` (2): something the user can fix on the command line or in the files
  they pass: a bad option, a missing or unreadable file, a file that is not a
  model, a pattern that matches nothing, an input of the wrong shape or dtype,
  an archive that already exists, a model that needs ``--unsafe`` or
  ``--custom-objects``.
* ``FAILURE`` (1): the model itself could not be loaded, run or written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

OK = 0
FAILURE = 1
USAGE = 2
#: dump --check-numerics found NaN or Inf.
NUMERICS = 3
#: Ctrl-C or SIGTERM; no archive is published once it arrived (see probe_cli.core.interrupt).
INTERRUPTED = 130


#: The Python API's argument for each CLI option, so an error names what its caller typed.
PYTHON_ARGUMENTS = {
    "--tensor": "tensors=",
    "--layer": "layers=",
    "--match": "match=",
    "--input": "inputs=",
    "--batch-size": "batch_size=",
    "--seed": "seed=",
    "--samples": "samples=",
    "--force": "force=True",
    "--shard": "shard=",
    "--stats-only": "stats_only=True",
    "--hist-range": "hist_range=",
    "--histogram": "histogram=True",
    "--channels": "channels=True",
    "--check-numerics": "check_numerics=True",
    "--max-bytes": "max_bytes=",
    "--unsafe": "unsafe=True",
    "--custom-objects": "custom_objects=",
    "--map": "mapping=",
}
_python_call: ContextVar[bool] = ContextVar("probe_python_call", default=False)


@contextmanager
def python_call() -> Iterator[None]:
    """Around a Python API call: errors raised inside name its arguments, not the CLI's options."""
    token = _python_call.set(True)
    try:
        yield
    finally:
        _python_call.reset(token)


def in_python() -> bool:
    """Whether the Python API is the caller (see :func:`python_call`)."""
    return _python_call.get()


def option(flag: str) -> str:
    """``--tensor`` for the CLI's user, ``tensors=`` for a Python caller."""
    return PYTHON_ARGUMENTS.get(flag, flag) if in_python() else flag


def given(flag: str, value: str) -> str:
    """An option with its value as the caller wrote it: ``--tensor 'x'``, or ``tensors='x'``."""
    name = option(flag)
    return f"{name}{value}" if name.endswith("=") else f"{name} {value}"


class ProbeError(Exception):
    """Base of every error probe reports to the user; ``hint`` says what to try."""

    exit_code = FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageProblem(ProbeError):
    """The user's command line or files are wrong; fixing them fixes the run."""

    exit_code = USAGE


class FileProblem(UsageProblem):
    """A path the user gave is missing, unreadable or of the wrong kind."""


class UnsupportedFormat(FileProblem):
    """The file exists but is not a model probe can read."""


class UnsafeModel(UsageProblem):
    """Loading the model would execute code stored in the file."""


class MissingCustomObject(UsageProblem):
    """The model names a class that is neither built in nor given by --custom-objects."""


class PatternError(UsageProblem):
    """A --tensor/--layer/--match pattern does not compile or matches nothing."""


class InputConversionWarning(UserWarning):
    """An input array was converted to the model's dtype by a cast that can change values (float64 to
    float32): the Python API's warning; the CLI prints the same line as ``Warning: ...``."""


class FeedError(UsageProblem):
    """An input is missing, unknown, or of the wrong shape or dtype."""


class ArchiveExists(UsageProblem):
    """The destination archive exists and --force was not given."""


class ArchiveTooBig(UsageProblem):
    """The estimated archive exceeds --max-bytes or the free disk space."""


class ModelLoadError(ProbeError):
    """The model file is of a known kind but could not be loaded."""


class RunError(ProbeError):
    """The graph failed while computing the requested tensors."""

    @classmethod
    def from_exception(cls, exc: Exception) -> RunError:
        """TensorFlow's message without its header and Python stack: the cause and the failing node."""
        message = getattr(exc, "message", None) or str(exc)
        cause = next(
            (line.strip() for line in message.splitlines() if _is_cause(line)),
            type(exc).__name__,  # nothing but headers: the kind of error is all there is
        )
        node = re.search(r"\{\{node ([^}]+)\}\}", message)
        where = f" (at node {node.group(1)})" if node else ""
        return cls(f"running the model failed: {cause}{where}")


_NOT_THE_CAUSE = (
    "Graph execution error:",
    "Detected at node",
    "File ",
    "[[",
    "defined at",
    "<stack traces unavailable>",
)


def _is_cause(line: str) -> bool:
    """Whether a line of TensorFlow's error message says what went wrong, rather than where."""
    text = line.strip()
    return (
        bool(text)
        and not line.startswith(("  ", "\t"))  # indented: a stack frame or source line
        and not text.startswith(_NOT_THE_CAUSE)
        and not text.endswith("(most recent call last):")
    )


class ArchiveError(ProbeError):
    """The archive could not be written or read."""


class MissingExtra(UsageProblem):
    """An optional dependency (an extra such as ``plot``) is not installed."""
