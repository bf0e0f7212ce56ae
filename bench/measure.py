"""How the bench times things: one call, one whole process, peak memory, both sides of a ratio in turn.

Also the memory warming every gigabyte-sized step needs on this VM (see :func:`warm_memory`).
Nothing here knows about probe or the ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin, not resolved: its python is a symlink
PROBE = BIN / "probe"

#: Subprocesses get the same quiet environment; probe sets this itself anyway.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}

T = TypeVar("T")
U = TypeVar("U")


def log(text: str = "") -> None:
    print(text, flush=True)


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """Seconds of one call of ``fn(*args, **kwargs)``, and its value."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def seconds(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds of one call; its value is dropped at once (gigabytes of results must not pile up)."""
    return timed(fn, *args, **kwargs)[0]


class CommandFailed(RuntimeError):
    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


def run_cmd(cmd: list[Any], *, capture: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one whole process; stdout goes to /dev/null unless captured."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        what = " ".join(str(c) for c in cmd[:3])
        raise CommandFailed(f"{what} ... exited {proc.returncode}: {' | '.join(tail)}", proc.returncode)
    return elapsed, proc


def wall(cmd: list[Any]) -> float:
    """Wall time of one whole process."""
    return run_cmd(cmd)[0]


#: Runs a command and prints its peak RSS (KiB). A fresh interpreter between the bench and the
#: measured process matters: Linux carries a process's peak RSS across fork and exec, so a child
#: of this (large) bench process would report the bench's own peak.
RSS_SCRIPT = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(cmd: list[Any]) -> int:
    """Peak resident memory (bytes) of one whole process, from the kernel's own accounting."""
    return wall_and_peak(cmd)[1]


def wall_and_peak(cmd: list[Any]) -> tuple[float, int]:
    """Wall time and peak resident memory (bytes) of one whole process, from one run; the wall time
    includes starting the small interpreter that measures the peak (tens of milliseconds)."""
    elapsed, proc = run_cmd([sys.executable, "-c", RSS_SCRIPT, *cmd], capture=True)
    code, kib = (int(v) for v in proc.stdout.split())
    if code != 0:
        raise CommandFailed(f"{' '.join(str(c) for c in cmd[:3])} ... exited {code}", code)
    return elapsed, kib * 1024


def alternate(first: Callable[[], T], second: Callable[[], U], repeats: int) -> tuple[list[T], list[U]]:
    """Results of ``first`` then ``second``, ``repeats`` rounds, so both sides of a ratio meet the same machine.

    Whole-process times on this VM come in slow and fast spells (the host
    reclaims and hands back memory; VGG16's ``probe list`` took 5.4 s, then
    3.5 s): three runs of one command followed by three of the other once gave
    its list ratio as 1.44, where alternating runs gave 0.94 and 0.96.
    """
    results: tuple[list[T], list[U]] = ([], [])
    for _ in range(repeats):
        results[0].append(first())
        results[1].append(second())
    return results


def warm_memory(gib: float) -> float:
    """Touches ``gib`` GiB once and frees it; returns the seconds it took.

    On this VM the first touch of guest RAM the host has not backed costs
    about 2.5 s/GiB, later touches about 0.25 s/GiB, and free memory goes back
    to the host within seconds (virtio-balloon free page reporting, order-9
    blocks). Any measurement that allocates fresh GiBs (all-tensor dumps, their
    raw-write baseline, the page cache) would otherwise mostly time that,
    depending on what ran just before. Warming right before each timed step
    makes probe and the baselines see the same memory.
    """
    import numpy as np

    start = time.perf_counter()
    chunk = 1 << 28  # 256 MiB
    blocks = [np.ones(chunk // 4, np.float32) for _ in range(int(gib * (1 << 30) // chunk))]
    del blocks
    return time.perf_counter() - start


def warmed(nbytes: int, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` (a timed step whose results take ``nbytes``), each call right after warming that much memory
    and some slack, untimed."""

    def run() -> T:
        warm_memory(nbytes / 2**30 + 0.5)
        return fn()

    return run


def fresh_start(path: Path, nbytes: int, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` (a timed write of ``nbytes`` to ``path``), each call after an untimed fresh start: no old
    file, no pending writes (flushed, so each write starts from the same state), and warm memory for
    its results and as much page cache."""

    def run() -> T:
        path.unlink(missing_ok=True)
        os.sync()
        warm_memory(2 * nbytes / 2**30 + 0.5)
        return fn()

    return run
