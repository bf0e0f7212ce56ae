"""What the bench reports: the ratios and their targets, each figure as it is measured, the ratio and
stage tables at the end, and ``results.json``."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any, NamedTuple, TypeVar

from measure import log
from stages import HookError

T = TypeVar("T")

#: Every ratio's target: number -> (comparison, bound). Issue 4's eight, 9 for the Python API, 10-12 for
#: --stats-only (issue 10).
TARGETS: dict[int, tuple[str, float]] = {
    1: ("<=", 1.0),
    2: ("<=", 1.3),
    3: ("<=", 1.5),
    4: ("<=", 1.3),
    5: ("<=", 1.0),
    6: (">=", 0.8),
    7: ("<", 0.5),
    8: ("<=", 1.1),
    9: ("<=", 1.3),
    10: ("<=", 1.0),
    11: ("<=", 1.1),
    12: ("<=", 3600.0),  # seconds: it must finish, on this 2-core machine, within the hour
    13: ("<=", 1.0),  # ONNX, issue 23: every node output, whole process
    14: ("<=", 1.3),  # ONNX: the same in process, against a warm session
}


class AllOf(NamedTuple):
    """Ratios 2 and 3: what "all layer outputs" and "all op tensors" select, for the library and the CLI alike."""

    key: str
    number: int
    #: "layer" or "tensor": pattern '.*' as Model.dump's layers= or tensors=, probe dump's --layer or --tensor
    kind: str
    label: str


ALL_OF = (
    AllOf("layers", 2, "layer", "all layer outputs"),
    AllOf("all", 3, "tensor", "all op tensors"),
)

LABEL_5 = "probe dump (output) / saved_model_cli run, whole process"
LABEL_6 = "dump throughput ({n} samples, batches of {batch}) / model.predict, {how}"
LABEL_8 = "peak memory N={large} / N={small} (bounded memory)"

NO_OUTPUT = "not measured: the model's output could not be named (see the notes)"


def fmt_s(seconds: float) -> str:
    return f"{seconds:8.3f} s"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class Results:
    """Figures, ratios and notes, printed as they come and kept for results.json."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        self.ratios: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"  {text}")

    def attempt(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``; a failure is noted and the bench goes on with what can still be measured,
        except a HookError: stage timings that no longer match probe_cli stop the bench."""
        try:
            return fn(*args)
        except HookError:
            raise
        except Exception as exc:  # noqa: BLE001 - report and go on
            self.note(f"{what} failed: {type(exc).__name__}: {exc}")
            return None

    def figure(
        self, key: str, label: str, seconds: float | None = None, *, runs: list[float] | None = None, **extra: Any
    ) -> float:
        """Records and prints one figure, and returns its seconds: ``seconds``, or the median of ``runs``."""
        if runs is not None:
            seconds, extra = median(runs), {"runs": runs, **extra}
        assert seconds is not None, "a figure needs seconds or runs"
        self.figures[key] = {"label": label, "seconds": seconds, **extra}
        shown = {k: v for k, v in extra.items() if k in ("bytes", "note")}
        if "runs" in extra:
            shown["runs"] = "[" + ", ".join(f"{t:.2f}" for t in extra["runs"]) + "]"
        detail = "".join(f"  {k}={v}" for k, v in shown.items())
        log(f"  {label:<62} {fmt_s(seconds)}{detail}")
        return seconds

    def ratio(self, number: int, label: str, value: float | None, status: str | None = None, note: str = "") -> None:
        """Records ratio ``number`` against its target (TARGETS); ``status`` overrides PASS/MISS."""
        op, target = TARGETS[number]
        if status is None:
            assert value is not None, "a ratio without a value needs a status"
            passed = value <= target if op == "<=" else value >= target if op == ">=" else value < target
            status = "PASS" if passed else "MISS"
        self.ratios.append(
            {
                "number": number,
                "label": label,
                "value": value,
                "op": op,
                "target": target,
                "status": status,
                "note": note,
            }
        )


def proc_field(path: str, key: str) -> str | None:
    """The value of ``key`` in a ``key: value`` file under /proc, or None (not Linux, or no such line)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == key), None)


def machine() -> dict[str, Any]:
    cpu = proc_field("/proc/cpuinfo", "model name") or "unknown"
    mem_total = proc_field("/proc/meminfo", "MemTotal")  # "24567890 kB"
    ram = int(mem_total.split()[0]) * 1024 if mem_total else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "ram": fmt_bytes(ram) if ram else "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    import h5py
    import keras
    import numpy
    import tensorflow as tf

    import probe_cli

    return {
        "probe": probe_cli.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": numpy.__version__,
    }


def print_ratios(res: Results) -> None:
    log()
    log("ratios (issue 4 targets; 9: the Python API):")
    width = max((len(r["label"]) for r in res.ratios), default=0)
    for r in sorted(res.ratios, key=lambda r: r["number"]):
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        log(f"  {r['number']}. {r['label']:<{width}} {value:>7}   target {r['op']} {r['target']:<4} {r['status']}")
        if r["note"]:
            log(f"       {r['note']}")


def print_stages(stages: dict[str, Any]) -> None:
    if not stages:
        return
    log()
    log("where the time goes (one pass each; seconds):")
    for key, table in stages.items():
        log(f"  {key}:")
        if "error" in table:
            log(f"    error: {table['error']}")
            continue
        for name, value in table.items():
            log(f"    {name:<60} {value:8.3f}")


def write_results(
    path: Path, res: Results, stages: dict[str, Any], about: dict[str, Any], after: dict[str, Any]
) -> None:
    """results.json: ``about`` (machine, versions, model, ...), every figure, ratio, stage table and note, then
    ``after`` (the bench's own time and load)."""
    document = {**about, "figures": res.figures, "ratios": res.ratios, "stages": stages, "notes": res.notes, **after}
    path.write_text(json.dumps(document, indent=2) + "\n")
