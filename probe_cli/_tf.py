"""The one place TensorFlow is imported, lazily, with its log noise hidden.

``probe --help`` must stay fast, so nothing imports TensorFlow at module level;
library modules call :func:`tf` and :func:`keras` when they need them.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import Any

_verbose = False
_lean = False

#: Imported by Keras at import time when installed, only for ``keras.visualization``, which
#: probe never calls: importing TensorFlow and Keras without it took 1.96 s instead of 2.28 s
#: (medians of 12 alternating runs; ``python -X importtime`` put matplotlib.pyplot at 0.6 s).
PLOTTING_PACKAGES = ("matplotlib",)


def set_verbose(verbose: bool) -> None:
    """Show TensorFlow's own log lines (``probe -v``); must be called before the first import."""
    global _verbose
    _verbose = verbose


@contextmanager
def lean_imports() -> Iterator[None]:
    """TensorFlow imported inside is imported without :data:`PLOTTING_PACKAGES`: for the CLI, which
    owns its process. Keras then holds ``plt = None`` in its plotting helpers for the rest of the
    process, so outside this block (a library user who lets probe import TensorFlow) nothing is hidden."""
    global _lean
    saved, _lean = _lean, True
    try:
        yield
    finally:
        _lean = saved


@contextmanager
def _plotting_hidden() -> Iterator[None]:
    """Makes ``import matplotlib`` fail (Keras catches the ImportError) while TensorFlow imports, and
    importable again afterwards: ``probe plot`` uses matplotlib's Figure directly."""
    hidden = [name for name in PLOTTING_PACKAGES if name not in sys.modules] if _lean else []
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """TensorFlow's C++ side logs at import time before TF_CPP_MIN_LOG_LEVEL applies."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf() -> ModuleType:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with nullcontext() if _verbose else _native_stderr_silenced(), _plotting_hidden():
        import tensorflow
    if _verbose:
        return tensorflow
    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|h5py)(\..*)?")
    tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow


def without_grappler() -> None:
    """Graphs probe runs are not rewritten by Grappler: values then do not depend on which tensors
    are fetched or watched (fetching a tensor blocks fusions such as Conv+BiasAdd+Relu, which
    changes rounding and NaN handling), and the first call of a freshly pruned function is 0.3-0.9 s
    cheaper on ResNet50 (see make bench). Process-wide, so every execution agrees."""
    tf().config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def session_config() -> Any:
    """A TF1 Session's config with Grappler off, as :func:`without_grappler` sets it for functions."""
    config = tf().compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def keras() -> ModuleType:
    tf()
    with _plotting_hidden():  # TensorFlow 2.21 imports Keras itself; others may leave it to us
        import keras

    return keras
