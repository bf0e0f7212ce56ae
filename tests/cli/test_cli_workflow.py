"""dump --inputs-from, --check-numerics and --max-bytes through the real CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import (
    CNN_H5,
    MULTI_IO_H5,
    RCNN,
    SAMPLES,
    assert_one_line_error,
    import_file,
    inputs_of,
    invoke,
    ok,
    tensors_of,
)


def test_inputs_from_feeds_the_stored_inputs_again(tmp_path: Path, reference_models: dict[str, Any]) -> None:
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    ok(invoke("dump", MULTI_IO_H5, "-l", "label", "--seed", "7", "-o", first))
    ok(invoke("dump", MULTI_IO_H5, "-l", "label", "--inputs-from", first, "-o", second))
    stored = inputs_of(first)
    with h5py.File(second) as b:
        for name in ("image", "tokens"):
            np.testing.assert_array_equal(b[f"inputs/{name}"][()], stored[name])
            assert b[f"inputs/{name}"].attrs["source"] == f"{first}:{name}"
    # both runs equal Keras on the inputs stored in the first archive
    label, _ = reference_models["multi_io"].predict([stored["image"], stored["tokens"]], verbose=0)
    for archive in (first, second):
        np.testing.assert_allclose(tensors_of(archive)["label/Softmax:0"], label, rtol=1e-5, atol=1e-6)
    assert invoke("diff", first, second).exit_code == 0


@pytest.fixture(scope="module")
def nan_model(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dense layer whose kernel holds one NaN: the first non-finite op is that kernel's read."""
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
    result = invoke("dump", nan_model, "--check-numerics", "--json", "-o", out)
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
    ok(invoke("dump", CNN_H5, "--check-numerics", "-o", tmp_path / "ok.h5"))
    with h5py.File(tmp_path / "ok.h5") as f:
        assert json.loads(f.attrs["numerics"]) == {"nonfinite": None}


