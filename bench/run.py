"""``make bench``: probe's speed as the ratios of issue 4 (and ratio 9, the Python API), on a keras.applications
model with random weights. ResNet50 unless ``--model`` names another.

One run builds (or reuses) the model, its SavedModel export and the inputs in
the work dir, measures every figure, prints each ratio against its target with
PASS/MISS, a stage breakdown of where probe's time goes, and writes everything
to ``<workdir>/results.json``. Timings are medians; nothing here is a test.
See bench/README.md.

    .venv/bin/python bench/bench.py [--model ResNet50] [--workdir build/bench/resnet50] [--repeats 3] [--no-stages]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import stages as stage_timings
from artifacts import BATCH, DEFAULT_MODEL, SEED, Work, application_names, ensure_artifacts, model_output
from inprocess import in_process
from measure import ROOT, CommandFailed, log, warm_memory
from onnx_ratios import onnx_ratios
from report import Results, machine, print_ratios, print_stages, versions, write_results
from scale import scale_out
from whole import memory_growth, whole_process, whole_process_dumps


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a keras.applications model, built with random weights (no download); not ConvNeXt or "
        "MobileNetV3, which Keras itself cannot load back from .h5",
    )
    parser.add_argument("--workdir", type=Path, help="where the model, inputs and results go (build/bench/<model>)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-stages",
        action="store_true",
        help="skip the stage breakdown (two stages.py processes; in-process dumps are timed alike)",
    )
    parser.add_argument(
        "--warm-memory", type=float, default=6.0, metavar="GIB", help="touch this much RAM first (0: don't)"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip ratios 10-12 (--stats-only)")
    parser.add_argument(
        "--no-all-stats", action="store_true", help="skip ratio 12 (every op tensor's statistics over many samples)"
    )
    parser.add_argument("--no-onnx", action="store_true", help="skip ratios 13-14 (the model's ONNX export)")
    parser.add_argument("--only-onnx", action="store_true", help="measure ratios 13-14 only")
    args = parser.parse_args(argv)
    known = {name.lower(): name for name in application_names()}
    if args.model.lower() not in known:
        parser.error(f"--model {args.model!r} is not a keras.applications model (e.g. ResNet50, MobileNetV2)")
    args.model = known[args.model.lower()]  # resnet50 -> ResNet50
    return args


def import_quietly() -> None:
    """TensorFlow and Keras, imported as the probe command imports them; then every stage hook is looked up,
    so a renamed entry point stops the bench before it measures anything (stages.HookMissing)."""
    from probe_cli.backends import tfenv

    with tfenv.cli_process():
        tfenv.tf()
        tfenv.keras()
    stage_timings.check_hooks()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or ROOT / "build" / "bench" / args.model.lower()
    work = Work(workdir.resolve(), args.model)

    started = time.perf_counter()
    work.root.mkdir(parents=True, exist_ok=True)
    build_s = ensure_artifacts(work)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    res = Results()
    mach = machine()
    import_quietly()
    vers = versions()
    import numpy as np

    sample = "x".join(str(d) for d in np.load(work.x8, mmap_mode="r").shape[1:])
    log(f"probe bench: {work.model} (keras.applications, weights=None, seed {SEED}), batch {BATCH}x{sample} float32")
    log(f"machine:  {mach['cpu']}, {mach['cores']} cores, {mach['ram']} RAM; {mach['os']}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in {"python": mach["python"], **vers}.items()))
    log(f"work dir: {work.root}" + (f" (built in {build_s:.1f} s)" if build_s else " (reused)"))
    load_start = os.getloadavg()
    log(f"timings:  median of {args.repeats}; in-process figures are warm, whole-process ones include start-up")
    log(f"load:     {load_start[0]:.2f} (1-min load average at start; above ~0.5 other work shares the cores)")
    if args.warm_memory > 0:
        warm_s = warm_memory(args.warm_memory)
        log(f"memory:   touched {args.warm_memory:g} GiB first in {warm_s:.1f} s (cold VM RAM: ~2.5 s/GiB, warm ~0.25)")
    log()
    log("figures:")
    if args.only_onnx:
        res.attempt("ONNX measurements", onnx_ratios, work, res, args.repeats)
        print_ratios(res)
        write_results(work.results, res, {}, {"machine": mach, "versions": vers, "model": work.model}, {})
        return 0
    with_stages = not args.no_stages
    found = in_process(work, res, args.repeats, with_stages)
    output_tensor = found.output_tensor
    if output_tensor is None:
        try:
            output_tensor = model_output(work)
        except CommandFailed as exc:
            res.note(f"cannot name the model's output: {exc}")
    tables: dict[str, Any] = dict(found.stages)
    whole = res.attempt(
        "whole-process measurements", whole_process, work, res, args.repeats, output_tensor, with_stages
    )
    tables.update(whole or {})
    res.attempt("whole-process dump measurements", whole_process_dumps, work, res, args.repeats, found.shapes)
    res.attempt("memory measurement", memory_growth, work, res, output_tensor)
    if not args.no_scale:
        res.attempt("--stats-only measurements", scale_out, work, res, args.repeats, not args.no_all_stats)
    if not args.no_onnx:
        res.attempt("ONNX measurements", onnx_ratios, work, res, args.repeats)
    for name in ("inproc_early", "inproc_layers", "inproc_all", "inproc_stream", "output"):
        work.archive(name).unlink(missing_ok=True)

    print_ratios(res)
    print_stages(tables)
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    log()
    log(f"1-min load average: {load_start[0]:.2f} at start, {load_end[0]:.2f} at the end")
    log(f"bench took {total:.0f} s; results in {work.results}")
    about = {
        "machine": mach,
        "versions": vers,
        "model": f"keras.applications.{work.model}(weights=None)",
        "seed": SEED,
        "batch": BATCH,
        "repeats": args.repeats,
    }
    after = {"bench_seconds": total, "load_average": {"start": load_start[0], "end": load_end[0]}}
    write_results(work.results, res, tables, about, after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
