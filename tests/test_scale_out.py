"""docs/scale-out.md's Dask example runs as written, on a local cluster of two worker processes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, SAMPLES, tensors_of

DOC = ROOT / "docs" / "scale-out.md"


def test_the_dask_example_shards_and_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL) if "LocalCluster" in b]
    shutil.copytree(SAMPLES, tmp_path / "sample_models")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "scale_out_doc"}
    exec(compile(block, f"{DOC.name} (Dask)", "exec"), namespace)  # noqa: S102 - our own docs
    with h5py.File(tmp_path / "all.probe.h5") as f:
        assert f["tensors/conv1/Relu:0"].is_virtual and f["tensors/conv1/Relu:0"].shape[0] == 64
    # the same run in one process: batches of 16 fall alike into shards of 16, so values are equal
    import probe_cli as probe

    probe.open(SAMPLES / "cnn.h5").dump(tmp_path / "one.h5", samples=64, batch_size=16, seed=0)
    merged, one = tensors_of(tmp_path / "all.probe.h5"), tensors_of(tmp_path / "one.h5")
    assert merged.keys() == one.keys()
    for name in one:
        np.testing.assert_array_equal(merged[name], one[name], err_msg=name)
