"""probe executes graphs without Grappler, even when a loop Capturer is the only thing built."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, SAMPLES

SCRIPT = """
from pathlib import Path
from probe_cli import _tf, pipeline
from probe_cli.control_flow import Capturer
traced = pipeline.open_model(pipeline.ModelOptions(Path({model!r})))
body = [t for t in traced.index.tensors if t.context is not None][:1]
assert body, "the model has no loop tensors"
Capturer(traced, body)  # alone: no Runner built before it
print(_tf.tf().config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))
"""


def test_loop_capture_alone_runs_without_grappler() -> None:
    """Values inside loops must be computed as the top-level ones are, even when a library
    caller builds only a Capturer."""
    code = SCRIPT.format(model=str(SAMPLES / "lstm.h5"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True"]
