"""dump --inputs-from, --check-numerics and --max-bytes through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from probe_cli.cli import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def probe(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_inputs_from_feeds_the_stored_inputs_again(tmp_path: Path) -> None:
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    assert probe("dump", SAMPLES / "multi_io.h5", "-l", "label", "--seed", "7", "-o", first).exit_code == 0
    result = probe("dump", SAMPLES / "multi_io.h5", "-l", "label", "--inputs-from", first, "-o", second)
    assert result.exit_code == 0, result.stderr
    with h5py.File(first) as a, h5py.File(second) as b:
        for name in ("image", "tokens"):
            np.testing.assert_array_equal(a[f"inputs/{name}"][()], b[f"inputs/{name}"][()])
            assert b[f"inputs/{name}"].attrs["source"] == f"{first}:{name}"
        np.testing.assert_array_equal(a["tensors/label/Softmax:0"][()], b["tensors/label/Softmax:0"][()])
    assert probe("diff", first, second).exit_code == 0


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dense layer whose kernel holds one NaN: the first non-finite op is that kernel's read."""
    import keras

    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(4, name="d1")(x)
    model = keras.Model(x, keras.layers.Dense(2, name="d2")(h))
    kernel, bias = model.get_layer("d1").get_weights()
    kernel[0, 0] = np.nan
    model.get_layer("d1").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("nan") / "nan.h5"
    model.save(path)
    return path


def test_check_numerics_names_the_first_nonfinite_op(nan_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.h5"
    result = probe("dump", nan_model, "--check-numerics", "--json", "-o", out)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "Error: NaN/Inf first appears at d1/Cast/ReadVariableOp:0 (op ReadVariableOp, layer d1)"
    ]
    found = json.loads(result.stdout)["numerics"]
    assert (found["name"], found["layer"], found["nan"], found["inf"]) == ("d1/Cast/ReadVariableOp:0", "d1", 1, 0)
    with h5py.File(out) as f:
        assert json.loads(f.attrs["numerics"])["name"] == "d1/Cast/ReadVariableOp:0"
        assert np.isnan(f["tensors/d1/MatMul:0"][()][0, 0])


def test_check_numerics_passes_a_healthy_model(tmp_path: Path) -> None:
    result = probe("dump", SAMPLES / "cnn.h5", "--check-numerics", "-o", tmp_path / "ok.h5")
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "ok.h5") as f:
        assert json.loads(f.attrs["numerics"]) == {"nonfinite": None}


def test_max_bytes_stops_before_running(tmp_path: Path) -> None:
    out = tmp_path / "big.h5"
    result = probe("dump", SAMPLES / "cnn.h5", "-t", ".*", "--max-bytes", "1K", "-o", out)
    assert result.exit_code == 2
    assert "more than --max-bytes 1.0 KiB" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_many_samples_stream_into_one_dataset(tmp_path: Path) -> None:
    import keras

    x = np.random.default_rng(3).random((10, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "s.h5"
    result = probe("dump", SAMPLES / "cnn.h5", "-l", "probs", "-i", tmp_path / "x.npy", "--batch-size", "4", "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = keras.models.load_model(SAMPLES / "cnn.h5", compile=False).predict(x, verbose=0)
    with h5py.File(out) as f:
        ds = f["tensors/probs/Softmax:0"]
        assert ds.attrs["layout"] == "batch" and ds.shape == (10, 10) and ds.maxshape[0] is None
        np.testing.assert_allclose(ds[()], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(f["inputs/image"][()], x)
