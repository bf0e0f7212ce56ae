"""Ratios 1, 2, 3, 6 and 9 in the bench's own process: probe after load and trace, against warm baselines.

probe's side goes through its public seams: ``registry.open_model`` (load + trace, once), the Python API
(``probe.Model`` on that traced model, ``probe.open`` on the in-memory keras.Model) whose second run or
dump of a selection reuses its pruned function, and ``tfgraph.Runner`` where a fresh prune is the point
(ratio 1). Dumps are timed stage by stage (stages.timed_call).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from artifacts import BATCH, BIG_BATCH, BIG_N, Work
from baselines import Forward, grappler_on, predict, raw_write
from measure import alternate, fresh_start, seconds, timed, warmed
from report import ALL_OF, LABEL_6, Results, fmt_bytes
from stages import timed_call

#: Ratio 9's selection: every layer output, as Model.run's layers=.
EVERY_LAYER = [".*"]


@dataclass
class InProcess:
    """What the in-process part finds that the later parts need."""

    #: the model's first output, as probe names it
    output_tensor: str | None = None
    #: (shape, dtype) of each tensor ratios 2 and 3 dump, by AllOf.key: the whole-process raw write stores as much
    shapes: dict[str, list[tuple[list[int], str]]] = field(default_factory=dict)
    #: stage tables, by title
    stages: dict[str, dict[str, float]] = field(default_factory=dict)


def in_process(work: Work, res: Results, repeats: int, stages: bool) -> InProcess:
    """Ratios 1-3, 6 and 9 in-process; what was found before a failure is kept (the failure is noted)."""
    found = InProcess()
    res.attempt("in-process measurements", measure_in_process, work, res, repeats, stages, found)
    return found


def first_conv(index: Any) -> str:
    """Ratio 1's early tensor: the first convolution's output (ResNet50's conv1_conv), else the first layer's."""
    layers = [layer for layer in index.layers if layer.outputs and layer.class_name != "InputLayer"]
    return next((layer.name for layer in layers if "Conv" in layer.class_name), layers[0].name)


def check_grappler(res: Results, where: str) -> None:
    """Notes it when probe left Grappler off for the process (it must switch it off only around its runs)."""
    from probe_cli.backends import tfenv

    if not grappler_on(tfenv.tf()):
        res.note(f"Grappler is off {where}: probe did not put it back; the baselines after this run without it")


def measure_in_process(work: Work, res: Results, repeats: int, stages: bool, found: InProcess) -> None:
    """The probe library after load and trace, against a tf.function forward pass; fills ``found`` as it goes."""
    import numpy as np

    import probe_cli as probe
    from probe_cli import pipeline as pl
    from probe_cli.backends import registry
    from probe_cli.backends.base import OpenOptions

    # Set-up, once: what every dump pays before running (ratios 4 and 5 see it in whole processes).
    t_open, traced = timed(registry.open_model, work.h5, OpenOptions())
    res.figure("open_model", "probe open_model (load + trace), once", t_open)
    found.output_tensor = traced.index.outputs[0]
    model = probe.Model(traced)  # the Python API on that model: no second load

    # Baseline: the model's own forward pass, traced once, warm, with Grappler on as in a user's script.
    forward = Forward(work)
    check_grappler(res, "before the forward pass")
    t_fwd = res.figure(
        "forward", f"forward pass, tf.function, batch {BATCH} (warm)", runs=[seconds(forward) for _ in range(repeats)]
    )
    # batch BATCH as Feeds, in memory as one batch is
    feeds = [
        replace(f, array=np.asarray(f.array))
        for f in pl.make_feeds(traced.index, pl.InputOptions(files=(str(work.x8),)))
    ]

    early_tensor(work, res, repeats, model, traced, feeds, forward.array, t_fwd)
    run_every_layer(res, repeats, forward)
    all_of(work, res, repeats, stages, found, model, traced, feeds, forward.array, t_fwd)
    check_grappler(res, "after probe's runs")
    stream_in_process(work, res, stages, found, model, forward.model)


def early_tensor(
    work: Work, res: Results, repeats: int, model: Any, traced: Any, feeds: list[Any], x: Any, t_fwd: float
) -> None:
    """Ratio 1: a fresh Runner (prune) and one execution of the first conv's output alone; then its warm dump."""
    from probe_cli.backends.tfgraph import Runner

    early_layer = first_conv(traced.index)
    pattern = re.escape(early_layer)
    early = model.select(layers=[pattern])

    def prune_and_run() -> Any:
        return Runner(traced, early)(feeds)

    res.figure("run_early_first", f"probe Runner() + call of {early_layer} output, first call", seconds(prune_and_run))
    early_runs = [seconds(prune_and_run) for _ in range(repeats)]
    t_early = res.figure(
        "run_early", f"probe Runner() + call of {early_layer} output (prune + execute)", runs=early_runs
    )
    res.ratio(1, f"prune + run of one early tensor ({early_layer}) / forward pass", t_early / t_fwd)
    prune_times, call_times = [], []
    for _ in range(repeats):
        t, runner = timed(Runner, traced, early)
        prune_times.append(t)
        call_times.append(seconds(runner, feeds))
    res.figure("early_prune", "  of which Runner() (prune)", runs=prune_times)
    res.figure("early_call", "  of which the execution", runs=call_times)
    archive = work.archive("inproc_early")
    model.dump(archive, x, layers=[pattern], force=True)  # prunes; the runs below reuse it
    dump_runs = [seconds(model.dump, archive, x, layers=[pattern], force=True) for _ in range(repeats)]
    res.figure("dump_early", f"probe Model.dump of {early_layer} in-process (warm)", runs=dump_runs)


def run_every_layer(res: Results, repeats: int, forward: Forward) -> None:
    """Ratio 9: the Python API's ``m.run`` of every layer output (values, no writes), warm, against the warm
    forward pass, alternating, each after warming as much memory as the values take."""
    import probe_cli as probe

    t_open, model = timed(probe.open, forward.model)
    res.figure("open_in_memory", "probe.open(the keras.Model in memory): trace, once", t_open)
    x = forward.array
    t_first, values = timed(model.run, x, layers=EVERY_LAYER)  # prunes; later runs of the selection reuse it
    count, nbytes = len(values), sum(getattr(v, "nbytes", 0) for v in values.values())
    del values
    res.figure(
        "run_layers_first",
        f"probe m.run of every layer output ({count} tensors), first call",
        t_first,
        bytes=fmt_bytes(nbytes),
        nbytes=nbytes,
    )
    # The forward pass's first call after probe's first execution is slower (0.3-0.7 s on MobileNetV2): the
    # process's ConfigProto that grappler_off puts back serializes differently from the untouched one (an
    # empty graph_options.rewrite_options), so TensorFlow instantiates the function again, once. Warm it too.
    res.figure("forward_after_probe", "  forward pass, first call after probe's runs (warm-up)", seconds(forward))
    run_runs, fwd_runs = alternate(
        warmed(nbytes, partial(seconds, model.run, x, layers=EVERY_LAYER)),
        warmed(nbytes, partial(seconds, forward)),
        repeats,
    )
    t_run = res.figure("run_layers", "probe m.run of every layer output, warm (no writes)", runs=run_runs)
    t_fwd = res.figure("forward_run_layers", "  forward pass (warm), alternating with it", runs=fwd_runs)
    res.ratio(9, "m.run of every layer output / warm forward pass, in-process (no writes)", t_run / t_fwd)


def all_of(
    work: Work,
    res: Results,
    repeats: int,
    stages: bool,
    found: InProcess,
    model: Any,
    traced: Any,
    feeds: list[Any],
    x: Any,
    t_fwd: float,
) -> None:
    """Ratios 2 and 3 in-process: a warm Model.dump against the forward pass plus a raw h5py write."""
    import numpy as np

    from probe_cli import pipeline as pl

    for sel in ALL_OF:
        selection = {f"{sel.kind}s": [".*"]}  # tensors= or layers=
        archive = work.archive(f"inproc_{sel.key}")
        ratio_label = f"dump of {sel.label} / (forward + raw write), in-process"
        spec = pl.DumpSpec(**{key: tuple(patterns) for key, patterns in selection.items()}, dry_run=True)
        plan = pl.dump_model(traced, feeds, archive, spec)
        if 3 * plan.estimate > os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):  # results, copy, page cache
            note = f"skipped: {fmt_bytes(plan.estimate)} of {sel.label} would not fit in memory three times"
            res.ratio(sel.number, ratio_label, None, status="n/a", note=note)
            continue
        values = model.run(x, **selection)  # prunes once (the dumps reuse it), and the bytes the raw write stores
        arrays = [np.asarray(value) for value in values.values()]
        del values
        found.shapes[sel.key] = [(list(a.shape), a.dtype.str) for a in arrays]
        nbytes = sum(a.nbytes for a in arrays)
        raw = work.root / "raw.h5"
        # Interleaved, each into a new file after a flush, and each right after touching as much memory
        # as a dump needs (its results plus as much page cache), so both sides find it equally warm:
        # this VM hands memory that sat free for a couple of seconds back to the host, and the first
        # touch afterwards costs ~2.5 s/GiB, which would otherwise decide the ratio.
        dumps, raw_runs = alternate(
            fresh_start(archive, nbytes, partial(timed_call, model.dump, archive, x, force=True, **selection)),
            fresh_start(raw, nbytes, partial(seconds, raw_write, raw, arrays)),
            repeats,
        )
        raw.unlink(missing_ok=True)
        t_dump = res.figure(
            f"dump_{sel.key}",
            f"probe Model.dump of {sel.label}, in-process, {len(arrays)} tensors",
            runs=[d[0] for d in dumps],
            bytes=fmt_bytes(nbytes),
            nbytes=nbytes,
        )
        t_raw = res.figure(f"raw_write_{sel.key}", "  raw h5py write of the same bytes", runs=raw_runs)
        res.ratio(sel.number, ratio_label, t_dump / (t_fwd + t_raw))
        if stages:
            total, _, table = sorted(dumps, key=lambda d: d[0])[len(dumps) // 2]  # the median run's stages
            found.stages[f"in-process Model.dump of {sel.label} (batch {BATCH}, the median run)"] = {
                "Model.dump, warm (after set-up)": total,
                **table,
                "for comparison: forward pass (median)": t_fwd,
                "for comparison: raw h5py write (median)": t_raw,
            }
        del arrays


def stream_in_process(work: Work, res: Results, stages: bool, found: InProcess, model: Any, keras_model: Any) -> None:
    """Ratio 6 in steady state: both sides after set-up, predict warm (its function traced on one batch first)."""
    import numpy as np

    if found.output_tensor is None:
        return
    big = np.load(work.x_big)
    t_pred = predict(keras_model, big)
    res.figure("predict_inproc", f"model.predict({BIG_N} samples, batch_size={BIG_BATCH}), warm, in-process", t_pred)
    archive = work.archive("inproc_stream")
    output = [re.escape(found.output_tensor)]
    t_stream, result, table = timed_call(model.dump, archive, big, tensors=output, batch_size=BIG_BATCH, force=True)
    archive.unlink(missing_ok=True)
    res.figure(
        "stream_inproc", f"probe Model.dump of the output over {BIG_N} samples, in-process (after set-up)", t_stream
    )
    label = LABEL_6.format(n=BIG_N, batch=BIG_BATCH, how="in-process")
    if result.batches > 1:
        res.ratio(6, label, t_pred / t_stream)
        if stages:
            found.stages[f"in-process dump of the output, {BIG_N} samples in {result.batches} batches"] = {
                "Model.dump, after set-up": t_stream,
                **table,
                "for comparison: model.predict, warm": t_pred,
            }
    else:
        res.ratio(6, label, None, status="MISS", note="dump ran all samples as one batch")
