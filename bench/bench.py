"""``make bench``: probe's speed as the ratios of issue 4, on a keras.applications model with random weights.

ResNet50 unless ``--model`` names another.

One run builds (or reuses) the model, its SavedModel export and the inputs in
the work dir, measures every figure, prints each ratio against its target with
PASS/MISS, a stage breakdown of where probe's time goes, and writes everything
to ``<workdir>/results.json``. Timings are medians; nothing here is a test.

    .venv/bin/python bench/bench.py [--model ResNet50] [--workdir build/bench/resnet50] [--repeats 3] [--no-stages]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any, NamedTuple, TypeVar
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin, not resolved: its python is a symlink
PROBE = BIN / "probe"
SAVED_MODEL_CLI = BIN / "saved_model_cli"
SIGNATURE = ["--tag_set", "serve", "--signature_def", "serving_default"]  # saved_model_cli's, for show and run
STAGES = Path(__file__).resolve().parent / "stages.py"

SEED = 0
BATCH = 8
BIG_N = 256
BIG_BATCH = 32
SMALL_N, LARGE_N = 64, 1024  # ratio 8: peak memory of streaming either many samples must be the same
DEFAULT_MODEL = "ResNet50"

LABEL_5 = "probe dump (output) / saved_model_cli run, whole process"
LABEL_6 = f"dump throughput ({BIG_N} samples, batches of {BIG_BATCH}) / model.predict"
LABEL_6_WHOLE, LABEL_6_INPROC = f"{LABEL_6}, whole process", f"{LABEL_6}, in-process"
LABEL_8 = f"peak memory N={LARGE_N} / N={SMALL_N} (bounded memory)"

#: Subprocesses get the same quiet environment; probe sets this itself anyway.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}

LOAD_SCRIPT = """
import sys, tensorflow, keras
keras.models.load_model(sys.argv[1], compile=False)
"""

#: Ratios 2 and 3 as whole processes: the least a script must do to produce the same archive without
#: probe - import, load, one forward pass, and an uncompressed h5py write of the same bytes (arrays of
#: the dumped tensors' shapes and dtypes, filled, since producing them costs memory too).
RAW_DUMP_SCRIPT = """
import sys, json, numpy as np, tensorflow, keras, h5py
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
model.predict(x, batch_size=len(x), verbose=0)
with h5py.File(sys.argv[4], "w") as file:
    for i, (shape, dtype) in enumerate(json.load(open(sys.argv[3]))):
        file.create_dataset(f"t{i}", data=np.ones(shape, dtype))
"""

PREDICT_SCRIPT = """
import sys, time, json, numpy as np, tensorflow, keras
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
t = time.perf_counter()
model.predict(x, batch_size=int(sys.argv[3]), verbose=0)
print(json.dumps({"predict_s": time.perf_counter() - t}))
"""


class AllOf(NamedTuple):
    """Ratios 2 and 3: what "all layer outputs" and "all op tensors" select, for the library and the CLI alike."""

    key: str
    number: int
    target: float
    #: "layer" or "tensor": pattern '.*' as DumpRequest's layers= or tensors=, probe dump's --layer or --tensor
    kind: str
    label: str


ALL_OF = (
    AllOf("layers", 2, 1.3, "layer", "all layer outputs"),
    AllOf("all", 3, 1.5, "tensor", "all op tensors"),
)


# ---------------------------------------------------------------- helpers


def log(text: str = "") -> None:
    print(text, flush=True)


T = TypeVar("T")
U = TypeVar("U")


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Seconds of one call of ``fn(*args)``, and its value."""
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def attempt(res: Results, what: str, fn: Callable[..., T], *args: Any) -> T | None:
    """``fn(*args)``; a failure is noted and the bench goes on with what can still be measured."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - report and go on
        res.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
        log(f"  {what} failed: {type(exc).__name__}: {exc}")


class CommandFailed(RuntimeError):
    pass


def run_cmd(cmd: list[str], *, capture: bool = False) -> tuple[float, subprocess.CompletedProcess]:
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
        raise CommandFailed(f"{' '.join(str(c) for c in cmd[:3])} ... exited {proc.returncode}: {' | '.join(tail)}")
    return elapsed, proc


def wall(cmd: list[Any]) -> float:
    """Wall time of one whole process."""
    return run_cmd(cmd)[0]


NO_OUTPUT = "not measured: the model's output could not be named (see the notes)"

#: Runs a command and prints its peak RSS (KiB). A fresh interpreter between the bench and the
#: measured process matters: Linux carries a process's peak RSS across fork and exec, so a child
#: of this (large) bench process would report the bench's own peak.
RSS_SCRIPT = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(cmd: list[str]) -> int:
    """Peak resident memory (bytes) of one whole process, from the kernel's own accounting."""
    _, proc = run_cmd([sys.executable, "-c", RSS_SCRIPT, *cmd], capture=True)
    code, kib = (int(v) for v in proc.stdout.split())
    if code != 0:
        raise CommandFailed(f"{' '.join(str(c) for c in cmd[:3])} ... exited {code}")
    return kib * 1024


