"""Ratios 10-12 (statistics over datasets): ``dump --stats-only`` of every op tensor against TensorFlow
Debugger V2 recording FULL_HEALTH of every tensor around ``model.predict``, over the same samples (time,
then peak memory, from the same alternating runs), and every op tensor's statistics over many samples."""

from __future__ import annotations

import json
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from artifacts import BIG_BATCH, LARGE_N, SMALL_N, Work, large_input
from baselines import tfdbg_command
from measure import PROBE, CommandFailed, alternate, log, run_cmd, wall_and_peak
from report import Results

LABEL_10 = f"dump --stats-only of every op tensor ({SMALL_N} samples) / tfdbg FULL_HEALTH, whole process"
LABEL_11 = f"peak memory of that --stats-only dump / tfdbg FULL_HEALTH's ({SMALL_N} samples)"
LABEL_12 = f"dump --stats-only of every op tensor, {LARGE_N} samples, finishes (s)"


def stats_command(work: Work, inputs: Any, archive: Any, *options: str) -> list[Any]:
    return [PROBE, "dump", work.h5, "--tensor", ".*", "--stats-only", *options, "-i", inputs,
            "--batch-size", BIG_BATCH, "-o", archive, "--force"]  # fmt: skip


def tfdbg(work: Work) -> tuple[float, int]:
    """One run of the tfdbg script over SMALL_N samples; its recording is removed afterwards, untimed."""
    root = work.root / "tfdbg"
    shutil.rmtree(root, ignore_errors=True)
    try:
        return wall_and_peak(tfdbg_command(work, work.x_small, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def options_cost(work: Work, res: Results) -> None:
    """What ``--histogram`` and ``--channels`` cost, in one warm process (bench/stats_floor.py): the
    forward pass alone, with the default statistics, with the detailed ones."""
    script = Path(__file__).with_name("stats_floor.py")
    _, proc = run_cmd([sys.executable, script, work.model, work.root], capture=True)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    prefix = f"warm, in one process, every op tensor of {SMALL_N} samples:"
    res.figure("floor_forward", f"{prefix} forward pass, each tensor summed", found["forward"])
    res.figure("floor_default", "  the same with the default statistics", found["default"])
    res.figure("floor_detailed", "  the same with --histogram and --channels", found["detailed"])
    res.figure("floor_histogram", "  the same with TensorFlow's histogram of each tensor alone", found["histogram"])
    added = found["default"] - found["forward"]
    if added > 0:
        res.note(
            f"--histogram/--channels add {found['detailed'] - found['forward']:.1f} s to the forward pass where the "
            f"default statistics add {added:.1f} s ({(found['detailed'] - found['forward']) / added:.1f}x)"
        )


def scale_out(work: Work, res: Results, repeats: int, all_tensors: bool) -> None:
    archive = work.archive("stats")
    runs, baselines = alternate(
        partial(wall_and_peak, stats_command(work, work.x_small, archive)), partial(tfdbg, work), repeats
    )
    label = f"probe dump --stats-only --tensor '.*', {SMALL_N} samples"
    t_stats = res.figure("stats_all", label, runs=[r[0] for r in runs])
    t_dbg = res.figure("tfdbg", "python: load + model.predict under tfdbg FULL_HEALTH (ratio 10's baseline)",
                       runs=[b[0] for b in baselines])  # fmt: skip
    res.ratio(10, LABEL_10, t_stats / t_dbg)
    peak_stats, peak_dbg = max(r[1] for r in runs), max(b[1] for b in baselines)
    log(f"  {'peak RSS of --stats-only (highest of its runs)':<62} {peak_stats / 2**20:8.0f} MiB")
    log(f"  {'peak RSS of the tfdbg script (highest of its runs)':<62} {peak_dbg / 2**20:8.0f} MiB")
    res.figures["stats_all"]["peak_rss"] = [r[1] for r in runs]
    res.figures["tfdbg"]["peak_rss"] = [b[1] for b in baselines]
    res.ratio(11, LABEL_11, peak_stats / peak_dbg)
    log(f"  {'  its archive':<62} {archive.stat().st_size / 2**20:8.1f} MiB")
    res.attempt("the cost of --histogram and --channels", options_cost, work, res)

    if all_tensors:
        started = time.perf_counter()
        try:
            _, peak = wall_and_peak(stats_command(work, large_input(work), archive))
        except CommandFailed as exc:
            res.ratio(12, LABEL_12, None, status="MISS", note=f"failed: {exc}")
        else:
            res.ratio(12, LABEL_12, time.perf_counter() - started)
            log(f"  {f'  its peak RSS ({LARGE_N} samples; {SMALL_N}: above)':<62} {peak / 2**20:8.0f} MiB")
            res.figures["stats_large_peak"] = {"label": f"peak RSS, {LARGE_N} samples", "bytes": peak}
    archive.unlink(missing_ok=True)
