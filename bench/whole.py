"""Ratios 2-8 as whole processes, start-up included, as a user meets them; and the stage tables of a
``probe list`` and a ``probe dump`` run by stages.py."""

from __future__ import annotations

import json
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any

from artifacts import BATCH, BIG_BATCH, BIG_N, LARGE_N, SMALL_N, Work, large_input
from baselines import load_command, predict_script, raw_dump_command, saved_model_cli_run, signature_input_key
from measure import PROBE, CommandFailed, alternate, fresh_start, log, peak_rss, run_cmd, wall
from report import ALL_OF, LABEL_5, LABEL_6, LABEL_8, NO_OUTPUT, Results
from stages import HOOK_EXIT, HookError

STAGES = Path(__file__).resolve().parent / "stages.py"
LABEL_6_WHOLE = LABEL_6.format(n=BIG_N, batch=BIG_BATCH, how="whole process")
LABEL_8_N = LABEL_8.format(large=LARGE_N, small=SMALL_N)


def stream_command(work: Work, output_tensor: str, inputs: Path, archive: Path) -> list[Any]:
    """``probe dump`` of the model's output over ``inputs`` in batches of BIG_BATCH (ratios 6 and 8)."""
    selection = ["--tensor", re.escape(output_tensor)]
    return [PROBE, "dump", work.h5, *selection, "-i", inputs, "--batch-size", BIG_BATCH, "-o", archive, "--force"]


def streamed(archive: Path, samples: int) -> tuple[bool, str]:
    """Whether a dump wrote its tensor as a dataset growing along axis 0 (issue 4's streaming layout)."""
    import h5py

    found: list[Any] = []
    with h5py.File(archive, "r") as file:
        file["tensors"].visititems(
            lambda _n, obj: (
                found.append((obj.shape, obj.maxshape, obj.chunks)) if isinstance(obj, h5py.Dataset) else None
            )
        )
    if not found:
        return False, "the archive holds no tensor"
    shape, maxshape, chunks = found[0]
    if shape[0] != samples:
        return False, f"tensor has {shape[0]} rows for {samples} samples"
    if maxshape[0] is not None or chunks is None:
        return False, "tensor is one fixed-size dataset (all samples fed as one batch), not streamed"
    return True, ""


def memory_growth(work: Work, res: Results, output_tensor: str | None) -> None:
    """Ratio 8: peak memory of streaming SMALL_N vs LARGE_N samples through the same dump: must not grow with N."""
    if output_tensor is None:
        res.ratio(8, LABEL_8_N, None, "n/a", NO_OUTPUT)
        return
    peaks = {}
    for n, path in ((SMALL_N, work.x_small), (LARGE_N, large_input(work))):
        archive = work.archive(f"mem{n}")
        peaks[n] = peak_rss(stream_command(work, output_tensor, path, archive))
        archive.unlink(missing_ok=True)
        res.figures[f"peak_rss_{n}"] = {"label": f"peak RSS, dump of the output, N={n}", "bytes": peaks[n]}
        label = f"peak RSS of probe dump (output, batches of {BIG_BATCH}), N={n}"
        log(f"  {label:<62} {peaks[n] / 2**20:8.0f} MiB")
    res.ratio(8, LABEL_8_N, peaks[LARGE_N] / peaks[SMALL_N])


def whole_process_dumps(work: Work, res: Results, repeats: int, shapes: dict[str, list[tuple[list[int], str]]]) -> None:
    """Ratios 2 and 3 as a user meets them: ``probe dump`` vs the script it replaces, both whole processes."""
    import numpy as np

    for sel in ALL_OF:
        ratio_label = f"dump of {sel.label} / (load + forward + raw write), whole process"
        if sel.key not in shapes:  # the in-process part skipped or failed before knowing the bytes
            res.ratio(sel.number, ratio_label, None, status="n/a", note="sizes unknown (see above)")
            continue
        spec = work.root / f"shapes_{sel.key}.json"
        spec.write_text(json.dumps(shapes[sel.key]))
        nbytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes[sel.key])
        archive, raw = work.archive(f"whole_{sel.key}"), work.root / "raw_whole.h5"
        cmd = [PROBE, "dump", work.h5, f"--{sel.kind}", ".*", "--input", work.x8, "-o", archive, "--force"]
        probe_runs, raw_runs = alternate(  # each from equally warm memory (see measure.warm_memory)
            fresh_start(archive, nbytes, partial(wall, cmd)),
            fresh_start(raw, nbytes, partial(wall, raw_dump_command(work, spec, raw))),
            repeats,
        )
        for path in (archive, raw, spec):
            path.unlink(missing_ok=True)
        t_probe = res.figure(f"whole_{sel.key}", f"probe dump of {sel.label}, whole process", runs=probe_runs)
        t_raw = res.figure(
            f"whole_raw_{sel.key}", "  python: load + forward + raw h5py write of the same bytes", runs=raw_runs
        )
        res.ratio(sel.number, ratio_label, t_probe / t_raw)


