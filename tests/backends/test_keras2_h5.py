"""Keras-2-era (tf.keras 2.x) legacy HDF5 files, written byte-for-byte in that format with h5py.

tf_keras is not installed here (it pulls the full 572 MB tensorflow wheel), so these files are
made the way tf.keras 2.15 wrote them: Keras 2 configs (``batch_input_shape``, nested-list
``inbound_nodes``, no ``module``/``registered_name``) and weights named ``layer/kernel:0``.
The dumped values are checked against the same maths done directly with TensorFlow ops.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke, list_json, ok


def _init(name: str) -> dict[str, object]:
    return {"class_name": name, "config": {"seed": None} if name == "GlorotUniform" else {}}


def _conv(name: str, **extra: object) -> dict[str, object]:
    return {
        "class_name": "Conv2D",
        "config": {
            "name": name, "trainable": True, "dtype": "float32", "filters": 4, "kernel_size": [3, 3],
            "strides": [1, 1], "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1],
            "groups": 1, "activation": "relu", "use_bias": True, "kernel_initializer": _init("GlorotUniform"),
            "bias_initializer": _init("Zeros"), "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None, **extra,
        },
    }  # fmt: skip


def _bn(name: str) -> dict[str, object]:
    return {
        "class_name": "BatchNormalization",
        "config": {
            "name": name, "trainable": True, "dtype": "float32", "axis": [3], "momentum": 0.99,
            "epsilon": 0.001, "center": True, "scale": True, "beta_initializer": _init("Zeros"),
            "gamma_initializer": _init("Ones"), "moving_mean_initializer": _init("Zeros"),
            "moving_variance_initializer": _init("Ones"), "beta_regularizer": None, "gamma_regularizer": None,
            "beta_constraint": None, "gamma_constraint": None,
        },
    }  # fmt: skip


def _dense(name: str) -> dict[str, object]:
    return {
        "class_name": "Dense",
        "config": {
            "name": name, "trainable": True, "dtype": "float32", "units": 3, "activation": "softmax",
            "use_bias": True, "kernel_initializer": _init("GlorotUniform"), "bias_initializer": _init("Zeros"),
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None,
        },
    }  # fmt: skip


def _flatten(name: str) -> dict[str, object]:
    return {"class_name": "Flatten", "config": {"name": name, "trainable": True, "dtype": "float32",
                                                "data_format": "channels_last"}}  # fmt: skip


def _weights() -> dict[str, list[tuple[str, np.ndarray]]]:
    rng = np.random.default_rng(2)
    f32 = np.float32
    return {
        "conv2d": [("kernel:0", rng.normal(size=(3, 3, 1, 4)).astype(f32)), ("bias:0", rng.normal(size=4).astype(f32))],
        "batch_normalization": [
            ("gamma:0", rng.uniform(0.5, 1.5, 4).astype(f32)),
            ("beta:0", rng.normal(size=4).astype(f32)),
            ("moving_mean:0", rng.normal(size=4).astype(f32)),
            ("moving_variance:0", rng.uniform(0.5, 2.0, 4).astype(f32)),
        ],
        "flatten": [],
        "dense": [("kernel:0", rng.normal(size=(144, 3)).astype(f32)), ("bias:0", rng.normal(size=3).astype(f32))],
    }


def _write(path: Path, config: dict[str, object]) -> None:
    weights = _weights()
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.15.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        group.attrs["keras_version"] = b"2.15.0"
        group.attrs["backend"] = b"tensorflow"
        names = ["input_1", *weights] if config["class_name"] == "Functional" else list(weights)
        group.attrs["layer_names"] = [n.encode() for n in names]
        for layer in names:
            layer_group = group.create_group(layer)
            pairs = weights.get(layer, [])
            layer_group.attrs["weight_names"] = np.array([f"{layer}/{w}".encode() for w, _ in pairs], dtype="S")
            for weight, value in pairs:
                layer_group.create_dataset(f"{layer}/{weight}", data=value)


def _expected(x: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    w = {layer: dict(pairs) for layer, pairs in _weights().items()}
    conv = tf.nn.relu(tf.nn.conv2d(x, w["conv2d"]["kernel:0"], 1, "VALID") + w["conv2d"]["bias:0"]).numpy()
    bn = w["batch_normalization"]
    normed = (conv - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + 1e-3) * bn["gamma:0"] + bn["beta:0"]
    logits = normed.reshape(len(x), -1) @ w["dense"]["kernel:0"] + w["dense"]["bias:0"]
    return {"conv2d": conv, "batch_normalization": normed, "dense": tf.nn.softmax(logits).numpy()}


def sequential_config() -> dict[str, object]:
    first = _conv("conv2d", batch_input_shape=[None, 8, 8, 1])
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8, 8, 1], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "conv2d_input"}},
        first, _bn("batch_normalization"), _flatten("flatten"), _dense("dense"),
    ]  # fmt: skip
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def functional_config() -> dict[str, object]:
    def node(*names: str) -> list[list[list[object]]]:
        return [[[name, 0, 0, {}] for name in names]]

    layers = [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 8, 8, 1], "dtype": "float32", "sparse": False,
                    "ragged": False, "name": "input_1"}},
        {**_conv("conv2d"), "name": "conv2d", "inbound_nodes": node("input_1")},
        {**_bn("batch_normalization"), "name": "batch_normalization", "inbound_nodes": node("conv2d")},
        {**_flatten("flatten"), "name": "flatten", "inbound_nodes": node("batch_normalization")},
        {**_dense("dense"), "name": "dense", "inbound_nodes": node("flatten")},
    ]  # fmt: skip
    return {
        "class_name": "Functional",
        "config": {"name": "model", "layers": layers, "input_layers": [["input_1", 0, 0]],
                   "output_layers": [["dense", 0, 0]]},
    }  # fmt: skip


@pytest.mark.parametrize("config", [sequential_config, functional_config], ids=["sequential", "functional"])
def test_keras2_h5_lists_and_dumps_exact_values(config, tmp_path: Path) -> None:  # noqa: ANN001
    model = tmp_path / "keras2.h5"
    _write(model, config())
    x = np.random.default_rng(4).random((3, 8, 8, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    doc = list_json(model)
    assert [layer["name"] for layer in doc["layers"]][1:] == ["conv2d", "batch_normalization", "flatten", "dense"]
    assert all(not t["name"].startswith(("sequential", "model/", "model_1")) for t in doc["tensors"])
    out = tmp_path / "out.h5"
    ok(invoke("dump", model, "-l", "conv2d|batch_normalization|dense", "-i", tmp_path / "x.npy", "-o", out))
    layer_outputs = {layer["name"]: layer["outputs"][0] for layer in doc["layers"]}
    with h5py.File(out) as f:
        for layer, expected in _expected(x).items():
            np.testing.assert_allclose(f[f"tensors/{layer_outputs[layer]}"][()], expected, rtol=1e-5, atol=1e-5)
