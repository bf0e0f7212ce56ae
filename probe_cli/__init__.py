"""probe: look inside TensorFlow/Keras models, dump any tensor to HDF5.

    import probe_cli as probe
    m = probe.open("model.h5")            # or an in-memory keras.Model
    values = m.run(layers=["conv.*"])     # {probe name: array}
    m.dump("model.probe.h5")

The API is imported on first use, so ``import probe_cli`` (and ``probe --help``) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "FeedError",
    "InputConversionWarning",
    "Model",
    "ModelLoadError",
    "PatternError",
    "ProbeError",
    "RunError",
    "UsageProblem",
    "__version__",
    "compare",
    "diff",
    "merge",
    "open",
    "show",
]

_API = {"open", "show", "diff", "compare", "merge", "Model"}
_ERRORS = {
    "ProbeError",
    "UsageProblem",
    "FeedError",
    "PatternError",
    "ModelLoadError",
    "RunError",
    "ArchiveError",
    "InputConversionWarning",
}

if TYPE_CHECKING:
    from probe_cli.api import Model, compare, diff, merge, open, show
    from probe_cli.core.errors import (
        ArchiveError,
        FeedError,
        InputConversionWarning,
        ModelLoadError,
        PatternError,
        ProbeError,
        RunError,
        UsageProblem,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from probe_cli import api

        return getattr(api, name)
    if name in _ERRORS:
        from probe_cli.core import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'probe_cli' has no attribute {name!r}")