def whole_process_stream(
    res: Results, stream_runs: list[float], predicts: list[tuple[float, float]], streams: bool, why: str
) -> None:
    """Ratio 6's figures and ratio, whole process; a dump that did not stream is a miss."""
    predict_runs, predict_only = (list(side) for side in zip(*predicts))
    t_stream = res.figure("stream", f"probe dump of the output over {BIG_N} samples, whole process", runs=stream_runs)
    t_pred = res.figure("predict", f"python: load + model.predict({BIG_N}, batch_size={BIG_BATCH})", runs=predict_runs)
    res.figure("predict_only", "  of which model.predict alone", runs=predict_only)
    if streams:  # same samples on both sides, so the throughput ratio is the inverse ratio of the wall times
        res.ratio(6, LABEL_6_WHOLE, t_pred / t_stream)
    else:
        res.ratio(6, LABEL_6_WHOLE, None, status="MISS", note=why)


def stage_table(argv: list[Any]) -> dict[str, Any]:
    """One probe command run by stages.py: its stages, and what the process spent outside the script.

    A stage script that finds its hooks gone stops the bench (HookError); any other failure is the table's."""
    try:
        elapsed, proc = run_cmd([sys.executable, STAGES, *argv], capture=True)
        table = json.loads(proc.stdout.strip().splitlines()[-1])
    except CommandFailed as exc:
        if exc.returncode == HOOK_EXIT:
            raise HookError(str(exc)) from None
        return {"error": str(exc)}
    except (ValueError, KeyError, IndexError) as exc:
        return {"error": f"unreadable stage table: {exc}"}
    inside = table.pop("total inside the script (from its first line)")
    return {"process wall": elapsed, "python start-up + exit (wall - inside)": elapsed - inside, **table}


def whole_process(work: Work, res: Results, repeats: int, output_tensor: str | None, stages: bool) -> dict[str, Any]:
    """Ratios 4-7 as whole processes, start-up included; returns the stage tables of a list and a dump."""
    out: dict[str, Any] = {}

    # 7: --help
    t_help = res.figure("help", "probe --help", runs=[wall([PROBE, "--help"]) for _ in range(repeats)])
    res.ratio(7, "probe --help wall time (s)", t_help)

    # 4: probe list vs import tensorflow + load_model
    list_runs, load_runs = alternate(
        partial(wall, [PROBE, "list", work.h5]), partial(wall, load_command(work)), repeats
    )
    t_list = res.figure("list", f"probe list {work.h5.name} (stdout to /dev/null)", runs=list_runs)
    t_load = res.figure("load_script", "python: import tensorflow + keras.models.load_model", runs=load_runs)
    res.ratio(4, "probe list / (import tensorflow + load_model)", t_list / t_load)

    if output_tensor is None:  # ratios 5 and 6 dump the model's output
        res.ratio(5, LABEL_5, None, "n/a", NO_OUTPUT)
        res.ratio(6, LABEL_6_WHOLE, None, "n/a", NO_OUTPUT)
        return out

    # 5: probe dump of the output vs saved_model_cli run
    dump_cmd = [PROBE, "dump", work.h5, "--tensor", re.escape(output_tensor), "--input", work.x8, "--force"]
    smc = saved_model_cli_run(work, signature_input_key(work))
    output_dump = [*dump_cmd, "-o", work.archive("output")]
    dump_runs, smc_runs = alternate(partial(wall, output_dump), partial(wall, smc), repeats)
    t_dump = res.figure("dump_output", f"probe dump of the output tensor, batch {BATCH}, whole process", runs=dump_runs)
    t_smc = res.figure("saved_model_cli", f"saved_model_cli run, batch {BATCH}, whole process", runs=smc_runs)
    res.ratio(5, LABEL_5, t_dump / t_smc)

    # 6: streaming throughput, counted only if the archive really grew batch by batch
    stream_archive = work.archive("stream")
    stream = stream_command(work, output_tensor, work.x_big, stream_archive)
    try:
        stream_runs, predicts = alternate(partial(wall, stream), partial(predict_script, work), repeats)
        streams, why = streamed(stream_archive, BIG_N)
    except (CommandFailed, OSError, KeyError, ValueError) as exc:  # the stage tables below still come
        res.ratio(6, LABEL_6_WHOLE, None, status="n/a", note=f"failed: {exc}")
    else:
        whole_process_stream(res, stream_runs, predicts, streams, why)
    finally:
        stream_archive.unlink(missing_ok=True)

    if stages:
        out["probe list (whole process)"] = stage_table(["list", work.h5])
        dump_argv = [*dump_cmd[1:], "-o", work.archive("stages")]
        out[f"probe dump of the output, batch {BATCH} (whole process)"] = stage_table(dump_argv)
        work.archive("stages").unlink(missing_ok=True)
    return out
