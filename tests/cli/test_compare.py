"""``probe compare``: two forms of one model on the same inputs, paired across formats, diff(1)'s exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, assert_one_line_error, invoke, ok, tensors_of

CNN_H5 = SAMPLES / "cnn.h5"
CNN_SAVED = SAMPLES / "cnn_savedmodel"
#: the same CNN, conv2's kernel scaled by 1.01 (make_models.py: PERTURBED_LAYER, PERTURBATION)
CNN_PERTURBED = SAMPLES / "cnn_perturbed_savedmodel"
LAYER_OUTPUTS = ["conv1/Relu:0", "pool1/MaxPool2d:0", "conv2/Relu:0", "bn2/batchnorm/add_1:0", "gap/Mean:0",
                 "probs/Softmax:0"]  # fmt: skip


def compare_json(*args: object, code: int) -> dict:
    result = invoke("compare", *map(str, args), "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_a_keras_file_and_its_saved_model_are_the_same() -> None:
    doc = compare_json(CNN_H5, CNN_SAVED, code=0)
    compared = {t["name"]: t for t in doc["tensors"]}
    assert set(LAYER_OUTPUTS) <= set(compared) and doc["same"] and doc["first_divergence"] is None
    assert all(compared[name]["rel_error"] == 0.0 for name in LAYER_OUTPUTS)
    assert doc["only_in_b"] == []  # every tensor of the Keras file found its partner
    assert all(name.startswith(("Func/", "StatefulPartitionedCall", "Identity")) or "unknown" in name
               for name in doc["only_in_a"])  # fmt: skip


def test_a_perturbed_copy_diverges_at_the_perturbed_layer(tmp_path: Path) -> None:
    result = invoke("compare", CNN_H5, CNN_PERTURBED, "--save-dir", tmp_path / "kept")
    assert result.exit_code == 1, result.output
    assert "First divergence: conv2/convolution/ReadVariableOp:0 (op Identity, layer conv2)" in result.stdout
    assert "relative error 0.00999999" in result.stdout
    # the layers before it are the same, every layer after it differs by about 1%
    doc = compare_json(CNN_H5, CNN_PERTURBED, code=1)
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert by_name["conv1/Relu:0"]["status"] == "ok"
    assert all(by_name[n]["status"] == "differs" for n in LAYER_OUTPUTS[2:])
    assert 0.005 < by_name["conv2/Relu:0"]["rel_error"] < 0.02
    # --save-dir kept both archives, which diff compares alike
    kept = tmp_path / "kept"
    assert sorted(p.name for p in kept.iterdir()) == ["candidate.probe.h5", "reference.probe.h5"]
    again = invoke("diff", kept / "candidate.probe.h5", kept / "reference.probe.h5")
    assert again.exit_code == 1 and "First divergence: conv2/convolution/ReadVariableOp:0" in again.stdout
    assert tensors_of(kept / "reference.probe.h5")["image:0"].shape == (1, 28, 28, 1)  # seeded random input


def test_selection_inputs_and_map(tmp_path: Path) -> None:
    doc = compare_json(CNN_H5, CNN_SAVED, "--layer", "conv.*", "--samples", "3", "--seed", "4", code=0)
    assert [t["name"] for t in doc["tensors"]] == ["conv1/Relu:0", "conv2/Relu:0"]
    assert doc["tensors"][0]["shape_a"] == [3, 26, 26, 8]
    (tmp_path / "map.csv").write_text("Identity:0,probs/Softmax:0\n")
    # the map (candidate's name, reference's) wins over names: the SavedModel's output is the softmax
    mapped = compare_json(CNN_H5, CNN_SAVED, "--tensor", "probs/Softmax:0", "--map", tmp_path / "map.csv", code=0)
    pairs = [(t["name"], t["name_b"], t["paired_by"], t["rel_error"]) for t in mapped["tensors"]]
    assert pairs == [("Identity:0", "probs/Softmax:0", "map", 0.0)]


def test_two_keras_files_pair_every_tensor() -> None:
    doc = compare_json(CNN_H5, SAMPLES / "cnn.keras", code=0)
    assert doc["only_in_a"] == doc["only_in_b"] == [] and len(doc["tensors"]) > 30


def test_trouble_is_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(invoke("compare", CNN_H5, SAMPLES / "missing"), 2, "does not exist")
    # a model that fails to load (exit 1 for dump) is trouble too, not "different"
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(CNN_H5.read_bytes()[:5000])
    assert_one_line_error(invoke("dump", truncated), 1, "truncated or corrupt")
    assert_one_line_error(invoke("compare", CNN_H5, truncated), 2, "truncated or corrupt")
    ok(invoke("compare", CNN_H5, CNN_SAVED, "--tensor", "probs/Softmax:0"))


def test_tflite_conversions_float_same_int8_with_the_error_each_layer_adds() -> None:
    same = compare_json(CNN_H5, SAMPLES / "cnn_float.tflite", code=0)
    assert {"conv1/Relu:0", "conv2/Relu:0", "probs/Softmax:0"} <= {t["name"] for t in same["tensors"]}
    int8 = compare_json(CNN_H5, SAMPLES / "cnn_int8.tflite", code=1)
    by_name = {t["name"]: t for t in int8["tensors"]}
    assert all(0 < by_name[n]["rel_error"] < 0.05 for n in ("conv1/Relu:0", "conv2/Relu:0", "probs/Softmax:0"))
    # what a tensor adds is its error less the largest of its (nearest compared) inputs'
    assert by_name["conv1/Relu:0"]["added_error"] == by_name["conv1/Relu:0"]["rel_error"]  # from the exact input
    pool = by_name["pool1/MaxPool2d:0"]
    assert pool["added_error"] == pytest.approx(pool["rel_error"] - by_name["conv1/Relu:0"]["rel_error"])
    softmax = by_name["probs/Softmax:0"]  # fed by a fused FULLY_CONNECTED that pairs with nothing: gap's error
    assert softmax["added_error"] == pytest.approx(softmax["rel_error"] - by_name["gap/Mean:0"]["rel_error"])
    assert "added" in invoke("compare", CNN_H5, SAMPLES / "cnn_int8.tflite").stdout


def test_nothing_paired_is_trouble_not_a_pass() -> None:
    """A selection none of whose tensors has a partner (conv1's bias add is fused away in TFLite) compares
    nothing: exit 2, never 0."""
    result = invoke("compare", CNN_H5, SAMPLES / "cnn_int8.tflite", "--tensor", "conv1/BiasAdd:0")
    assert_one_line_error(result, 2, "no tensor of the candidate pairs with one of the reference's")
