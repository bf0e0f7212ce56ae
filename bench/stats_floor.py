"""Where ratio 10's time goes: in one warm process, every layer output of BIG_N samples (batches of
BIG_BATCH) computed and reduced three ways, each timed over all batches after a warm-up batch:

- ``forward``: each tensor summed to one number (the model runs, nothing large leaves TensorFlow);
- ``histogram``: each tensor's fixed-width histogram alone (TensorFlow's ``HistogramFixedWidth``);
- ``statistics``: probe's ``--stats-only`` reductions (``DistributionRunner``).

Plus ``bincount``: NumPy's ``bincount`` (one core) over as many values as those outputs hold, a
lower bound for any exact histogram on this machine. Run in a child process of the bench; prints JSON.

    python bench/stats_floor.py MODEL WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from artifacts import BIG_BATCH, BIG_N, Work


def main(work: Work) -> dict[str, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    import probe_cli as probe
    from probe_cli.backends import registry, tfenv, tfgraph
    from probe_cli.backends.base import OpenOptions
    from probe_cli.core.types import Feed

    traced = registry.open_model(work.h5, OpenOptions())
    selection = probe.Model(traced).select(layers=[".*"])
    tf = tfenv.tf()
    x = np.load(work.x_big)
    name = traced.index.inputs[0].name
    batches = [[Feed(name, x[i : i + BIG_BATCH], "bench")] for i in range(0, BIG_N, BIG_BATCH)]
    placeholders = [traced.placeholders[spec.name] for spec in traced.index.inputs]
    fetches = [traced.graph_tensors[info.name].name for info in selection]

    def pruned(reduce: Any) -> Any:
        function = tfgraph.prune(traced.function.graph, placeholders, fetches, reduce)
        span = tf.constant([[0.0, 1.0]] * len(fetches), tf.float64)
        return lambda feeds: function(tf.constant(feeds[0].array), span)

    def sums(values: list[Any], _: Any) -> list[Any]:
        return [tf.reduce_sum(v) for v in values]

    def histograms(values: list[Any], _: Any) -> list[Any]:
        return [tf.histogram_fixed_width(v, tf.constant([0.0, 1.0], v.dtype), nbins=64) for v in values]

    def total(run: Any) -> tuple[float, Any]:
        last = run(batches[0])
        start = time.perf_counter()
        for feeds in batches:
            last = run(feeds)
        return time.perf_counter() - start, last

    found: dict[str, float] = {}
    with tfenv.grappler_off():
        found["forward"] = total(pruned(sums))[0]
        found["histogram"] = total(pruned(histograms))[0]
        found["statistics"], last = total(tfgraph.DistributionRunner(traced, selection, None, 64))
    values = sum(d.size for d in last.values()) * len(batches)  # equal batches: BIG_N is a multiple
    indices = np.random.default_rng(0).integers(0, 64, 2**25)
    start = time.perf_counter()
    np.bincount(indices, minlength=64)
    found["bincount"] = (time.perf_counter() - start) / indices.size * values
    found["values"] = float(values)
    return found


if __name__ == "__main__":
    print(json.dumps(main(Work(Path(sys.argv[2]), sys.argv[1]))))
