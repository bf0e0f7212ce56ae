"""Ratios 13 and 14: a dump of every node output of the bench model's ONNX export, against the script a user
would write (``onnx.load``, every node output marked as Polygraphy's ``mark_layerwise`` does, one
``InferenceSession``, one run, a raw h5py write of every output).

13 compares whole processes; 14 the same in process, probe's model opened and its session built once (a
warm selection) against a warm session of the same marked model. The export is Keras' own
``model.export(format="onnx")`` (tf2onnx, the ``dev`` extra), built once into the work dir by a child process.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from artifacts import Work
from measure import PROBE, alternate, fresh_start, log, run_cmd, seconds
from report import Results

LABEL_13 = "dump of every ONNX node output / (onnx.load + mark all + session + run + raw write), whole process"
LABEL_14 = "dump of every ONNX node output / (warm session of the marked model + run + raw write), in-process"

EXPORT_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
model = keras.models.load_model(sys.argv[1], compile=False)
model(np.zeros((1, *model.input_shape[1:]), "float32"))  # export refuses a model never called
model.export(sys.argv[2] + ".tmp", format="onnx", verbose=False)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
"""

#: The baseline, as a user would write it; also imported by the in-process ratio, so both measure one thing.
BASELINE = '''
import sys, numpy as np, onnx, onnxruntime as ort, h5py


def marked(path):
    """The model with every node output (but constants') as a graph output."""
    model = onnx.load(path)
    names = [o for node in model.graph.node if node.op_type != "Constant" for o in node.output if o]
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    return model, names


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_and_write(sess, names, x, out):
    values = sess.run(names, {sess.get_inputs()[0].name: x})
    with h5py.File(out, "w") as file:
        for i, value in enumerate(values):
            file.create_dataset(f"t{i}", data=value)


if __name__ == "__main__":
    model, names = marked(sys.argv[1])
    run_and_write(session(model), names, np.load(sys.argv[2]), sys.argv[3])
'''


def onnx_model(work: Work) -> Path:
    """The bench model's ONNX export, built once."""
    path = work.root / f"{work.model.lower()}.onnx"
    if not path.is_file():
        log(f"  exporting {work.h5.name} to ONNX ...")
        run_cmd([sys.executable, "-c", EXPORT_SCRIPT, work.h5, path])
    return path


def _baseline_module(work: Work) -> Any:
    script = work.root / "onnx_baseline.py"
    script.write_text(BASELINE)
    sys.path.insert(0, str(work.root))
    try:
        import onnx_baseline
    finally:
        sys.path.remove(str(work.root))
    return onnx_baseline


def onnx_ratios(work: Work, res: Results, repeats: int) -> None:
    """Ratios 13 (whole process) and 14 (in-process), probe and the baseline alternating."""
    model = onnx_model(work)
    baseline = _baseline_module(work)
    marked, names = baseline.marked(str(model))
    nbytes = _output_bytes(baseline, marked, names, work)
    res.figures["onnx_outputs"] = {"label": "ONNX node outputs at batch 8", "count": len(names), "bytes": nbytes}
    log(f"  {len(names)} node outputs of {model.name} at batch 8, {nbytes / 2**20:.0f} MiB")

    archive, raw = work.archive("onnx_all"), work.root / "onnx_raw.h5"
    cmd = [PROBE, "dump", model, "--tensor", ".*", "--input", work.x8, "-o", archive, "--force"]
    base_cmd = [sys.executable, work.root / "onnx_baseline.py", model, work.x8, raw]
    probe_both, base_both = alternate(
        fresh_start(archive, nbytes, lambda: _wall_and_cpu(cmd)),
        fresh_start(raw, nbytes, lambda: _wall_and_cpu(base_cmd)),
        repeats,
    )
    probe_cpu, base_cpu = median(c for _, c in probe_both), median(c for _, c in base_both)
    p = res.figure(
        "onnx_whole_probe", "probe dump, every ONNX node output, whole process", runs=[w for w, _ in probe_both]
    )
    b = res.figure(
        "onnx_whole_baseline",
        "onnx.load + mark + session + run + raw write, whole process",
        runs=[w for w, _ in base_both],
    )
    res.ratio(13, LABEL_13, p / b)
    res.figures["onnx_whole_cpu"] = {"label": "CPU seconds (user + sys), medians", "probe": probe_cpu, "base": base_cpu}
    res.note(
        f"ratio 13 in CPU time (user + sys, medians; steadier than wall time on a shared machine): "
        f"{probe_cpu:.2f} s / {base_cpu:.2f} s = {probe_cpu / base_cpu:.2f}"
    )

    import numpy as np

    from probe_cli import pipeline
    from probe_cli.backends import registry
    from probe_cli.feed import Feed

    traced = registry.open_model(model)
    x = np.load(work.x8)
    feeds = [Feed(traced.index.inputs[0].name, x, str(work.x8))]
    selection = list(traced.index.tensors)
    spec = pipeline.DumpSpec(force=True, max_bytes=None)
    pipeline.dump_model(traced, feeds, archive, spec, selection=selection)  # builds and keeps the session
    warm = baseline.session(marked)
    baseline.run_and_write(warm, names, x, raw)  # warm too
    probe_runs, base_runs = alternate(
        fresh_start(
            archive, nbytes, lambda: seconds(pipeline.dump_model, traced, feeds, archive, spec, selection=selection)
        ),
        fresh_start(raw, nbytes, lambda: seconds(baseline.run_and_write, warm, names, x, raw)),
        repeats,
    )
    p = res.figure("onnx_inproc_probe", "Model dump of every ONNX node output, warm, in-process", runs=probe_runs)
    b = res.figure("onnx_inproc_baseline", "warm session run + raw write, in-process", runs=base_runs)
    res.ratio(14, LABEL_14, p / b)
    for path in (archive, raw):
        path.unlink(missing_ok=True)


def _wall_and_cpu(cmd: list[Any]) -> tuple[float, float]:
    """Wall seconds of one whole process, and the CPU seconds (user + sys) it and its threads used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = run_cmd(cmd)[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _output_bytes(baseline: Any, marked: Any, names: list[str], work: Work) -> int:
    """Bytes of every node output at batch 8 (one untimed run of the baseline)."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sizes.h5"
        baseline.run_and_write(baseline.session(marked), names, np.load(work.x8), str(out))
        size = os.path.getsize(out)
    return size
