"""probe executes graphs without Grappler, and gives the caller's Grappler options back afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import SAMPLES


def test_loop_capture_runs_without_grappler_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values inside loops are computed as the top-level ones are, with Grappler off, even when a
    library caller builds only a Capturer; the process-wide option is as it was afterwards."""
    from probe_cli.backends import tfenv
    from probe_cli.backends.keras import capture as capture_module
    from probe_cli.backends.registry import open_model
    from probe_cli.core.types import Feed, Region

    tf = tfenv.tf()
    seen: list[bool] = []
    recorder = capture_module._recorder

    def watching(*args: Any) -> Any:
        record = recorder(*args)

        def wrapped(*values: Any) -> Any:
            seen.append(bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer")))
            return record(*values)

        return wrapped

    monkeypatch.setattr(capture_module, "_recorder", watching)
    traced = open_model(SAMPLES / "lstm.h5")
    body = [t for t in traced.index.tensors if t.region is Region.BODY][:1]
    assert body, "the model has no loop tensors"
    before = tf.config.optimizer.get_experimental_options()
    spec = traced.index.inputs[0]
    x = np.zeros((1, *spec.shape[1:]), dtype=spec.dtype)
    values = capture_module.Capturer(traced, body)([Feed(spec.name, x, "test")])  # alone: no Runner built
    assert values[body[0].name] and seen and all(seen)
    assert tf.config.optimizer.get_experimental_options() == before