def stream_command(work: Work, output_tensor: str, inputs: Path, archive: Path) -> list[Any]:
    """``probe dump`` of the model's output over ``inputs`` in batches of BIG_BATCH (ratios 6 and 8)."""
    pattern = re.escape(output_tensor)
    return [
        PROBE,
        "dump",
        work.h5,
        "--tensor",
        pattern,
        "-i",
        inputs,
        "--batch-size",
        BIG_BATCH,
        "-o",
        archive,
        "--force",
    ]


def memory_growth(work: Work, res: Results, output_tensor: str | None) -> None:
    """Peak memory of streaming SMALL_N vs LARGE_N samples through the same dump: must not grow with N."""
    import numpy as np

    if output_tensor is None:
        res.ratio(8, LABEL_8, None, "<=", 1.1, "n/a", NO_OUTPUT)
        return

    big = work.root / f"x{LARGE_N}.npy"
    source = np.load(work.x_big, mmap_mode="r")
    shape = (LARGE_N, *source.shape[1:])
    if not big.is_file() or np.load(big, mmap_mode="r").shape != shape:
        out = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=shape)
        for start in range(0, LARGE_N, BIG_N):
            out[start : start + BIG_N] = source
        out.flush()
        del out
    peaks = {}
    for n, path in ((SMALL_N, work.x_small), (LARGE_N, big)):
        archive = work.archive(f"mem{n}")
        peaks[n] = peak_rss(stream_command(work, output_tensor, path, archive))
        archive.unlink(missing_ok=True)
        res.figures[f"peak_rss_{n}"] = {"label": f"peak RSS, dump of the output, N={n}", "bytes": peaks[n]}
        label = f"peak RSS of probe dump (output, batches of {BIG_BATCH}), N={n}"
        log(f"  {label:<62} {peaks[n] / 2**20:8.0f} MiB")
    res.ratio(8, LABEL_8, peaks[LARGE_N] / peaks[SMALL_N], "<=", 1.1)


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


def warm_for_dump(nbytes: int) -> None:
    """Warms what a dump of ``nbytes`` touches: its results, as much page cache, and some slack."""
    warm_memory(2 * nbytes / 2**30 + 0.5)


