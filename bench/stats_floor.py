"""What ``--histogram`` and ``--channels`` cost: in one warm process, every op tensor of SMALL_N samples
(batches of BIG_BATCH) computed and reduced four ways, each timed over all batches after a warm-up batch:

- ``forward``: each tensor summed to one number (the model runs, nothing large leaves TensorFlow);
- ``default``: ``--stats-only``'s default statistics (``HealthRunner``);
- ``detailed``: with ``--histogram`` and ``--channels`` (``DistributionRunner``, which computes both);
- ``histogram``: each tensor's fixed-width histogram alone (TensorFlow's ``HistogramFixedWidth``).

Run in a child process of the bench; prints JSON.

    python bench/stats_floor.py MODEL WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from artifacts import BIG_BATCH, Work


def main(work: Work) -> dict[str, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    import probe_cli as probe
    from probe_cli.backends import registry, tfenv, tfgraph
    from probe_cli.backends.base import OpenOptions
    from probe_cli.core.types import Feed

    traced = registry.open_model(work.h5, OpenOptions())
    inputs = {spec.graph_name for spec in traced.index.inputs}
    selection = [info for info in probe.Model(traced).select(tensors=[".*"]) if info.graph_name not in inputs]
    tf = tfenv.tf()
    x = np.load(work.x_small)
    name = traced.index.inputs[0].name
    batches = [[Feed(name, x[i : i + BIG_BATCH], "bench")] for i in range(0, len(x), BIG_BATCH)]
    placeholders = [traced.placeholders[spec.name] for spec in traced.index.inputs]
    fetches = [traced.graph_tensors[info.name].name for info in selection]

    def pruned(reduce: Any) -> Any:
        function = tfgraph.prune(traced.function.graph, placeholders, fetches, reduce)
        span = tf.constant([[0.0, 1.0]] * len(fetches), tf.float64)
        return lambda feeds: function(tf.constant(feeds[0].array), span)

    def sums(values: list[Any], _: Any) -> list[Any]:
        return [tf.reduce_sum(tf.cast(v, tf.float32)) for v in values]

    def histograms(values: list[Any], _: Any) -> list[Any]:
        return [tf.histogram_fixed_width(tf.cast(v, tf.float32), tf.constant([0.0, 1.0]), nbins=64) for v in values]

    def total(run: Any) -> float:
        run(batches[0])
        start = time.perf_counter()
        for feeds in batches:
            run(feeds)
        return time.perf_counter() - start

    found: dict[str, float] = {}
    with tfenv.grappler_off():
        found["forward"] = total(pruned(sums))
        found["default"] = total(tfgraph.HealthRunner(traced, selection))
        found["detailed"] = total(tfgraph.DistributionRunner(traced, selection, None, 64))
        found["histogram"] = total(pruned(histograms))
    return found


if __name__ == "__main__":
    print(json.dumps(main(Work(Path(sys.argv[2]), sys.argv[1]))))
