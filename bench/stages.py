"""Where ``probe`` spends its time, stage by stage (used by the bench; profiling only).

Each stage is one PUBLIC entry point of probe_cli (or of Keras/TensorFlow), wrapped
from the outside while a timer is on; nothing in probe_cli is changed. A hook that
cannot be found (a renamed or removed function) raises :class:`HookMissing`, and a
stage a command is expected to go through but did not raises :class:`StageNotRun`:
a row never disappears silently. :func:`check_hooks` finds every hook without
installing any, so the bench fails before it measures anything.

As a script it runs one real probe command in-process, exactly as the console
script would, with the stages timed:

    python bench/stages.py list MODEL
    python bench/stages.py dump MODEL --tensor T --input x.npy -o out.h5 --force

It prints one JSON object (stage -> seconds) on its last line; a missing hook or
stage exits with :data:`HOOK_EXIT`.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Collection, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

T = TypeVar("T")

#: The stage script's exit code for a missing hook or stage (the bench then stops).
HOOK_EXIT = 70


class HookError(RuntimeError):
    """The stage timings no longer match probe_cli: the bench stops rather than print fewer rows."""


class HookMissing(HookError):
    pass


class StageNotRun(HookError):
    pass


@dataclass(frozen=True)
class Hook:
    """One timed entry point: ``path`` inside ``module`` (``name``, ``Class.method``; ``BACKENDS.method``
    means that method of every backend in ``probe_cli.backends.registry.BACKENDS``)."""

    label: str
    module: str
    path: str
    #: counted only while the parent runs (and reported under it); None: a top-level stage
    parent: str | None = None
    #: runs beside the others (another thread): shown, but not summed into its parent's time
    beside: bool = False


OPEN = "open_model: load + trace (registry.open_model)"
LOAD = "Backend.load"
TRACE = "Backend.trace"
INDEX = "index_graph (names, TensorInfo)"
MAKE_FEEDS = "make_feeds (read the inputs)"
DUMP_MODEL = "dump_model (select -> execute -> write, per batch)"
SELECT = "select (patterns -> tensors)"
EXECUTORS = "Backend.executors (what computes the selection)"
RUNNER_INIT = "Runner(): prune the function"
PRUNE = "prune (subgraph import, wrap_function)"
RUN_BATCHES = "run_batches (feeding and executing, per batch)"
RUNNER_CALL = "Runner call: execute + to numpy"
#: Not a hook of its own: Runner.function, timed inside each Runner call.
EXECUTE = "the pruned function itself"
WRITER_OPEN = "ArchiveWriter() open temp file"
WRITER_STREAM = "ArchiveWriter.stream (HDF5 writes)"
WRITER_COMMIT = "ArchiveWriter.commit (close, rename)"
#: Statistics of tensors from 256 KiB up run on a second thread while the writes go on, so their
#: time overlaps the others' and is left out of the sum that "other time" is computed from.
STATS = "RunningStats.update (beside the writes, not summed)"
RENDER_DUMP = "render_dump"
RENDER_INDEX = "render_index"

PIPELINE, TFGRAPH, WRITER = "probe_cli.pipeline", "probe_cli.backends.tfgraph", "probe_cli.archive.writer"

#: In report order; a child is reported under its parent and counts only calls made while the parent
#: runs (Runner()'s prune calls wrap_function too, which is not trace).
HOOKS: tuple[Hook, ...] = (
    Hook(OPEN, "probe_cli.backends.registry", "open_model"),
    Hook(LOAD, "probe_cli.backends.registry", "BACKENDS.load", OPEN),
    Hook("sha256 of the model file (own thread)", "probe_cli.backends.base", "sha256_of", OPEN, beside=True),
    Hook("keras.models.load_model", "keras", "models.load_model", LOAD),
    Hook(TRACE, "probe_cli.backends.registry", "BACKENDS.trace", OPEN),
    Hook("tf.compat.v1.wrap_function", "tensorflow", "compat.v1.wrap_function", TRACE),
    Hook(INDEX, TFGRAPH, "index_graph", TRACE),
    Hook(MAKE_FEEDS, PIPELINE, "make_feeds"),
    Hook(DUMP_MODEL, PIPELINE, "dump_model"),
    Hook(SELECT, PIPELINE, "select", DUMP_MODEL),
    Hook("check_size", PIPELINE, "check_size", DUMP_MODEL),
    Hook(EXECUTORS, "probe_cli.backends.registry", "BACKENDS.executors", DUMP_MODEL),
    Hook(RUNNER_INIT, TFGRAPH, "Runner.__init__", EXECUTORS),
    Hook(PRUNE, TFGRAPH, "prune", RUNNER_INIT),
    Hook(WRITER_OPEN, WRITER, "ArchiveWriter.__init__", DUMP_MODEL),
    Hook("provenance", PIPELINE, "provenance", DUMP_MODEL),
    Hook(RUN_BATCHES, PIPELINE, "run_batches", DUMP_MODEL),
    Hook(RUNNER_CALL, TFGRAPH, "Runner.__call__", RUN_BATCHES),
    Hook(WRITER_STREAM, WRITER, "ArchiveWriter.stream", DUMP_MODEL),
    Hook(WRITER_COMMIT, WRITER, "ArchiveWriter.commit", DUMP_MODEL),
    Hook(STATS, "probe_cli.core.stats", "RunningStats.update", DUMP_MODEL, beside=True),
    Hook(RENDER_DUMP, "probe_cli.cli.render", "render_dump"),
    Hook(RENDER_INDEX, "probe_cli.cli.render", "render_index"),
)

#: What each command must go through; a stage missing from its table raises StageNotRun.
#: A dump of the model's output alone prunes nothing (the traced function computes it).
EXPECTED: dict[str, tuple[str, ...]] = {
    "list": (OPEN, LOAD, TRACE, INDEX, RENDER_INDEX),
    "dump": (OPEN, LOAD, TRACE, MAKE_FEEDS, DUMP_MODEL, SELECT, EXECUTORS, RUNNER_INIT, RUN_BATCHES, RUNNER_CALL)
    + (EXECUTE, WRITER_OPEN, WRITER_STREAM, WRITER_COMMIT, RENDER_DUMP),
}
#: A dump in the bench's own process, of a selection run before (its pruned function is reused).
EXPECTED_WARM_DUMP = (DUMP_MODEL, SELECT, RUN_BATCHES, RUNNER_CALL, EXECUTE, WRITER_STREAM, WRITER_COMMIT, STATS)


def _resolve(hook: Hook) -> list[tuple[Any, str]]:
    """(owner, attribute) pairs the hook wraps; raises HookMissing when any is gone."""
    where = f"{hook.module}.{hook.path}"
    try:
        owner: Any = importlib.import_module(hook.module)
    except ImportError as exc:
        raise HookMissing(f"stage {hook.label!r}: cannot import {hook.module}: {exc}") from exc
    *parents, attr = hook.path.split(".")
    if parents == ["BACKENDS"]:
        owners = list(getattr(owner, "BACKENDS", ()))
        if not owners:
            raise HookMissing(f"stage {hook.label!r}: {hook.module}.BACKENDS is missing or empty")
    else:
        for name in parents:
            if not hasattr(owner, name):
                raise HookMissing(f"stage {hook.label!r}: {where} is gone ({name!r} not found)")
            owner = getattr(owner, name)
        owners = [owner]
    for each in owners:
        if not callable(getattr(each, attr, None)):
            raise HookMissing(f"stage {hook.label!r}: {where} is gone ({type(each).__name__} has no {attr!r})")
    return [(each, attr) for each in owners]


def check_hooks() -> None:
    """Raises HookMissing unless every hook is found (imports TensorFlow and Keras)."""
    for hook in HOOKS:
        _resolve(hook)


def _probe_modules() -> list[Any]:
    return [m for name, m in list(sys.modules.items()) if m is not None and name.split(".")[0] == "probe_cli"]


class StageTimer:
    """Wraps every hook and sums the time spent in each; restores everything on exit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._running: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any, bool]] = []  # owner, attribute, original, was own attribute
        #: id(wrapper) -> (wrapper, original), to unwrap what a module imported by name while the timer was on
        self._wrappers: dict[int, tuple[Any, Any]] = {}

    @contextmanager
    def _stage(self, label: str) -> Iterator[None]:
        """Times one call, marked running meanwhile so that its children count (see HOOKS)."""
        self._running[label] = self._running.get(label, 0) + 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._running[label] -= 1
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

    def _counts(self, parent: str | None) -> bool:
        return parent is None or bool(self._running.get(parent))

    def _wrap(self, inner: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
        label, parent = hook.label, hook.parent
        if inspect.isgeneratorfunction(inner):  # timed while it produces each item, not while its consumer works

            @functools.wraps(inner)
            def timed_generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
                generator = inner(*args, **kwargs)
                counts = self._counts(parent)
                try:
                    while True:
                        with self._stage(label) if counts else _nothing():
                            try:
                                item = next(generator)
                            except StopIteration:
                                return
                        yield item
                finally:
                    generator.close()

            return timed_generator

        if label == RUNNER_CALL:
            return self._wrap_runner_call(inner, hook)

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._counts(parent):
                return inner(*args, **kwargs)
            with self._stage(label):
                return inner(*args, **kwargs)

        return timed

    def _wrap_runner_call(self, call: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
        """A Runner call, and inside it the pruned function alone (``Runner.function``; the rest is
        conversion). Runners built before the timer started (a reused selection) are timed alike."""

        @functools.wraps(call)
        def timed_call(runner: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._counts(hook.parent):
                return call(runner, *args, **kwargs)
            if not hasattr(runner, "function"):
                raise HookMissing(f"stage {EXECUTE!r}: Runner has no attribute 'function'")
            function = runner.function
            if function is not None:  # None: every fetch is an input, nothing runs
                runner.function = self._timed_function(function)
            try:
                with self._stage(hook.label):
                    return call(runner, *args, **kwargs)
            finally:
                runner.function = function

        return timed_call

    def _timed_function(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """The pruned function (a callable object, so no functools.wraps), timed as EXECUTE."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._stage(EXECUTE):
                return function(*args, **kwargs)

        return timed

    def _set(self, owner: Any, attr: str, value: Any) -> None:
        own = attr in vars(owner)
        original = vars(owner)[attr] if own else getattr(owner, attr)
        setattr(owner, attr, value)
        self._undo.append((owner, attr, original, own))

    def __enter__(self) -> StageTimer:
        try:
            for hook in HOOKS:
                for owner, attr in _resolve(hook):
                    inner = getattr(owner, attr)
                    wrapper = self._wrap(inner, hook)
                    self._wrappers[id(wrapper)] = (wrapper, inner)
                    self._set(owner, attr, wrapper)
                    if inspect.ismodule(owner):  # also where probe_cli imported it by name
                        for module in _probe_modules():
                            for name, value in list(vars(module).items()):
                                if value is inner and module is not owner:
                                    self._set(module, name, wrapper)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, original, own in reversed(self._undo):
            if own:
                setattr(owner, attr, original)
            else:  # an instance's attribute that came from its class
                delattr(owner, attr)
        self._undo.clear()
        for module in _probe_modules():  # imported by name while the timer was on
            for name, value in list(vars(module).items()):
                wrapper, original = self._wrappers.get(id(value), (None, None))
                if wrapper is not None and value is wrapper:
                    setattr(module, name, original)
        self._wrappers.clear()

    def check(self, expected: Collection[str]) -> None:
        """Raises StageNotRun unless every ``expected`` stage ran."""
        missing = [label for label in expected if label not in self.seconds]
        if missing:
            raise StageNotRun(
                f"stages not run: {', '.join(missing)} (probe_cli no longer calls these entry points here?)"
            )

    def report(self, total: float) -> dict[str, float]:
        """Stages in HOOKS order, children indented under their parent, and under each parent the time
        its children do not account for; last, the time no top-level stage accounts for."""
        out: dict[str, float] = {}
        labels = list(dict.fromkeys(hook.label for hook in HOOKS))  # a label may hook several backends
        hooks = {hook.label: hook for hook in HOOKS}
        #: "other time in ..." names a parent by its entry point
        names = {hook.label: hook.path.replace("BACKENDS.", "Backend.") for hook in HOOKS}
        children: dict[str | None, list[str]] = {}
        for label in labels:
            children.setdefault(hooks[label].parent, []).append(label)
        children.setdefault(RUNNER_CALL, []).append(EXECUTE)
        hooks[EXECUTE] = Hook(EXECUTE, "", "", RUNNER_CALL)

        def emit(parent: str, depth: int) -> float:
            """Rows of ``parent``'s children; returns the time they account for."""
            spent = 0.0
            for label in children.get(parent, []):
                if label not in self.seconds:
                    continue
                out["  " * depth + label] = self.seconds[label]
                if not hooks[label].beside:
                    spent += self.seconds[label]
                inner = emit(label, depth + 1)
                if inner:
                    out["  " * (depth + 1) + f"other time in {names[label]}"] = self.seconds[label] - inner
            return spent

        top = emit(None, 0)  # type: ignore[arg-type]
        out["rest (outside every stage: CLI or API, Python glue)"] = total - top
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def timed_call(
    fn: Callable[..., T], *args: Any, expected: Collection[str] = EXPECTED_WARM_DUMP, **kwargs: Any
) -> tuple[float, T, dict[str, float]]:
    """In-process use: one call of ``fn(*args, **kwargs)`` with every stage timed; raises StageNotRun
    unless the ``expected`` stages ran."""
    with StageTimer() as timer:
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        total = time.perf_counter() - start
    timer.check(expected)
    return total, value, timer.report(total)


def main(argv: list[str]) -> None:
    times: dict[str, float] = {}
    start = time.perf_counter()
    import probe_cli.cli as cli

    times["import probe_cli.cli (click, numpy, ...)"] = time.perf_counter() - start
    from probe_cli.backends import tfenv

    start = time.perf_counter()
    with tfenv.cli_process():  # as the probe command imports them
        tfenv.tf()
        tfenv.keras()
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
    timer.check(EXPECTED.get(argv[0], ()))
    times[f"probe {argv[0]} (after imports)"] = command
    times.update(timer.report(command))
    times["total inside the script (from its first line)"] = time.perf_counter() - T0
    print(json.dumps(times))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except HookError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(HOOK_EXIT)
