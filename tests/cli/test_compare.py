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
    # the map (reference's name, candidate's) wins over names: here the softmax pairs with the SavedModel's
    # Identity:0; a map written the other way round (as earlier versions wanted) is read the same
    for text in ("probs/Softmax:0,Identity:0\n", "Identity:0,probs/Softmax:0\n"):
        (tmp_path / "map.csv").write_text(text)
        mapped = compare_json(CNN_H5, CNN_SAVED, "--tensor", "probs/Softmax:0", "--map", tmp_path / "map.csv", code=0)
        pairs = [(t["reference"], t["candidate"], t["paired_by"], t["rel_error"]) for t in mapped["tensors"]]
        assert pairs[0] == ("probs/Softmax:0", "Identity:0", "map", 0.0)
    (tmp_path / "map.csv").write_text("Identity:0,nowhere:0\n")
    bad = invoke("compare", CNN_H5, CNN_SAVED, "--map", tmp_path / "map.csv")
    assert_one_line_error(bad, 2, "does not name a reference tensor and then a candidate tensor")


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
    # what a tensor adds is its error less the largest of its (nearest compared) inputs': conv1 reads the
    # quantized input, paired with the float input as its copy
    quantized_input = by_name["tfl.quantize:0"]
    assert (quantized_input["reference"], quantized_input["paired_by"]) == ("image:0", "copy")
    conv1 = by_name["conv1/Relu:0"]
    assert conv1["added_error"] == pytest.approx(conv1["rel_error"] - quantized_input["rel_error"])
    pool = by_name["pool1/MaxPool2d:0"]
    assert pool["added_error"] == pytest.approx(pool["rel_error"] - by_name["conv1/Relu:0"]["rel_error"])
    logits = by_name["probs/MatMul2:0"]  # the fused FULLY_CONNECTED: MatMul + BiasAdd of the reference
    assert (logits["reference"], logits["paired_by"], logits["chain"]) == (
        "probs/BiasAdd:0",
        "fused",
        ["MatMul", "BiasAdd"],
    )
    softmax = by_name["probs/Softmax:0"]
    assert softmax["added_error"] == pytest.approx(softmax["rel_error"] - logits["rel_error"])
    shipped = by_name["StatefulPartitionedCall_1:0"]  # the dequantized output the user ships
    assert (shipped["reference"], shipped["paired_by"], shipped["rel_error"]) == (
        "probs/Softmax:0",
        "output",
        softmax["rel_error"],
    )
    assert int8["only_in_a"] == []  # every tensor of the conversion pairs
    assert "added" in invoke("compare", CNN_H5, SAMPLES / "cnn_int8.tflite").stdout


def test_budgets_decide_the_exit_code() -> None:
    """An int8 conversion fails the default budget (1e-4), passes 5%, and fails again where a pattern
    sets a tighter budget for one layer; config and variables set budgets too."""
    int8 = SAMPLES / "cnn_int8.tflite"
    assert invoke("compare", CNN_H5, int8).exit_code == 1
    passed = ok(invoke("compare", CNN_H5, int8, "--max-error", "0.05"))
    assert "Same: all 10 paired tensor(s) within budget" in passed.stdout
    tight = invoke("compare", CNN_H5, int8, "--max-error", "0.05", "--max-error", "conv2/.*=0.001")
    assert tight.exit_code == 1, tight.output
    doc = compare_json(CNN_H5, int8, "--max-error", "0.05", "--max-error", "conv2/.*=0.001", code=1)
    over = [t["reference"] for t in doc["tensors"] if not t["within_tolerance"]]
    assert over == ["conv2/Relu:0"]
    assert {t["budget"] for t in doc["tensors"]} == {0.05, 0.001}
    assert doc["budgets"] == {"default": 0.05, "patterns": {"conv2/.*": 0.001}}
    # the last matching pattern wins
    loose = compare_json(CNN_H5, int8, "--max-error", "0.05", "--max-error", "conv2/.*=0.001",
                         "--max-error", "conv2/Relu:0=0.02", code=0)  # fmt: skip
    assert loose["same"]
    assert invoke("compare", CNN_H5, int8, env={"PROBE_COMPARE_MAX_ERROR": "0.05"}).exit_code == 0
    bad = invoke("compare", CNN_H5, int8, "--max-error", "lots")
    assert_one_line_error(bad, 2, "is not REL or PATTERN=REL")


def test_the_answer_is_short_and_names_reference_and_candidate(tmp_path: Path) -> None:
    result = ok(invoke("compare", CNN_H5, CNN_SAVED))
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Reference: {CNN_H5}  (") and lines[1].startswith(f"Candidate: {CNN_SAVED}  (")
    assert len(lines) < 30  # one screen
    assert "conv1/convolution/ReadVariableOp:0" not in result.stdout  # weights within budget: --all shows them
    assert "--all shows them" in result.stdout
    assert "20 candidate tensors have no counterpart: 20 weights and constants (-v lists them)" in result.stdout
    shown = ok(invoke("compare", CNN_H5, CNN_SAVED, "--all", "-v")).stdout
    assert "conv1/convolution/ReadVariableOp:0" in shown and "  unknown:0  (weights and constants)" in shown
    doc = compare_json(CNN_H5, CNN_SAVED, code=0)
    assert (doc["reference"]["path"], doc["candidate"]["path"]) == (str(CNN_H5), str(CNN_SAVED))
    outputs = [t for t in doc["tensors"] if t["role"] == "output"]
    assert ("probs/Softmax:0", "Identity:0", "output") in {
        (t["reference"], t["candidate"], t["paired_by"]) for t in outputs
    }
    assert set(doc["unpaired"]["candidate"].values()) == {"weights and constants"}


def test_a_selection_applies_to_both_sides_through_the_pairing() -> None:
    """--tensor names the reference's tensor; its partner on the candidate side comes with it, and
    the candidate's other tensors are not listed as unpaired."""
    doc = compare_json(CNN_H5, SAMPLES / "cnn_int8.tflite", "--tensor", "probs/.*", "--max-error", "0.05", code=0)
    pairs = {(t["reference"], t["candidate"]) for t in doc["tensors"]}
    assert ("probs/BiasAdd:0", "probs/MatMul2:0") in pairs
    assert ("probs/Softmax:0", "StatefulPartitionedCall_1:0") in pairs
    assert doc["only_in_a"] == []
    assert all(name.startswith("probs/") for name in doc["only_in_b"])


def test_nothing_paired_is_trouble_not_a_pass() -> None:
    """A selection none of whose tensors has a partner (conv1's bias add is fused away in TFLite) compares
    nothing: exit 2, never 0."""
    result = invoke("compare", CNN_H5, SAMPLES / "cnn_int8.tflite", "--tensor", "conv1/BiasAdd:0")
    assert_one_line_error(result, 2, "no tensor of the candidate pairs with one of the reference's")
