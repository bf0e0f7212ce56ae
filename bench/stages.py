"""Where ``probe`` spends its time, stage by stage (used by bench.py; profiling only).

As a script it runs one real probe command in-process, exactly as the console
script would, with probe's own functions wrapped from the outside so each
stage's time is recorded; nothing in probe_cli is changed:

    python bench/stages.py list MODEL
    python bench/stages.py dump MODEL --tensor T --input x.npy -o out.h5 --force

It prints one JSON object (stage -> seconds) on its last line.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

T = TypeVar("T")

RUNNER_INIT = "Runner(): prune the function"
RUNNER_CALL = "Runner call: execute + .numpy()"
EXECUTE = "execute: the pruned function itself (rest: tf.constant, .numpy())"
#: Statistics of tensors from 256 KiB up run on a second thread while the writes go on, so their
#: time overlaps the others' and is left out of the sum that "rest" is computed from.
STATS = "RunningStats.update (min/max/mean/std; beside the writes, not summed)"

#: (label, module, class or None, attribute, parent label). Children are reported under their parent, and
#: count only calls made while it runs: Runner()'s prune calls wrap_function too, which is not trace.
TARGETS: list[tuple[str, str, str | None, str, str | None]] = [
    ("load", "probe_cli.load", None, "load", None),
    ("load: sha256 of the model file (own thread)", "probe_cli.load", None, "sha256_of", "load"),
    ("load: keras.models.load_model", "keras.models", None, "load_model", "load"),
    ("trace", "probe_cli.trace", None, "trace", None),
    ("trace: tf.compat.v1.wrap_function", "tensorflow.compat.v1", None, "wrap_function", "trace"),
    ("trace: _index_graph (names, TensorInfo)", "probe_cli.trace", None, "_index_graph", "trace"),
    ("resolve", "probe_cli.pipeline", None, "resolve", None),
    ("make_feeds", "probe_cli.pipeline", None, "make_feeds", None),
    ("provenance", "probe_cli.pipeline", None, "provenance", None),
    ("check_size", "probe_cli.pipeline", None, "check_size", None),
    (RUNNER_INIT, "probe_cli.run", "Runner", "__init__", None),
    ("prune: _prune (subgraph import, wrap_function)", "probe_cli.run", None, "_prune", RUNNER_INIT),
    (RUNNER_CALL, "probe_cli.run", "Runner", "__call__", None),
    ("ArchiveWriter() open temp file", "probe_cli.archive", "ArchiveWriter", "__init__", None),
    ("ArchiveWriter.stream (HDF5 writes)", "probe_cli.archive", "ArchiveWriter", "stream", None),
    ("ArchiveWriter.commit (close, rename)", "probe_cli.archive", "ArchiveWriter", "commit", None),
    (STATS, "probe_cli.stats", "RunningStats", "update", None),
    ("render_dump", "probe_cli.render", None, "render_dump", None),
    ("render_index", "probe_cli.render", None, "render_index", None),
]


class StageTimer:
    """Wraps the TARGETS that exist (the code under test changes) and sums the time spent in each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._running: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    @contextmanager
    def _stage(self, label: str) -> Iterator[None]:
        """Times one call, marked running meanwhile so that its children count (see TARGETS)."""
        self._running[label] = self._running.get(label, 0) + 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._running[label] -= 1
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

    def _timed(self, inner: Callable[..., T], label: str, parent: str | None) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            if parent is not None and not self._running.get(parent):
                return inner(*args, **kwargs)
            with self._stage(label):
                return inner(*args, **kwargs)

        return timed

    def _runner_init(self, init: Callable[..., None]) -> Callable[..., None]:
        """Runner(), and inside each later call, the pruned function alone (the rest is conversion)."""

        def timed_init(runner: Any, *args: Any, **kwargs: Any) -> None:
            init(runner, *args, **kwargs)
            if callable(getattr(runner, "function", None)):
                runner.function = self._timed(runner.function, EXECUTE, None)

        return timed_init

    def __enter__(self) -> StageTimer:
        for label, module_name, class_name, attr, parent in TARGETS:
            try:
                owner: Any = importlib.import_module(module_name)
                if class_name:
                    owner = getattr(owner, class_name)
                inner = getattr(owner, attr)
            except (ImportError, AttributeError):
                continue
            timed = self._timed(inner, label, parent)
            setattr(owner, attr, self._runner_init(timed) if label == RUNNER_INIT else timed)
            self._undo.append((owner, attr, inner))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, inner in reversed(self._undo):
            setattr(owner, attr, inner)
        self._undo.clear()

    def report(self, total: float) -> dict[str, float]:
        """Top-level stages in TARGETS order, each followed by its children, then the rest."""
        out: dict[str, float] = {}
        top = 0.0
        for label, _module, _cls, _attr, parent in TARGETS:
            if parent is None and label in self.seconds:
                out[label] = self.seconds[label]
                top += self.seconds[label] if label != STATS else 0.0
                for child, *_rest, child_parent in TARGETS:
                    if child_parent == label and child in self.seconds:
                        out["  " + child] = self.seconds[child]
                if label == RUNNER_CALL and EXECUTE in self.seconds:
                    out["  " + EXECUTE] = self.seconds[EXECUTE]
        out["rest (CLI, batching, Python glue)"] = total - top
        return out


def timed_call(fn: Callable[..., T], *args: Any) -> tuple[float, T, dict[str, float]]:
    """In-process use: one call of ``fn(*args)`` with every stage timed."""
    with StageTimer() as timer:
        start = time.perf_counter()
        value = fn(*args)
        total = time.perf_counter() - start
    return total, value, timer.report(total)


def main(argv: list[str]) -> None:
    times: dict[str, float] = {}
    start = time.perf_counter()
    import probe_cli.cli as cli

    times["import probe_cli.cli (click, numpy, ...)"] = time.perf_counter() - start
    from probe_cli import _tf

    start = time.perf_counter()
    with _tf.lean_imports():  # as the probe command imports them
        _tf.tf()
        _tf.keras()
    times["import tensorflow + keras"] = time.perf_counter() - start
    stdout = sys.stdout
    with StageTimer() as timer, open(os.devnull, "w") as devnull:
        sys.stdout = devnull
        start = time.perf_counter()
        try:
            cli.cli.main(args=argv, prog_name="probe", standalone_mode=False)
        finally:
            sys.stdout = stdout
        command = time.perf_counter() - start
    times[f"probe {argv[0]} (after imports)"] = command
    times.update(timer.report(command))
    times["total inside the script (from its first line)"] = time.perf_counter() - T0
    print(json.dumps(times))


if __name__ == "__main__":
    main(sys.argv[1:])
