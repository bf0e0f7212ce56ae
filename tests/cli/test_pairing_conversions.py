"""Structural pairing on real conversions: a MobileNetV2 (linear bottlenecks: Conv + BatchNorm and no
activation; depthwise Conv + BatchNorm + ReLU6; residual adds; a Dense head), whose input its SavedModel
names otherwise, against that SavedModel and its float TFLite conversion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke, ok

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    out = tmp_path_factory.mktemp("forms")
    # freshly made batch norms scale by 1 / sqrt(1 + 1e-3): the converter names the projections it folds
    # them into after the Conv (block_N_project/convolution1), whose own value is 5e-4 off
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    model.save(out / "m.keras")
    model.export(out / "m_savedmodel", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "m_savedmodel"))
    (out / "m_float.tflite").write_bytes(converter.convert())
    return {"keras": out / "m.keras", "savedmodel": out / "m_savedmodel", "tflite": out / "m_float.tflite"}


def compare_json(*args: object) -> dict:
    result = invoke("compare", *map(str, args), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_tensor_of_the_float_conversion_pairs_the_folded_ones_by_structure(forms: dict[str, Path]) -> None:
    doc = compare_json(forms["keras"], forms["tflite"])
    assert doc["only_in_a"] == []  # every op output of the TFLite file has its partner
    pairs = {t["reference"]: t for t in doc["tensors"]}
    projections = [f"block_{n}_project_BN/batchnorm/add_1:0" for n in range(1, 17)]
    projections.append("expanded_conv_project_BN/batchnorm/add_1:0")
    for name in projections:  # each a Conv with its BatchNorm folded in, and no activation
        assert pairs[name]["paired_by"] == "fused" and pairs[name]["chain"] == ["Conv2D", "Mul", "AddV2"]
        assert pairs[name]["rel_error"] < 1e-5  # that value, not the convolution's before the BatchNorm
    logits = pairs["predictions/BiasAdd:0"]
    assert logits["paired_by"] == "fused" and logits["rel_error"] < 1e-5
    inputs = [t for t in doc["tensors"] if t["role"] == "input"]
    assert inputs and all(t["paired_by"] in ("name", "input") and t["rel_error"] == 0 for t in inputs)
    shipped = json.loads(ok(invoke("list", forms["tflite"], "--json")).stdout)["outputs"]
    outputs = {t["candidate"] for t in doc["tensors"] if t["role"] == "output"}
    assert set(shipped) <= outputs  # the output the user ships is compared
    assert set(doc["unpaired"]["reference"].values()) <= {"weights and constants", "intermediate ops of fused layers"}


def test_a_keras_file_and_its_saved_model_dumped_alike_diff_as_the_same(forms: dict[str, Path], tmp_path: Path) -> None:
    keras_h5, saved_h5 = tmp_path / "keras.h5", tmp_path / "saved.h5"
    ok(invoke("dump", forms["keras"], "--layer", ".*", "-o", keras_h5))
    ok(invoke("dump", forms["savedmodel"], "--layer", ".*", "--inputs-from", keras_h5, "-o", saved_h5))
    result = invoke("diff", saved_h5, keras_h5, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["only_in_a"] == doc["only_in_b"] == []
    inputs = [t for t in doc["tensors"] if t["role"] == "input"]  # input_layer[_N]:0 and keras_tensor_N:0
    assert [t["paired_by"] for t in inputs] == ["input"] and inputs[0]["reference"].startswith("input_layer")
    assert all(t["rel_error"] == 0 for t in doc["tensors"])