def fresh_start(path: Path, nbytes: int, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` (a timed write of ``nbytes`` to ``path``), each call after an untimed fresh start: no old
    file, no pending writes (flushed, so each write starts from the same state), warm memory."""

    def run() -> T:
        path.unlink(missing_ok=True)
        os.sync()
        warm_for_dump(nbytes)
        return fn()

    return run


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:8.3f} s"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------- machine


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


# ---------------------------------------------------------------- artifacts


class Work:
    def __init__(self, root: Path, model: str) -> None:
        self.root = root
        #: a keras.applications constructor, e.g. ResNet50
        self.model = model
        self.h5 = root / f"{model.lower()}.h5"
        self.saved_model = root / f"{model.lower()}_savedmodel"
        self.x8 = root / f"x{BATCH}.npy"
        self.x_big = root / f"x{BIG_N}.npy"
        self.x_small = root / f"x{SMALL_N}.npy"
        self.results = root / "results.json"

    def archive(self, name: str) -> Path:
        return self.root / f"{name}.probe.h5"

    def complete(self) -> bool:
        return (
            self.h5.is_file()
            and (self.saved_model / "saved_model.pb").is_file()
            and all(p.is_file() for p in (self.x8, self.x_big, self.x_small))
        )


def build(work: Work) -> None:
    """Runs in a child process, so model building leaves no state in the measuring one."""
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, work.model)(weights=None)
    work.root.mkdir(parents=True, exist_ok=True)
    tmp_h5 = work.h5.with_suffix(".tmp.h5")
    model.save(tmp_h5)
    os.replace(tmp_h5, work.h5)
    if work.saved_model.exists():
        shutil.rmtree(work.saved_model)
    model.export(str(work.saved_model), verbose=False)
    rng = np.random.default_rng(SEED)
    sample = tuple(d or 224 for d in model.input_shape[1:])  # a model may leave height and width open
    np.save(work.x8, rng.random((BATCH, *sample), dtype=np.float32))
    big = rng.random((BIG_N, *sample), dtype=np.float32)
    np.save(work.x_big, big)
    np.save(work.x_small, big[:SMALL_N])


def ensure_artifacts(work: Work) -> float | None:
    if work.complete():
        return None
    log(f"building {work.model} (weights=None, seed {SEED}) into {work.root} ...")
    elapsed, _ = run_cmd([sys.executable, __file__, "--build-only", "--model", work.model, "--workdir", work.root])
    return elapsed


def application_names() -> set[str]:
    """The model constructors of keras.applications (ResNet50, DenseNet121, ...), without importing Keras
    into this process: its import would then not be the quiet one probe does."""
    code = "import keras, inspect; print(*(n for n, f in vars(keras.applications).items() if inspect.isfunction(f)))"
    _, proc = run_cmd([sys.executable, "-c", code], capture=True)
    return set(proc.stdout.split())


def model_output(work: Work) -> str:
    """The model's first output as probe names it (when the in-process part did not get that far)."""
    _, proc = run_cmd([PROBE, "list", work.h5, "--json"], capture=True)
    return json.loads(proc.stdout)["outputs"][0]


def signature_input_key(work: Work) -> str:
    _, proc = run_cmd([SAVED_MODEL_CLI, "show", "--dir", work.saved_model, *SIGNATURE], capture=True)
    keys = re.findall(r"inputs\['([^']+)'\]", proc.stdout)
    if len(keys) != 1:
        raise CommandFailed(f"expected one signature input, saved_model_cli show gave {keys}")
    return keys[0]


# ---------------------------------------------------------------- results


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        self.ratios: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def figure(
        self, key: str, label: str, seconds: float | None = None, *, runs: list[float] | None = None, **extra: Any
    ) -> float | None:
        """Records and prints one figure; given ``runs``, its seconds are their median."""
        if runs is not None:
            seconds, extra = median(runs), {"runs": runs, **extra}
        self.figures[key] = {"label": label, "seconds": seconds, **extra}
        shown = {k: v for k, v in extra.items() if k in ("bytes", "note")}
        if "runs" in extra:
            shown["runs"] = "[" + ", ".join(f"{t:.2f}" for t in extra["runs"]) + "]"
        detail = "".join(f"  {k}={v}" for k, v in shown.items())
        log(f"  {label:<62} {fmt_s(seconds)}{detail}")
        return seconds

    def ratio(
        self,
        number: int,
        label: str,
        value: float | None,
        op: str,
        target: float,
        status: str | None = None,
        note: str = "",
    ) -> None:
        if status is None:
            status = (
                "PASS"
                if (value <= target if op == "<=" else value >= target if op == ">=" else value < target)
                else "MISS"
            )
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


# ---------------------------------------------------------------- in-process measurements


def first_conv(index: Any) -> str:
    """Ratio 1's early tensor: the first convolution's output (ResNet50's conv1_conv), else the first layer's."""
    layers = [layer for layer in index.layers if layer.outputs and layer.class_name != "InputLayer"]
    return next((layer.name for layer in layers if "Conv" in layer.class_name), layers[0].name)


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
    """Ratios 1-3 and 6 in-process; what was found before a failure is kept (the failure is noted)."""
    found = InProcess()
    attempt(res, "in-process measurements", measure_in_process, work, res, repeats, stages, found)
    return found


def measure_in_process(work: Work, res: Results, repeats: int, stages: bool, found: InProcess) -> None:
    """The probe library after load and trace, against a tf.function forward pass; fills ``found`` as it goes."""
    import numpy as np

    from probe_cli import _tf
    from probe_cli import pipeline as pl

    tf, keras = _tf.tf(), _tf.keras()

    # Set-up, once: what every dump pays before running (ratios 4 and 5 see it in whole processes).
    t_open, traced = timed(pl.open_model, pl.ModelOptions(work.h5))
    res.figure("open_model", "probe open_model (load + trace), once", t_open)
    found.output_tensor = traced.index.outputs[0]

    # Baseline: the model's own forward pass, traced once, warm. With Grappler on, as in a user's script:
    # it is instantiated (and optimized) on its first call, before any Runner switches Grappler off.
    # The model is loaded again, as a user's script would, rather than borrowed from probe.
    model = keras.models.load_model(work.h5, compile=False)
    forward = tf.function(lambda x: model(x, training=False))
    x = tf.constant(np.load(work.x8))
    forward(x).numpy()
    fwd_runs = [timed(lambda: forward(x).numpy())[0] for _ in range(repeats)]
    t_fwd = res.figure("forward", f"forward pass, tf.function, batch {BATCH} (warm)", runs=fwd_runs)

    # pipeline.dump takes no traced model; answering open_model from memory leaves the set-up out.
    with mock.patch.object(pl, "open_model", lambda _options: traced):
        early_tensor(work, res, repeats, traced, t_fwd)
        all_of(work, res, repeats, stages, found, traced, t_fwd)
        stream_in_process(work, res, stages, found, model, tf)


def early_tensor(work: Work, res: Results, repeats: int, traced: Any, t_fwd: float) -> None:
    """Ratio 1: run() (prune + one execution) of the first conv's output alone, and its dump after set-up."""
    import numpy as np

    from probe_cli import pipeline as pl
    from probe_cli.run import Runner, run

    early_layer = first_conv(traced.index)
    request = dump_request(pl, work, "early", layers=(re.escape(early_layer),))
    feeds = pl.make_feeds(traced.index, request.inputs)
    feeds = [replace(f, array=np.asarray(f.array)) for f in feeds]  # in memory, as one batch is
    early = pl.select(traced.index, request)

    t_first, _ = timed(run, traced, feeds, early)
    res.figure("run_early_first", f"probe run() of {early_layer} output, first call", t_first)
    early_runs = [timed(run, traced, feeds, early)[0] for _ in range(repeats)]
    t_early = res.figure("run_early", f"probe run() of {early_layer} output (prune + execute)", runs=early_runs)
    res.ratio(1, f"run() of one early tensor ({early_layer}) / forward pass", t_early / t_fwd, "<=", 1.0)
    prune_times, call_times = [], []
    for _ in range(repeats):
        t, runner = timed(Runner, traced, early)
        prune_times.append(t)
        call_times.append(timed(runner, feeds)[0])
    res.figure("early_prune", "  of which Runner() (prune)", runs=prune_times)
    res.figure("early_call", "  of which the execution", runs=call_times)
    dump_runs = [timed(pl.dump, request)[0] for _ in range(repeats)]
    res.figure("dump_early", f"probe dump of {early_layer} in-process (after set-up)", runs=dump_runs)


def all_of(work: Work, res: Results, repeats: int, stages: bool, found: InProcess, traced: Any, t_fwd: float) -> None:
    """Ratios 2 and 3 in-process: pipeline.dump after set-up against the forward pass plus a raw h5py write."""
    import h5py
    import numpy as np
    from stages import timed_call

    from probe_cli import pipeline as pl
    from probe_cli.run import run

    for sel in ALL_OF:
        request = dump_request(pl, work, sel.key, **{f"{sel.kind}s": (".*",)})
        ratio_label = f"dump of {sel.label} / (forward + raw write), in-process"
        plan = pl.dump(replace(request, dry_run=True))
        if 3 * plan.estimate > os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):  # results, copy, page cache
            note = f"skipped: {fmt_bytes(plan.estimate)} of {sel.label} would not fit in memory three times"
            res.ratio(sel.number, ratio_label, None, "<=", sel.target, status="n/a", note=note)
            continue
        selection = [planned.info for planned in plan.planned]
        values = run(traced, plan.feeds, selection)  # warm-up, and the bytes the raw write stores
        arrays = [np.asarray(values[info.name]) for info in selection]
        found.shapes[sel.key] = [(list(a.shape), a.dtype.str) for a in arrays]
        del values
        nbytes = sum(a.nbytes for a in arrays)
        raw = work.root / "raw.h5"
        # Interleaved, each into a new file after a flush, and each right after touching as much memory
        # as a dump needs (its results plus as much page cache), so both sides find it equally warm:
        # this VM hands memory that sat free for a couple of seconds back to the host, and the first
        # touch afterwards costs ~2.5 s/GiB, which would otherwise decide the ratio.
        dumps, raw_runs = alternate(
            fresh_start(request.output, nbytes, partial(timed_call, pl.dump, request)),
            fresh_start(raw, nbytes, partial(timed, raw_write, h5py, raw, arrays)),
            repeats,
        )
        raw.unlink(missing_ok=True)
        t_dump = res.figure(
            f"dump_{sel.key}",
            f"probe dump of {sel.label}, in-process, {len(selection)} tensors",
            runs=[d[0] for d in dumps],
            bytes=fmt_bytes(nbytes),
            nbytes=nbytes,
        )
        t_raw = res.figure(f"raw_write_{sel.key}", "  raw h5py write of the same bytes", runs=[r[0] for r in raw_runs])
        res.ratio(sel.number, ratio_label, t_dump / (t_fwd + t_raw), "<=", sel.target)
        if stages:
            total, _, table = sorted(dumps, key=lambda d: d[0])[len(dumps) // 2]  # the median run's stages
            found.stages[f"in-process dump of {sel.label} (batch {BATCH}, the median run)"] = {
                "dump, after set-up": total,
                **table,
                "for comparison: forward pass (median)": t_fwd,
                "for comparison: raw h5py write (median)": t_raw,
            }
        del arrays


def stream_in_process(work: Work, res: Results, stages: bool, found: InProcess, model: Any, tf: Any) -> None:
    """Ratio 6 in steady state: both sides after set-up, predict warm (its function traced on one batch first),
    with Grappler on as in any script of the user's (probe switched it off for this process)."""
    import numpy as np
    from stages import timed_call

    from probe_cli import pipeline as pl

    big = np.load(work.x_big)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    model.predict(big[:BIG_BATCH], batch_size=BIG_BATCH, verbose=0)
    t_pred, _ = timed(lambda: model.predict(big, batch_size=BIG_BATCH, verbose=0))
    res.figure("predict_inproc", f"model.predict({BIG_N} samples, batch_size={BIG_BATCH}), warm, in-process", t_pred)
    inputs = pl.InputOptions(files=(str(work.x_big),), batch_size=BIG_BATCH)
    request = dump_request(pl, work, "stream", tensors=(re.escape(found.output_tensor),), inputs=inputs)
    t_stream, result, table = timed_call(pl.dump, request)
    request.output.unlink(missing_ok=True)
    res.figure("stream_inproc", f"probe dump of the output over {BIG_N} samples, in-process (after set-up)", t_stream)
    if result.batches > 1:
        res.ratio(6, LABEL_6_INPROC, t_pred / t_stream, ">=", 0.8)
        if stages:
            found.stages[f"in-process dump of the output, {BIG_N} samples in {result.batches} batches"] = {
                "dump, after set-up": t_stream,
                **table,
                "for comparison: model.predict, warm": t_pred,
            }
    else:
        res.ratio(6, LABEL_6_INPROC, None, ">=", 0.8, status="MISS", note="dump ran all samples as one batch")


def dump_request(pl: Any, work: Work, name: str, inputs: Any = None, **selection: Any) -> Any:
    """A bench dump into its own archive; batch BATCH from x8.npy unless ``inputs`` says otherwise."""
    return pl.DumpRequest(
        model=pl.ModelOptions(work.h5),
        inputs=inputs or pl.InputOptions(files=(str(work.x8),)),
        output=work.archive(f"inproc_{name}"),
        force=True,
        command="bench",
        **selection,
    )


def raw_write(h5py: Any, path: Path, arrays: list[Any]) -> None:
    with h5py.File(path, "w") as file:
        for i, array in enumerate(arrays):
            file.create_dataset(f"t{i}", data=array)


# ---------------------------------------------------------------- whole-process measurements


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


def predict_script(work: Work) -> tuple[float, float]:
    """PREDICT_SCRIPT's wall time, and that of model.predict alone, which it prints."""
    elapsed, proc = run_cmd([sys.executable, "-c", PREDICT_SCRIPT, work.h5, work.x_big, BIG_BATCH], capture=True)
    return elapsed, json.loads(proc.stdout.strip().splitlines()[-1])["predict_s"]


def whole_process_dumps(work: Work, res: Results, repeats: int, shapes: dict[str, list[tuple[list[int], str]]]) -> None:
    """Ratios 2 and 3 as a user meets them: ``probe dump`` vs the script it replaces, both whole processes."""
    import numpy as np

    for sel in ALL_OF:
        ratio_label = f"dump of {sel.label} / (load + forward + raw write), whole process"
        if sel.key not in shapes:  # the in-process part skipped or failed before knowing the bytes
            res.ratio(sel.number, ratio_label, None, "<=", sel.target, status="n/a", note="sizes unknown (see above)")
            continue
        spec = work.root / f"shapes_{sel.key}.json"
        spec.write_text(json.dumps(shapes[sel.key]))
        nbytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes[sel.key])
        archive, raw = work.archive(f"whole_{sel.key}"), work.root / "raw_whole.h5"
        cmd = [PROBE, "dump", work.h5, f"--{sel.kind}", ".*", "--input", work.x8, "-o", archive, "--force"]
        script = [sys.executable, "-c", RAW_DUMP_SCRIPT, work.h5, work.x8, spec, raw]
        probe_runs, raw_runs = alternate(  # each from equally warm memory (see warm_memory)
            fresh_start(archive, nbytes, partial(wall, cmd)), fresh_start(raw, nbytes, partial(wall, script)), repeats
        )
        for path in (archive, raw, spec):
            path.unlink(missing_ok=True)
        t_probe = res.figure(f"whole_{sel.key}", f"probe dump of {sel.label}, whole process", runs=probe_runs)
        t_raw = res.figure(
            f"whole_raw_{sel.key}", "  python: load + forward + raw h5py write of the same bytes", runs=raw_runs
        )
        res.ratio(sel.number, ratio_label, t_probe / t_raw, "<=", sel.target)


def whole_process_stream(
    res: Results, stream_runs: list[float], predicts: list[tuple[float, float]], streams: bool, why: str
) -> None:
    """Ratio 6's figures and ratio, whole process; a dump that did not stream is a miss."""
    predict_runs, predict_only = (list(side) for side in zip(*predicts))
    t_stream = res.figure("stream", f"probe dump of the output over {BIG_N} samples, whole process", runs=stream_runs)
    t_pred = res.figure("predict", f"python: load + model.predict({BIG_N}, batch_size={BIG_BATCH})", runs=predict_runs)
    res.figure("predict_only", "  of which model.predict alone", runs=predict_only)
    if streams:  # same samples on both sides, so the throughput ratio is the inverse ratio of the wall times
        res.ratio(6, LABEL_6_WHOLE, t_pred / t_stream, ">=", 0.8)
    else:
        res.ratio(6, LABEL_6_WHOLE, None, ">=", 0.8, status="MISS", note=why)


def whole_process(work: Work, res: Results, repeats: int, output_tensor: str | None, stages: bool) -> dict[str, Any]:
    """Ratios 4-7 as whole processes, start-up included; returns the stage tables of a list and a dump."""
    out: dict[str, Any] = {}

    # 7: --help
    t_help = res.figure("help", "probe --help", runs=[wall([PROBE, "--help"]) for _ in range(repeats)])
    res.ratio(7, "probe --help wall time (s)", t_help, "<", 0.5)

    # 4: probe list vs import tensorflow + load_model
    list_runs, load_runs = alternate(
        partial(wall, [PROBE, "list", work.h5]), partial(wall, [sys.executable, "-c", LOAD_SCRIPT, work.h5]), repeats
    )
    t_list = res.figure("list", f"probe list {work.h5.name} (stdout to /dev/null)", runs=list_runs)
    t_load = res.figure("load_script", "python: import tensorflow + keras.models.load_model", runs=load_runs)
    res.ratio(4, "probe list / (import tensorflow + load_model)", t_list / t_load, "<=", 1.3)

    if output_tensor is None:  # ratios 5 and 6 dump the model's output
        res.ratio(5, LABEL_5, None, "<=", 1.0, "n/a", NO_OUTPUT)
        res.ratio(6, LABEL_6_WHOLE, None, ">=", 0.8, "n/a", NO_OUTPUT)
        return out

    # 5: probe dump of the output vs saved_model_cli run
    key = signature_input_key(work)
    dump_cmd = [PROBE, "dump", work.h5, "--tensor", re.escape(output_tensor), "--input", work.x8, "--force"]
    smc = [SAVED_MODEL_CLI, "run", "--dir", work.saved_model, *SIGNATURE, "--inputs", f"{key}={work.x8}"]
    output_dump = [*dump_cmd, "-o", work.archive("output")]
    dump_runs, smc_runs = alternate(partial(wall, output_dump), partial(wall, smc), repeats)
    t_dump = res.figure("dump_output", f"probe dump of the output tensor, batch {BATCH}, whole process", runs=dump_runs)
    t_smc = res.figure("saved_model_cli", f"saved_model_cli run, batch {BATCH}, whole process", runs=smc_runs)
    res.ratio(5, LABEL_5, t_dump / t_smc, "<=", 1.0)

    # 6: streaming throughput, counted only if the archive really grew batch by batch
    stream_archive = work.archive("stream")
    stream = stream_command(work, output_tensor, work.x_big, stream_archive)
    try:
        stream_runs, predicts = alternate(partial(wall, stream), partial(predict_script, work), repeats)
        streams, why = streamed(stream_archive, BIG_N)
    except (CommandFailed, OSError, KeyError, ValueError) as exc:  # the stage tables below still come
        res.ratio(6, LABEL_6_WHOLE, None, ">=", 0.8, status="n/a", note=f"failed: {exc}")
    else:
        whole_process_stream(res, stream_runs, predicts, streams, why)
    finally:
        stream_archive.unlink(missing_ok=True)

    if stages:
        stage_runs = {
            "probe list (whole process)": ["list", work.h5],
            f"probe dump of the output, batch {BATCH} (whole process)": [*dump_cmd[1:], "-o", work.archive("stages")],
        }
        for title, argv in stage_runs.items():
            try:
                elapsed, proc = run_cmd([sys.executable, STAGES, *argv], capture=True)
                table = json.loads(proc.stdout.strip().splitlines()[-1])
                inside = table.pop("total inside the script (from its first line)")
                out[title] = {
                    "process wall": elapsed,
                    "python start-up + exit (wall - inside)": elapsed - inside,
                    **table,
                }
            except (CommandFailed, ValueError, KeyError) as exc:
                out[title] = {"error": str(exc)}
        work.archive("stages").unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------- report


def print_ratios(res: Results) -> None:
    log()
    log("ratios (issue 4 targets):")
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
            log(f"    {name:<52} {value:8.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model
    if not args.build_only:  # the parent checked the name it hands to a build
        known = {name.lower(): name for name in application_names()}
        if model.lower() not in known:
            parser.error(f"--model {model!r} is not a keras.applications model (e.g. ResNet50, MobileNetV2)")
        model = known[model.lower()]  # resnet50 -> ResNet50
    workdir = args.workdir or ROOT / "build" / "bench" / model.lower()
    work = Work(workdir.resolve(), model)
    if args.build_only:
        build(work)
        return 0

    started = time.perf_counter()
    work.root.mkdir(parents=True, exist_ok=True)
    build_s = ensure_artifacts(work)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    res = Results()
    mach = machine()
    from probe_cli import _tf

    _tf.tf()  # quiet import, as probe does
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
    found = in_process(work, res, args.repeats, not args.no_stages)
    output_tensor = found.output_tensor
    if output_tensor is None:
        try:
            output_tensor = model_output(work)
        except CommandFailed as exc:
            res.notes.append(f"cannot name the model's output: {exc}")
            log(f"  cannot name the model's output: {exc}")
    stages: dict[str, Any] = dict(found.stages)
    whole = attempt(
        res, "whole-process measurements", whole_process, work, res, args.repeats, output_tensor, not args.no_stages
    )
    stages.update(whole or {})
    attempt(res, "whole-process dump measurements", whole_process_dumps, work, res, args.repeats, found.shapes)
    attempt(res, "memory measurement", memory_growth, work, res, output_tensor)
    for name in ("inproc_early", "inproc_layers", "inproc_all", "inproc_stream", "output"):
        work.archive(name).unlink(missing_ok=True)

    print_ratios(res)
    print_stages(stages)
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    log()
    log(f"1-min load average: {load_start[0]:.2f} at start, {load_end[0]:.2f} at the end")
    log(f"bench took {total:.0f} s; results in {work.results}")
    document = {
        "machine": mach,
        "versions": vers,
        "model": f"keras.applications.{work.model}(weights=None)",
        "seed": SEED,
        "batch": BATCH,
        "repeats": args.repeats,
        "figures": res.figures,
        "ratios": res.ratios,
        "stages": stages,
        "notes": res.notes,
        "bench_seconds": total,
        "load_average": {"start": load_start[0], "end": load_end[0]},
    }
    work.results.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
