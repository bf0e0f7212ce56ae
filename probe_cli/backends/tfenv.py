"""The one place TensorFlow is imported, lazily, and every process-wide setting probe touches.

``probe --help`` must stay fast, so nothing imports TensorFlow at module level;
library modules call :func:`tf` and :func:`keras` when they need them. The CLI owns
its process and silences TensorFlow for good (:func:`cli_process`); a library caller's
process is only borrowed: :func:`guest` and :func:`grappler_off` put back what they change.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import Any

_verbose = False
_cli = False
#: The names of the loggers TensorFlow, Keras and h5py log through.
_LOGGERS = ("tensorflow", "absl", "keras", "h5py")
_NOISY_MODULES = r"(keras|tensorflow|h5py)(\..*)?"

#: Imported by Keras at import time when installed, only for ``keras.visualization``, which
#: probe never calls: importing TensorFlow and Keras without it took 1.96 s instead of 2.28 s
#: (medians of 12 alternating runs; ``python -X importtime`` put matplotlib.pyplot at 0.6 s).
PLOTTING_PACKAGES = ("matplotlib",)


def verbose() -> bool:
    """Whether TensorFlow's messages are shown (``-v``); other verbose output follows it."""
    return _verbose


def set_verbose(verbose: bool) -> None:
    """Show TensorFlow's own log lines (``probe -v``), and probe's own notes (which loader read a
    SavedModel) as ``probe: ...`` lines on stderr; must be called before the first import."""
    global _verbose
    _verbose = verbose
    logger = logging.getLogger("probe_cli")
    for handler in [h for h in logger.handlers if h.get_name() == "probe-verbose"]:
        logger.removeHandler(handler)
    if verbose:
        handler = logging.StreamHandler(sys.stderr)  # the stream of this invocation (CliRunner swaps it)
        handler.set_name("probe-verbose")
        handler.setFormatter(logging.Formatter("probe: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@contextmanager
def cli_process() -> Iterator[None]:
    """For the CLI, which owns its process: TensorFlow imported inside is imported quietly (unless
    :func:`set_verbose`) and without :data:`PLOTTING_PACKAGES`. Keras then holds ``plt = None`` in its
    plotting helpers for the rest of the process, so outside this block (a library user who lets probe
    import TensorFlow) nothing is hidden or silenced."""
    global _cli
    saved, _cli = _cli, True
    try:
        yield
    finally:
        _cli = saved


@contextmanager
def _plotting_hidden() -> Iterator[None]:
    """Makes ``import matplotlib`` fail (Keras catches the ImportError) while TensorFlow imports, and
    importable again afterwards: ``probe plot`` uses matplotlib's Figure directly."""
    hidden = [name for name in PLOTTING_PACKAGES if name not in sys.modules] if _cli else []
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextmanager
def _native_stderr_into(target: int) -> Iterator[bool]:
    """The process's stderr (fd 2) pointed at ``target`` for the block, then put back; False when there is
    no fd 2 to point elsewhere."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield False
        return
    os.dup2(target, 2)
    try:
        yield True
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """TensorFlow's C++ side logs at import time before TF_CPP_MIN_LOG_LEVEL applies."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _native_stderr_into(devnull):
            yield
    finally:
        os.close(devnull)


@contextmanager
def native_stderr_without(noise: re.Pattern[str]) -> Iterator[None]:
    """Around a call whose C++ side logs to the process's stderr (fd 2): its lines matching ``noise`` are
    dropped, the rest written out afterwards, and fd 2 is put back, for a library caller's process."""
    with tempfile.TemporaryFile() as captured:
        try:
            with _native_stderr_into(captured.fileno()):
                yield
        finally:
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = b"".join(line for line in lines if not noise.search(line.decode(errors="replace")))
            if kept:
                os.write(2, kept)


def tf() -> ModuleType:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not _cli:  # a library caller's process: TensorFlow imports as it would for them
        with _plotting_hidden():
            import tensorflow
        return tensorflow
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with nullcontext() if _verbose else _native_stderr_silenced(), _plotting_hidden():
        import tensorflow
    if _verbose:
        return tensorflow
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    warnings.filterwarnings("ignore", module=_NOISY_MODULES)
    tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow


@contextmanager
def guest() -> Iterator[None]:
    """Around a library call: TensorFlow's and Keras' warnings and log lines inside stay hidden (unless
    :func:`set_verbose`), and the caller's warning filters and logger levels are put back afterwards."""
    if _verbose:
        yield
        return
    # absl's logger only once absl made it: created before absl.logging, it would be a plain Logger.
    known = logging.Logger.manager.loggerDict
    loggers = [
        logging.getLogger(name) for name in _LOGGERS if name != "absl" or isinstance(known.get(name), logging.Logger)
    ]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_NOISY_MODULES)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextmanager
def grappler_off() -> Iterator[None]:
    """Graphs probe runs are not rewritten by Grappler: values then do not depend on which tensors
    are fetched or watched (fetching a tensor blocks fusions such as Conv+BiasAdd+Relu, which
    changes rounding and NaN handling), and a freshly pruned function's first call is cheaper.
    The option is process-wide in TensorFlow, so it is set around each execution and put back
    exactly: the public setter would leave explicit defaults behind, a config that differs from
    the caller's and makes TensorFlow re-instantiate their functions once."""
    tf()
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = dict(ctx._optimizer_experimental_options)  # noqa: SLF001 - see the docstring
    if saved.get("disable_meta_optimizer"):
        yield
        return
    ctx.set_optimizer_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        ctx._optimizer_experimental_options = saved  # noqa: SLF001
        ctx._thread_local_data.function_call_options = None  # noqa: SLF001 - rebuilt from the config on use


def session_config() -> Any:
    """A TF1 Session's config with Grappler off, as :func:`grappler_off` sets it around functions."""
    config = tf().compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def versions() -> dict[str, str]:
    """TensorFlow's and Keras' versions, for the archive: without importing them (a TFLite model run by
    LiteRT needs neither), from their installed distributions when they are not imported yet."""
    from importlib import metadata

    found = {}
    for key, module, distributions in (
        ("tensorflow_version", "tensorflow", ("tensorflow", "tensorflow-cpu")),
        ("keras_version", "keras", ("keras",)),
    ):
        imported = getattr(sys.modules.get(module), "__version__", None)
        found[key] = imported or ""
        for distribution in () if imported else distributions:
            try:
                found[key] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def keras() -> ModuleType:
    tf()
    with _plotting_hidden():  # TensorFlow 2.21 imports Keras itself; others may leave it to us
        import keras

    return keras
