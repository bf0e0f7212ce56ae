"""``probe dump``: values equal Keras', the archive layout and attributes, inputs, seeds, overwriting."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import (
    RCNN,
    Samples,
    assert_one_line_error,
    close,
    datasets,
    hdf5_tool,
    inputs_of,
    invoke,
    leftovers,
    ok,
    tensors_of,
)

from probe_cli import __version__


@pytest.fixture(scope="module")
def cnn_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch of 3 images for cnn.h5 as an .npy file."""
    path = tmp_path_factory.mktemp("inputs") / "image.npy"
    np.save(path, np.random.default_rng(3).random((3, 28, 28, 1), dtype=np.float32))
    return path


@pytest.fixture(scope="module")
def cnn_archive(samples: Samples, cnn_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn.h5 dumped with a file input: every layer output plus two inner ops."""
    archive = tmp_path_factory.mktemp("cnn") / "cnn.probe.h5"
    ok(
        invoke(
            "dump", samples.cnn_h5, "--input", cnn_input, "-t", "conv1/convolution:0", "-t", "bn2/batchnorm/mul_1",
            "-l", ".*", "-o", archive,
        )
    )  # fmt: skip
    return archive


@pytest.fixture(scope="module")
def multi_io_archive(samples: Samples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """multi_io.h5 with random inputs (a large batch, so the token ids cover the Embedding's range)."""
    archive = tmp_path_factory.mktemp("multi_io") / "multi_io.probe.h5"
    ok(invoke("dump", samples.multi_io_h5, "--batch-size", "64", "--seed", "11", "-o", archive))
    return archive


# ---------------------------------------------------------------- values


def test_model_output_equals_predict(cnn_archive: Path, cnn_input: Path, reference_models: dict[str, Any]) -> None:
    x = np.load(cnn_input)
    expected = reference_models["cnn"].predict(x, verbose=0)
    got = tensors_of(cnn_archive)["probs/Softmax:0"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "bn2", "gap", "probs"])
def test_layer_output_equals_keras(
    cnn_archive: Path,
    cnn_input: Path,
    reference_models: dict[str, Any],
    keras: Any,
    index_of: Callable[[str], dict[str, Any]],
    layer: str,
) -> None:
    model = reference_models["cnn"]
    x = np.load(cnn_input)
    expected = np.asarray(keras.Model(model.inputs, model.get_layer(layer).output)(x))
    [name] = layer_outputs(index_of("cnn"), layer)
    np.testing.assert_allclose(tensors_of(cnn_archive)[name], expected, rtol=1e-5, atol=1e-5)


def layer_outputs(index: dict[str, Any], layer: str) -> list[str]:
    """The output tensor names of ``layer`` as ``probe list --json`` reports them."""
    return next(entry["outputs"] for entry in index["layers"] if entry["name"] == layer)


def test_inner_ops_equal_keras(cnn_archive: Path, cnn_input: Path, reference_models: dict[str, Any], tf: Any) -> None:
    """Ops inside a layer: the convolution before bias and activation, recomputed directly."""
    model = reference_models["cnn"]
    conv1 = model.get_layer("conv1")
    x = np.load(cnn_input)
    kernel, bias = (np.asarray(w) for w in conv1.weights)
    expected = tf.nn.conv2d(x, kernel, strides=1, padding="VALID").numpy()
    values = tensors_of(cnn_archive)
    np.testing.assert_allclose(values["conv1/convolution:0"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values["conv1/Relu:0"], np.maximum(expected + bias, 0), rtol=1e-5, atol=1e-5)


def test_multi_io_outputs_equal_predict(
    multi_io_archive: Path, reference_models: dict[str, Any], index_of: Callable[[str], dict[str, Any]]
) -> None:
    model = reference_models["multi_io"]
    feeds = inputs_of(multi_io_archive)
    label, score = model.predict({"image": feeds["image"], "tokens": feeds["tokens"]}, verbose=0)
    values = tensors_of(multi_io_archive)
    [label_name] = layer_outputs(index_of("multi_io"), "label")
    [score_name] = layer_outputs(index_of("multi_io"), "score")
    np.testing.assert_allclose(values[label_name], label, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[score_name], score, rtol=1e-5, atol=1e-5)


def test_multi_io_embedding_equals_keras(
    multi_io_archive: Path, reference_models: dict[str, Any], keras: Any, index_of: Callable[[str], dict[str, Any]]
) -> None:
    model = reference_models["multi_io"]
    feeds = inputs_of(multi_io_archive)
    expected = keras.Model(model.inputs, model.get_layer("embed").output)([feeds["image"], feeds["tokens"]])
    [name] = layer_outputs(index_of("multi_io"), "embed")
    np.testing.assert_allclose(tensors_of(multi_io_archive)[name], np.asarray(expected), rtol=1e-6)


def test_embedding_random_ints_below_input_dim(multi_io_archive: Path) -> None:
    tokens = inputs_of(multi_io_archive)["tokens"]
    assert tokens.dtype == np.int32 and tokens.shape == (64, 12)
    assert tokens.min() >= 0 and tokens.max() < 50
    assert tokens.max() >= 40, "random ids should cover the Embedding's range, not a small default"
    image = inputs_of(multi_io_archive)["image"]
    assert image.dtype == np.float32 and image.shape == (64, 32, 32, 3)
    assert 0.0 <= image.min() and image.max() < 1.0


def test_nms_inside_custom_layer_equals_tf(
    samples: Samples, reference_models: dict[str, Any], keras: Any, tf: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "rcnn.h5"
    ok(invoke("dump", *RCNN, "-t", "ROI/.*NonMaxSuppressionV3:0", "-l", "rpn_bbox", "-l", "rpn_class", "-l", "ROI",
              "--seed", "5", "-o", archive))  # fmt: skip
    values = tensors_of(archive)
    nms = sorted(n for n in values if n.endswith("NonMaxSuppressionV3:0"))
    assert len(nms) == 2 and all(n.startswith("ROI/") for n in nms), nms
    image = inputs_of(archive)["image"]
    model = reference_models["mini_rcnn"]
    boxes, scores = keras.Model(
        model.inputs, [model.get_layer("rpn_bbox").output, model.get_layer("rpn_class").output]
    )(image)
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    np.testing.assert_allclose(values["rpn_bbox/Reshape:0"], boxes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["rpn_class/Reshape:0"], scores, rtol=1e-5, atol=1e-6)
    # graph order: image 0's NMS comes first
    with h5py.File(archive, "r") as f:
        ordered = sorted(nms, key=lambda n: int(f["tensors/" + n].attrs["order"]))
    for i, name in enumerate(ordered):
        expected = tf.image.non_max_suppression(boxes[i], scores[i], 10, 0.5).numpy()
        np.testing.assert_array_equal(values[name], expected)
    rois, _ = model.predict(image, verbose=0)
    np.testing.assert_allclose(values["ROI/stack:0"], rois, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- inputs and seeds


def test_npy_input_stored_unchanged(cnn_archive: Path, cnn_input: Path) -> None:
    with h5py.File(cnn_archive, "r") as f:
        ds = f["inputs/image"]
        np.testing.assert_array_equal(ds[()], np.load(cnn_input))
        assert ds.dtype == np.float32
        assert str(cnn_input) in str(ds.attrs["source"])


def test_input_dtypes_safe_silent_lossy_warned_and_recorded(
    samples: Samples, reference_models: dict[str, Any], tmp_path: Path
) -> None:
    """uint8 feeds a float32 input without a word; float64 is converted with one warning line, which the
    archive's input provenance keeps; the values are the model's on the converted input."""
    image = np.random.default_rng(2).random((1, 28, 28, 1))
    for dtype, expected in (("uint8", None), ("float64", "float64")):
        data = (image * 255).astype(np.uint8) if dtype == "uint8" else image
        np.save(tmp_path / f"{dtype}.npy", data)
        archive = tmp_path / f"{dtype}.h5"
        result = ok(invoke("dump", samples.cnn_h5, "-i", tmp_path / f"{dtype}.npy", "-l", "probs", "-o", archive))
        source = tmp_path / f"{dtype}.npy"
        warning = f"Warning: input 'image' from {source}: float64 converted to float32, which can change values"
        assert result.stderr.splitlines() == ([warning] if expected else [])
        with h5py.File(archive, "r") as f:
            assert f["inputs/image"].attrs.get("converted_from") == expected
            fed = f["inputs/image"][()]
        np.testing.assert_array_equal(fed, data.astype(np.float32))
        close(tensors_of(archive)["probs/Softmax:0"], reference_models["cnn"].predict(fed, verbose=0))


def test_compare_warns_of_a_conversion_once_and_records_it_in_both_archives(samples: Samples, tmp_path: Path) -> None:
    source = tmp_path / "f64.npy"
    np.save(source, np.random.default_rng(4).random((2, 28, 28, 1)))
    kept = tmp_path / "kept"
    result = invoke("compare", samples.cnn_h5, samples.cnn_keras, "-i", source, "-l", "probs", "--save-dir", kept)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"Warning: input 'image' from {source}: float64 converted to float32, which can change values"
    ]
    for archive in ("reference.probe.h5", "candidate.probe.h5"):
        with h5py.File(kept / archive, "r") as f:
            assert f["inputs/image"].attrs["converted_from"] == "float64"


def test_npz_inputs_stored_unchanged(samples: Samples, reference_models: dict[str, Any], tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    image = rng.random((2, 32, 32, 3), dtype=np.float32)
    tokens = rng.integers(0, 50, size=(2, 12)).astype(np.int32)
    npz = tmp_path / "feeds.npz"
    np.savez(npz, image=image, tokens=tokens)
    archive = tmp_path / "npz.h5"
    ok(invoke("dump", samples.multi_io_h5, "--input", npz, "-l", "label", "-o", archive))
    with h5py.File(archive, "r") as f:
        np.testing.assert_array_equal(f["inputs/image"][()], image)
        np.testing.assert_array_equal(f["inputs/tokens"][()], tokens)
        assert f["inputs/tokens"].dtype == np.int32
        for name in ("image", "tokens"):
            assert str(npz) in str(f[f"inputs/{name}"].attrs["source"])
    label, _ = reference_models["multi_io"].predict([image, tokens], verbose=0)
    np.testing.assert_allclose(next(iter(tensors_of(archive).values())), label, rtol=1e-5, atol=1e-6)


def test_named_npy_inputs(samples: Samples, tmp_path: Path) -> None:
    tokens = np.arange(24, dtype=np.int32).reshape(2, 12)
    image = np.zeros((2, 32, 32, 3), np.float32)
    np.save(tmp_path / "t.npy", tokens)
    np.save(tmp_path / "i.npy", image)
    archive = tmp_path / "named.h5"
    ok(invoke("dump", samples.multi_io_h5, "-i", f"tokens={tmp_path / 't.npy'}", "-i", f"image={tmp_path / 'i.npy'}",
              "-l", "embed", "-o", archive))  # fmt: skip
    feeds = inputs_of(archive)
    np.testing.assert_array_equal(feeds["tokens"], tokens)
    np.testing.assert_array_equal(feeds["image"], image)


def test_same_seed_identical_different_seed_differs(samples: Samples, tmp_path: Path) -> None:
    runs = {}
    for label, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        archive = tmp_path / f"{label}.h5"
        ok(invoke("dump", samples.multi_io_h5, "--seed", seed, "-l", "label", "-l", "embed", "-o", archive))
        runs[label] = (inputs_of(archive), tensors_of(archive))
    for group in (0, 1):
        assert runs["a"][group].keys() == runs["b"][group].keys() == runs["c"][group].keys()
        for name in runs["a"][group]:
            np.testing.assert_array_equal(runs["a"][group][name], runs["b"][group][name])
            assert not np.array_equal(runs["a"][group][name], runs["c"][group][name]), name
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert int(f.attrs["seed"]) == 4
        assert str(f["inputs/image"].attrs["source"]) == "random"


def test_value_range_and_shape_options(samples: Samples, tmp_path: Path) -> None:
    archive = tmp_path / "range.h5"
    ok(invoke("dump", samples.multi_io_h5, "--value-range", "image=-2,-1", "--value-range", "tokens=5,7",
              "--shape", "tokens=3,12", "--shape", "image=3,32,32,3", "-l", "label", "-o", archive))  # fmt: skip
    feeds = inputs_of(archive)
    assert feeds["image"].shape == (3, 32, 32, 3) and feeds["tokens"].shape == (3, 12)
    assert -2 <= feeds["image"].min() and feeds["image"].max() < -1
    assert set(np.unique(feeds["tokens"])) <= {5, 6}


# ---------------------------------------------------------------- archive layout and attributes


def test_archive_layout_and_dataset_attrs(cnn_archive: Path, index_of: Callable[[str], dict[str, Any]]) -> None:
    doc = {t["name"]: t for t in index_of("cnn")["tensors"]}
    with h5py.File(cnn_archive, "r") as f:
        assert set(f) == {"graph", "inputs", "tensors"}
        graph = json.loads(f["graph"][()])  # the model's dataflow, which diff pairs archives by
        by_name = {t["name"]: t for t in graph["tensors"]}
        assert graph["inputs"] == ["image:0"] and graph["outputs"] == ["probs/Softmax:0"]
        assert [t["name"] for t in graph["tensors"]] == [t["name"] for t in index_of("cnn")["tensors"]]
        assert by_name["conv2/convolution:0"]["op_inputs"] == [
            "pool1/MaxPool2d:0",
            "conv2/convolution/ReadVariableOp:0",
        ]
        stored = datasets(f["tensors"])
        assert stored
        for ds in stored:
            name = str(ds.attrs["name"])
            assert ds.name == f"/tensors/{name}", "the HDF5 path follows the tensor name"
            info = doc[name]
            assert ds.attrs["graph_name"] == info["graph_name"]
            assert ds.attrs["op_type"] == info["op_type"]
            assert ds.attrs["layer"] == (info["layer"] or "")
            assert ds.attrs["dtype"] == info["dtype"] == str(ds.dtype)
        assert "Relu:0" in f["tensors/conv1"]
        assert f["tensors/conv1/Relu:0"].attrs["layer"] == "conv1"
        assert f["tensors/bn2/batchnorm/mul_1:0"].attrs["op_type"] == "Mul"


def test_archive_root_attrs(cnn_archive: Path, samples: Samples, keras: Any, tf: Any) -> None:
    with h5py.File(cnn_archive, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        input_attrs = dict(f["inputs/image"].attrs)
    assert attrs["probe_version"] == __version__
    assert attrs["tensorflow_version"] == tf.__version__
    assert attrs["keras_version"] == keras.__version__
    assert Path(attrs["model_path"]).resolve() == samples.cnn_h5.resolve()
    assert attrs["model_sha256"] == hashlib.sha256(samples.cnn_h5.read_bytes()).hexdigest()
    assert int(attrs["seed"]) == 0
    assert attrs["command"].startswith("probe dump ") and "--input" in attrs["command"]
    assert str(samples.cnn_h5) in attrs["command"]
    created = datetime.fromisoformat(attrs["created"])
    assert created.utcoffset() == timedelta(0), "created is UTC"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)", attrs["created"])
    assert abs(datetime.now(timezone.utc) - created) < timedelta(hours=1)
    assert "source" in input_attrs


def test_h5ls_reads_archive(cnn_archive: Path) -> None:
    h5ls = hdf5_tool("h5ls")
    result = subprocess.run([h5ls, "-r", str(cnn_archive)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "/tensors/conv1/Relu:0" in result.stdout
    assert "/inputs/image" in result.stdout
    assert re.search(r"/tensors/conv1/Relu:0\s+Dataset \{3(/\w+)?, 26, 26, 8\}", result.stdout), result.stdout


def test_h5dump_reads_archive(cnn_archive: Path) -> None:
    h5dump = hdf5_tool("h5dump")
    result = subprocess.run([h5dump, "-H", str(cnn_archive)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for needle in ('ATTRIBUTE "model_sha256"', 'ATTRIBUTE "probe_version"', 'DATASET "Relu:0"', 'GROUP "tensors"'):
        assert needle in result.stdout


def test_dump_report_plain_and_json(samples: Samples, tmp_path: Path) -> None:
    plain = ok(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", tmp_path / "a.h5"))
    assert "probs/Softmax:0" in plain.stdout and "\x1b[" not in plain.stdout
    assert plain.stderr == ""
    doc = json.loads(ok(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", tmp_path / "b.h5", "--json")).stdout)
    assert doc["archive"] == str(tmp_path / "b.h5")
    [row] = doc["tensors"]
    assert row["name"] == "probs/Softmax:0" and row["shape"] == [1, 10] and row["dtype"] == "float32"
    assert {"min", "max", "mean"} <= set(row)
    assert row["min"] >= 0 and row["max"] <= 1


def test_default_output_name(samples: Samples, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ok(invoke("dump", samples.cnn_h5, "-l", "probs"))
    assert [p.name for p in tmp_path.iterdir()] == ["cnn.probe.h5"]


# ---------------------------------------------------------------- dry run, overwriting


def test_dry_run_writes_nothing(samples: Samples, out_dir: Path) -> None:
    archive = out_dir / "dry.h5"
    result = ok(invoke("dump", samples.cnn_h5, "-l", "conv.*", "-o", archive, "--dry-run"))
    assert "conv1/Relu:0" in result.stdout and "conv2/Relu:0" in result.stdout
    assert list(out_dir.iterdir()) == []
    doc = json.loads(ok(invoke("dump", samples.cnn_h5, "-l", "conv1", "-o", archive, "--dry-run", "--json")).stdout)
    assert doc["tensors"] == [{"name": "conv1/Relu:0", "shape": [1, 26, 26, 8], "dtype": "float32", "bytes": 21632}]
    assert list(out_dir.iterdir()) == []


def test_dry_run_on_existing_archive_is_fine(samples: Samples, out_dir: Path) -> None:
    archive = out_dir / "exists.h5"
    archive.write_bytes(b"keep me")
    ok(invoke("dump", samples.cnn_h5, "-l", "conv1", "-o", archive, "--dry-run"))
    assert archive.read_bytes() == b"keep me"


def test_refuses_to_overwrite_without_force(samples: Samples, out_dir: Path) -> None:
    archive = out_dir / "exists.h5"
    archive.write_bytes(b"keep me")
    before = archive.stat().st_mtime_ns
    line = assert_one_line_error(invoke("dump", samples.cnn_h5, "-l", "conv1", "-o", archive), 2, "exists", "--force")
    assert str(archive) in line
    assert archive.read_bytes() == b"keep me" and archive.stat().st_mtime_ns == before
    assert leftovers(out_dir) == [] and sorted(p.name for p in out_dir.iterdir()) == ["exists.h5"]


def test_force_overwrites(samples: Samples, out_dir: Path) -> None:
    archive = out_dir / "exists.h5"
    archive.write_bytes(b"old")
    ok(invoke("dump", samples.cnn_h5, "-l", "conv1", "-o", archive, "--force"))
    assert list(tensors_of(archive)) == ["conv1/Relu:0"]
    ok(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", archive, "--force"))
    assert list(tensors_of(archive)) == ["probs/Softmax:0"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["exists.h5"]


@pytest.fixture(scope="module")
def normalization_model(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """Keras 3's Normalization keeps mean and variance as eager tensors that the trace captures (a small
    one becomes a constant, a larger one a placeholder). Returns the model, an input file and the
    expected value of each tensor the tests check, computed by Keras or given directly."""
    root = tmp_path_factory.mktemp("norm")
    mean = np.linspace(-1, 1, 200, dtype=np.float32)
    variance = np.linspace(0.5, 2, 200, dtype=np.float32)
    inputs = keras.Input((200,), name="x")
    small = keras.layers.Normalization(mean=mean[:3], variance=variance[:3], name="small")(inputs[:, :3])
    large = keras.layers.Normalization(mean=mean, variance=variance, name="large")(inputs)
    model = keras.Model(inputs, [small, large])
    model.save(root / "norm.keras")
    x = np.random.default_rng(0).random((4, 200), dtype=np.float32)
    np.save(root / "x.npy", x)
    expected_small, expected_large = model.predict(x, verbose=0)
    expected = {
        "large/Sub/y:0": mean,
        "small/Sub/y:0": mean[:3],
        "large/truediv:0": expected_large,
        "small/truediv:0": expected_small,
    }
    return root / "norm.keras", root / "x.npy", expected


@pytest.mark.parametrize(
    ("patterns", "checked"),
    [
        (
            ["-t", "large/.*", "-t", "small/.*"],
            ["large/Sub/y:0", "small/Sub/y:0", "large/truediv:0", "small/truediv:0"],
        ),
        (["-t", "large/Sub/y:0"], ["large/Sub/y:0"]),
        (["-t", ".*"], ["large/Sub/y:0", "small/Sub/y:0", "large/truediv:0", "small/truediv:0"]),
    ],
    ids=["layers", "one-constant", "everything"],
)
def test_captured_constants_are_fetched(
    normalization_model: tuple[Path, Path, dict[str, Any]], tmp_path: Path, patterns: list[str], checked: list[str]
) -> None:
    """The captured mean (and the outputs computed from it) are tensors like any other."""
    path, x, expected = normalization_model
    out = tmp_path / "out.h5"
    ok(invoke("dump", path, *patterns, "-i", x, "-o", out))
    stored = tensors_of(out)
    assert set(checked) <= set(stored), sorted(stored)
    for name in checked:
        np.testing.assert_allclose(stored[name].reshape(expected[name].shape), expected[name], rtol=1e-6)