def test_max_bytes_stops_before_running(tmp_path: Path) -> None:
    out = tmp_path / "big.h5"
    assert_one_line_error(
        invoke("dump", CNN_H5, "-t", ".*", "--max-bytes", "1K", "-o", out), 2, "more than --max-bytes 1.0 KiB"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_many_samples_stream_into_one_dataset(tmp_path: Path, reference_models: dict[str, Any]) -> None:
    x = np.random.default_rng(3).random((10, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "s.h5"
    ok(invoke("dump", CNN_H5, "-l", "probs", "-i", tmp_path / "x.npy", "--batch-size", "4", "-o", out))
    expected = reference_models["cnn"].predict(x, verbose=0)
    with h5py.File(out) as f:
        ds = f["tensors/probs/Softmax:0"]
        assert ds.attrs["layout"] == "batch" and ds.shape == (10, 10) and ds.maxshape[0] is None
        np.testing.assert_allclose(ds[()], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(f["inputs/image"][()], x)


def test_tensors_without_batch_axis_are_stored_per_batch(
    tmp_path: Path, reference_models: dict[str, Any], keras: Any, tf: Any
) -> None:
    """6 images through the fixed-batch-2 sample: 3 batches; NMS indices stored once per batch, each exact."""
    images = np.random.default_rng(5).random((6, 32, 32, 3), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "r.h5"
    nms = "ROI/rpn_non_max_suppression/NonMaxSuppressionV3:0"
    ok(invoke("dump", *RCNN, "-t", nms, "-l", "rpn_class", "-i", tmp_path / "images.npy",
              "--compression", "gzip", "-o", out))  # fmt: skip
    model = reference_models["mini_rcnn"]
    heads = keras.Model(model.inputs, [model.get_layer("rpn_bbox").output, model.get_layer("rpn_class").output])
    with h5py.File(out) as f:
        group = f[f"tensors/{nms}"]
        assert group.attrs["layout"] == "per_batch" and group.attrs["batches"] == 3
        assert sorted(group) == ["batch_00000", "batch_00001", "batch_00002"]
        scores_ds = f["tensors/rpn_class/Reshape:0"]
        assert scores_ds.attrs["layout"] == "batch" and scores_ds.compression == "gzip"
        for batch in range(3):
            boxes, scores = (np.asarray(a) for a in heads(images[2 * batch : 2 * batch + 2]))
            expected = tf.image.non_max_suppression(boxes[0], scores[0], 10, 0.5).numpy()
            np.testing.assert_array_equal(group[f"batch_{batch:05d}"][()], expected)
            np.testing.assert_allclose(scores_ds[2 * batch : 2 * batch + 2], scores, rtol=1e-6, atol=1e-7)


def test_directory_of_samples_streams_like_one_file(tmp_path: Path, reference_models: dict[str, Any]) -> None:
    x = np.random.default_rng(9).random((5, 28, 28, 1), dtype=np.float32)
    (tmp_path / "set").mkdir()
    for i, sample in enumerate(x):
        np.save(tmp_path / "set" / f"{i:03d}.npy", sample)
    np.save(tmp_path / "all.npy", x)
    outs = []
    for source in (tmp_path / "set", tmp_path / "all.npy"):
        out = tmp_path / f"{source.stem}.h5"
        ok(invoke("dump", CNN_H5, "-l", "probs", "-i", source, "--batch-size", "2", "-o", out))
        outs.append(out)
    expected = reference_models["cnn"].predict(x, verbose=0)
    for out in outs:
        np.testing.assert_array_equal(inputs_of(out)["image"], x)
        np.testing.assert_allclose(tensors_of(out)["probs/Softmax:0"], expected, rtol=1e-5, atol=1e-6)


def test_loop_body_tensor_is_stored_per_iteration_and_equals_direct_nms(
    tmp_path: Path, map_fn_nms_reference: Callable[[np.ndarray], list[np.ndarray]]
) -> None:
    """NMS inside tf.map_fn over 5 images in batches of 2: one value per image, in order, each exact."""

    images = np.random.default_rng(11).random((5, 16, 16, 3), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "loop.h5"
    custom = SAMPLES / "map_fn_layers.py"
    nms = "proposals/per_image/while/body/non_max_suppression/NonMaxSuppressionV3:0"
    result = ok(invoke(
        "dump", SAMPLES / "map_fn_nms.keras", "--custom-objects", custom, "-t", re.escape(nms), "-l", "class",
        "-i", tmp_path / "images.npy", "--batch-size", "2", "-o", out, "--json",
    ))  # fmt: skip
    stored = {t["name"]: t for t in json.loads(result.stdout)["tensors"]}
    assert (stored[nms]["layout"], stored[nms]["executions"]) == ("per_iteration", 5)
    expected = map_fn_nms_reference(images)
    with h5py.File(out) as f:
        group = f[f"tensors/{nms}"]
        assert group.attrs["layout"] == "per_iteration" and group.attrs["count"] == 5
        assert list(group.attrs["iterations"]) == [0, 1, 0, 1, 0]
        assert list(group.attrs["batches"]) == [0, 0, 1, 1, 2]
        for step in range(5):
            np.testing.assert_array_equal(group[f"step_{step:06d}"][()], expected[step])
            assert group[f"step_{step:06d}"].attrs["iteration"] == step % 2


LOOP_LAYER = '''
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="probe_tests")
class SqrtLoop(keras.layers.Layer):
    """acc <- sqrt(acc - i) for i = 0, 1, 2: finite in iteration 0, NaN from iteration 1 on."""

    def call(self, x):
        def body(i, acc):
            return i + 1, tf.sqrt(acc - tf.cast(i, acc.dtype), name="loop_sqrt")

        return tf.while_loop(lambda i, acc: i < 3, body, (tf.constant(0), x))[1]
'''


def test_check_numerics_inside_a_loop_names_the_op_and_iteration(tmp_path: Path, keras: Any) -> None:
    (tmp_path / "sqrt_loop.py").write_text(LOOP_LAYER)
    module = import_file(tmp_path / "sqrt_loop.py", "sqrt_loop_for_test")
    x = keras.Input((4,), name="x")
    model = keras.Model(x, module.SqrtLoop(name="ln")(x))
    model.save(tmp_path / "loopnan.keras")
    out = tmp_path / "ln.h5"
    result = invoke(
        "dump", tmp_path / "loopnan.keras", "--custom-objects", tmp_path / "sqrt_loop.py", "--check-numerics",
        "-o", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    found = json.loads(result.stdout)["numerics"]
    assert found["name"] == "ln/while/body/loop_sqrt:0" and found["iteration"] == [1] and found["op_type"] == "Sqrt"
    assert (
        result.stderr.strip()
        == "Error: NaN/Inf first appears at ln/while/body/loop_sqrt:0 (op Sqrt, layer ln, iteration 1)"
    )
