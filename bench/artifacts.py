"""The bench's work dir: a keras.applications model with random weights, its SavedModel export and the inputs.

Built once per model and reused. As a script it builds them, in a child process of the bench, so model
building leaves no state in the measuring one:

    python bench/artifacts.py MODEL WORKDIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from measure import PROBE, log, run_cmd

SEED = 0
BATCH = 8
BIG_N = 256
BIG_BATCH = 32
SMALL_N, LARGE_N = 64, 1024  # ratio 8: peak memory of streaming either many samples must be the same
DEFAULT_MODEL = "ResNet50"


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
    """Seconds it took to build what the work dir lacks; None when it was complete."""
    if work.complete():
        return None
    log(f"building {work.model} (weights=None, seed {SEED}) into {work.root} ...")
    elapsed, _ = run_cmd([sys.executable, __file__, work.model, work.root])
    return elapsed


def large_input(work: Work) -> Path:
    """LARGE_N samples (x_big repeated), for ratio 8; written once."""
    import numpy as np

    big = work.root / f"x{LARGE_N}.npy"
    source = np.load(work.x_big, mmap_mode="r")
    shape = (LARGE_N, *source.shape[1:])
    if not big.is_file() or np.load(big, mmap_mode="r").shape != shape:
        out = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=shape)
        for start in range(0, LARGE_N, BIG_N):
            out[start : start + BIG_N] = source
        out.flush()
        del out
    return big


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


if __name__ == "__main__":
    build(Work(Path(sys.argv[2]), sys.argv[1]))
