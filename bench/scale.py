"""Ratios 10-12 (datasets beyond one process): ``dump --stats-only`` against ``model.predict`` over the same
samples, its peak memory over few and many samples, and every op tensor's statistics over many samples."""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from artifacts import BIG_BATCH, BIG_N, LARGE_N, SMALL_N, Work, large_input
from baselines import predict_script
from measure import PROBE, CommandFailed, alternate, log, peak_rss, run_cmd, wall
from report import Results

LABEL_10 = f"dump --stats-only of every layer output ({BIG_N} samples) / model.predict, whole process"
LABEL_11 = f"peak memory of --stats-only, N={LARGE_N} / N={SMALL_N}"
LABEL_12 = f"dump --stats-only of every op tensor, {LARGE_N} samples, finishes (s)"


def stats_command(work: Work, inputs: Any, archive: Any, kind: str = "--layer") -> list[Any]:
    return [PROBE, "dump", work.h5, kind, ".*", "--stats-only", "-i", inputs, "--batch-size", BIG_BATCH,
            "-o", archive, "--force"]  # fmt: skip


def stats_floor(work: Work, res: Results, t_pred: float) -> None:
    """Ratio 10's parts, in one warm process (bench/stats_floor.py): what a histogram alone costs against
    what the target leaves for all the statistics."""
    script = Path(__file__).with_name("stats_floor.py")
    _, proc = run_cmd([sys.executable, script, work.model, work.root], capture=True)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    prefix = f"warm, in one process, every layer output of {BIG_N} samples:"
    res.figure("floor_forward", f"{prefix} forward pass, each output summed", found["forward"])
    res.figure("floor_histogram", "  the same with TensorFlow's histogram of each output instead", found["histogram"])
    res.figure("floor_statistics", "  the same with probe's statistics of each output", found["statistics"])
    count = f"{found['values']:.3g}"
    res.figure("floor_bincount", f"  NumPy bincount (one core) over its {count} values", found["bincount"])
    res.note(
        f"ratio 10 leaves {0.3 * t_pred:.1f} s (0.3 x predict) for all statistics; "
        f"a histogram alone takes {found['histogram'] - found['forward']:.1f} s with TensorFlow's kernel"
    )


def scale_out(work: Work, res: Results, repeats: int, all_tensors: bool) -> None:
    archive = work.archive("stats")
    runs, predicts = alternate(
        partial(wall, stats_command(work, work.x_big, archive)), partial(predict_script, work), repeats
    )
    t_stats = res.figure("stats_layers", f"probe dump --stats-only of every layer output, {BIG_N} samples", runs=runs)
    t_pred = res.figure("predict_stats", f"python: load + model.predict({BIG_N}) (ratio 10's baseline)",
                        runs=[p[0] for p in predicts])  # fmt: skip
    res.ratio(10, LABEL_10, t_stats / t_pred)
    log(f"  {'  its archive':<62} {archive.stat().st_size / 2**20:8.1f} MiB")
    stats_floor(work, res, t_pred)

    peaks = {}
    for n, path in ((SMALL_N, work.x_small), (LARGE_N, large_input(work))):
        peaks[n] = peak_rss(stats_command(work, path, archive))
        log(f"  {'peak RSS of --stats-only of every layer output, N=' + str(n):<62} {peaks[n] / 2**20:8.0f} MiB")
    res.ratio(11, LABEL_11, peaks[LARGE_N] / peaks[SMALL_N])

    if all_tensors:
        started = time.perf_counter()
        try:
            run_cmd(stats_command(work, large_input(work), archive, "--tensor"))
        except CommandFailed as exc:
            res.ratio(12, LABEL_12, None, status="MISS", note=f"failed: {exc}")
        else:
            res.ratio(12, LABEL_12, time.perf_counter() - started)
    archive.unlink(missing_ok=True)
