"""What a user would do without probe: the other side of every ratio.

Whole processes (import + ``load_model``, a script producing the same bytes, ``model.predict``,
``saved_model_cli run``) and, in-process, a warm ``tf.function`` forward pass and a raw h5py write.
The in-process baselines run with Grappler on, as in a user's script: probe switches it off only
around its own executions.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from artifacts import BATCH, BIG_BATCH, Work
from measure import BIN, CommandFailed, run_cmd, timed

SAVED_MODEL_CLI = BIN / "saved_model_cli"
SIGNATURE = ["--tag_set", "serve", "--signature_def", "serving_default"]  # saved_model_cli's, for show and run

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

#: Ratios 10 and 11's baseline: TensorFlow Debugger V2 recording FULL_HEALTH (counts of -inf, +inf, NaN,
#: negative, zero and positive values) of every float tensor of the graph, per batch, around
#: model.predict, as a user would run it to look at every tensor over a dataset without probe.
TFDBG_SCRIPT = """
import sys, numpy as np, tensorflow as tf, keras
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
tf.debugging.experimental.enable_dump_debug_info(sys.argv[4], tensor_debug_mode="FULL_HEALTH", circular_buffer_size=-1)
model.predict(x, batch_size=int(sys.argv[3]), verbose=0)
tf.debugging.experimental.disable_dump_debug_info()
"""

PREDICT_SCRIPT = """
import sys, time, json, numpy as np, tensorflow, keras
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
t = time.perf_counter()
model.predict(x, batch_size=int(sys.argv[3]), verbose=0)
print(json.dumps({"predict_s": time.perf_counter() - t}))
"""


# ---------------------------------------------------------------- whole processes


def load_command(work: Work) -> list[Any]:
    """Ratio 4's baseline: import tensorflow + keras, load_model."""
    return [sys.executable, "-c", LOAD_SCRIPT, work.h5]


def raw_dump_command(work: Work, shapes: Path, out: Path) -> list[Any]:
    """Ratios 2 and 3's whole-process baseline, writing arrays of the (shape, dtype) pairs in ``shapes``."""
    return [sys.executable, "-c", RAW_DUMP_SCRIPT, work.h5, work.x8, shapes, out]


def signature_input_key(work: Work) -> str:
    _, proc = run_cmd([SAVED_MODEL_CLI, "show", "--dir", work.saved_model, *SIGNATURE], capture=True)
    keys = re.findall(r"inputs\['([^']+)'\]", proc.stdout)
    if len(keys) != 1:
        raise CommandFailed(f"expected one signature input, saved_model_cli show gave {keys}")
    return keys[0]


def saved_model_cli_run(work: Work, key: str) -> list[Any]:
    """Ratio 5's baseline: the SavedModel export run on batch BATCH."""
    return [SAVED_MODEL_CLI, "run", "--dir", work.saved_model, *SIGNATURE, "--inputs", f"{key}={work.x8}"]


def tfdbg_command(work: Work, inputs: Path, root: Path) -> list[Any]:
    """Ratios 10 and 11's baseline over ``inputs`` in batches of BIG_BATCH, recording into ``root`` (which
    the caller removes afterwards, untimed)."""
    return [sys.executable, "-c", TFDBG_SCRIPT, work.h5, inputs, BIG_BATCH, root]


def predict_script(work: Work) -> tuple[float, float]:
    """Ratio 6's whole-process baseline: PREDICT_SCRIPT's wall time, and that of model.predict alone,
    which it prints."""
    elapsed, proc = run_cmd([sys.executable, "-c", PREDICT_SCRIPT, work.h5, work.x_big, BIG_BATCH], capture=True)
    return elapsed, json.loads(proc.stdout.strip().splitlines()[-1])["predict_s"]


# ---------------------------------------------------------------- in-process


def grappler_on(tf: Any) -> bool:
    """Whether the process runs functions with Grappler, as a user's script does (probe must leave it on)."""
    return not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)


class Forward:
    """The model's own forward pass on batch BATCH, traced once and warm: the in-process baseline.

    The model is loaded again, as a user's script would, rather than borrowed from probe; its
    function is instantiated (and optimized by Grappler) on its first call.
    """

    def __init__(self, work: Work) -> None:
        import numpy as np

        from probe_cli.backends import tfenv

        tf, keras = tfenv.tf(), tfenv.keras()
        self.model = keras.models.load_model(work.h5, compile=False)
        self.array = np.load(work.x8)
        assert len(self.array) == BATCH
        self.function = tf.function(lambda x: self.model(x, training=False))
        self.x = tf.constant(self.array)
        self()

    def __call__(self) -> Any:
        return self.function(self.x).numpy()


def raw_write(path: Path, arrays: list[Any]) -> None:
    """The same arrays in flat, uncompressed, attribute-less datasets: ratios 2 and 3's in-process write."""
    import h5py

    with h5py.File(path, "w") as file:
        for i, array in enumerate(arrays):
            file.create_dataset(f"t{i}", data=array)


def predict(model: Any, big: Any) -> float:
    """Ratio 6's in-process baseline: seconds of a warm ``model.predict`` over ``big`` in batches of BIG_BATCH
    (its function traced on one batch first)."""
    model.predict(big[:BIG_BATCH], batch_size=BIG_BATCH, verbose=0)
    return timed(model.predict, big, batch_size=BIG_BATCH, verbose=0)[0]
