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
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

#: (label, module, class or None, attribute, parent label). Children are reported under their parent.
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
    ("Runner(): prune the function", "probe_cli.run", "Runner", "__init__", None),
    ("Runner call: execute + .numpy()", "probe_cli.run", "Runner", "__call__", None),
    ("ArchiveWriter() open temp file", "probe_cli.archive", "ArchiveWriter", "__init__", None),
    ("ArchiveWriter.stream (HDF5 writes)", "probe_cli.archive", "ArchiveWriter", "stream", None),
    ("ArchiveWriter.commit (close, rename)", "probe_cli.archive", "ArchiveWriter", "commit", None),
    ("RunningStats.update (min/max/mean/std)", "probe_cli.stats", "RunningStats", "update", None),
    ("render_dump", "probe_cli.render", None, "render_dump", None),
    ("render_index", "probe_cli.render", None, "render_index", None),
]


EXECUTE = "execute: the pruned function itself (rest: tf.constant, .numpy())"


class StageTimer:
    """Wraps the TARGETS that exist (the code under test changes) and sums the time spent in each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        self._parents: dict[str, str | None] = {}

    def _wrap(self, owner: Any, attr: str, label: str) -> None:
        inner = getattr(owner, attr)
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
                calls[label] = calls.get(label, 0) + 1

        if (getattr(owner, "__name__", ""), attr) == ("Runner", "__init__"):
            timed = self._runner_init(inner, label)
        setattr(owner, attr, timed)
        self._undo.append((owner, attr, inner))

    def _runner_init(self, inner: Callable[..., Any], label: str) -> Callable[..., Any]:
        """Times Runner() and, inside each later call, the pruned function alone (the rest is conversion)."""
        seconds, calls = self.seconds, self.calls
        child = "Runner call: execute + .numpy()"

        def timed_init(runner: Any, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                inner(runner, *args, **kwargs)
            finally:
                seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
                calls[label] = calls.get(label, 0) + 1
            pruned = getattr(runner, "function", None)
            if callable(pruned):

                def timed_pruned(*a: Any, **k: Any) -> Any:
                    begin = time.perf_counter()
                    try:
                        return pruned(*a, **k)
                    finally:
                        name = EXECUTE
                        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - begin
                        calls[name] = calls.get(name, 0) + 1

                runner.function = timed_pruned
                self._parents[EXECUTE] = child

        return timed_init

    def __enter__(self) -> StageTimer:
        for label, module_name, class_name, attr, parent in TARGETS:
            try:
                owner: Any = importlib.import_module(module_name)
                if class_name:
                    owner = getattr(owner, class_name)
                getattr(owner, attr)
            except (ImportError, AttributeError):
                continue
            self._wrap(owner, attr, label)
            self._parents[label] = parent
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
                top += self.seconds[label]
                for child, *_rest, child_parent in TARGETS:
                    if child_parent == label and child in self.seconds:
                        out["  " + child] = self.seconds[child]
                if self._parents.get(EXECUTE) == label and EXECUTE in self.seconds:
                    out["  " + EXECUTE] = self.seconds[EXECUTE]
        out["rest (CLI, batching, Python glue)"] = total - top
        return out


def main(argv: list[str]) -> None:
    times: dict[str, float] = {}
    start = time.perf_counter()
    import probe_cli.cli as cli

    times["import probe_cli.cli (click, numpy, ...)"] = time.perf_counter() - start
    from probe_cli import _tf

    start = time.perf_counter()
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


def timed_call(fn: Callable[[], Any]) -> tuple[float, Any, dict[str, float]]:
    """In-process use: one call of ``fn`` with every stage timed."""
    with StageTimer() as timer:
        start = time.perf_counter()
        value = fn()
        total = time.perf_counter() - start
    return total, value, timer.report(total)
