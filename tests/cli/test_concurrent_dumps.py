"""Two ``probe dump`` processes started together on one destination: one archive, intact; the other exits 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import pytest
from conftest import SAMPLES
from test_entrypoint import clean_env, probe_executable


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_dumps_to_one_path(tmp_path: Path, attempt: int) -> None:
    dest = tmp_path / "same.h5"
    seeds = ("1", "2")
    procs = [
        subprocess.Popen(
            # thousands of samples: the writes take long enough that both runs are writing at once
            [str(probe_executable()), "dump", str(SAMPLES / "cnn.h5"), "--seed", seed, "--batch-size", "2048"]
            + ["-o", str(dest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for seed in seeds
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner, (_, loser_err) = (
        seeds[[code for code, _ in results].index(0)],
        next(r for r in results if r[0] == 2),
    )
    assert loser_err.startswith("Error: archive") and "already exists" in loser_err and loser_err.count("\n") == 1
    with h5py.File(dest) as f:  # the winner's archive, whole
        assert str(f.attrs["seed"]) == winner and "tensors/probs/Softmax:0" in f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]  # no temporary file left
