"""``compare --html`` and ``--model-explorer`` on the sample models: the page names what compare found, and
the node data keys are nodes of the graph Model Explorer itself builds for each file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, invoke

CNN_H5 = SAMPLES / "cnn.h5"
CNN_INT8 = SAMPLES / "cnn_int8.tflite"
#: the same CNN, conv2's kernel scaled by 1.01 (make_models.py)
CNN_PERTURBED = SAMPLES / "cnn_perturbed_savedmodel"


def compare(reference: Path, candidate: Path, out: Path) -> dict[str, Any]:
    result = invoke(
        "compare", reference, candidate, "--html", out / "report.html", "--model-explorer", out / "me", "--json"
    )
    assert result.exit_code == 1, result.output
    return json.loads(result.stdout)


def results(path: Path) -> dict[str, float]:
    return {key: r["value"] for key, r in json.loads(path.read_text())["results"].items()}


def explorer_nodes(adapter: Any, model: Path) -> list[dict[str, Any]]:
    """The nodes of the largest graph Model Explorer's own converter builds for ``model``, in this process."""
    converted = adapter().convert(str(model), {})
    return max((g["nodes"] for c in converted["graphCollections"] for g in c.graphs), key=len)


def test_int8_tflite_report_and_overlay_keyed_by_tensor_name(tmp_path: Path) -> None:
    doc = compare(CNN_H5, CNN_INT8, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert doc["first_divergence"] == "image:0"  # the reference's name; the candidate's is tfl.quantize:0
    assert "<b>First divergence</b>: <a href='#t-tfl.quantize:0'><code>image:0 = tfl.quantize:0</code></a>" in page
    assert page.count("<tr id='t-") == len(doc["tensors"]) and "<svg class='chart'" in page
    assert page.count("<section class='panel") >= 2  # the first divergence's histograms and the worst others'
    readme = (tmp_path / "me" / "README.md").read_text()
    node_data = tmp_path / "me" / "candidate.json"
    assert f"model-explorer {CNN_INT8.resolve()} --node_data_paths={node_data.resolve()}" in readme
    found = results(node_data)
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert len(found) == len(doc["tensors"])  # every compared tensor has its node
    adapter = pytest.importorskip("model_explorer.builtin_tflite_flatbuffer_adapter").BuiltinTfliteFlatbufferAdapter
    names = {a["value"] for n in explorer_nodes(adapter, CNN_INT8) for m in n.get("outputsMetadata", [])
             for a in m.get("attrs", []) if a["key"] == "tensor_name"}  # fmt: skip
    assert set(found) <= names
    assert found["cnn_1/conv1_1/Relu;cnn_1/conv1_1/convolution"] == pytest.approx(by_name["conv1/Relu:0"]["rel_error"])


def test_perturbed_saved_model_overlay_keyed_by_node_id(tmp_path: Path) -> None:
    pytest.importorskip(
        "model_explorer", reason="Model Explorer is not installed: SavedModels fall back to a graph JSON"
    )
    from model_explorer.builtin_tf_mlir_adapter import BuiltinTfMlirAdapter

    compare(CNN_H5, CNN_PERTURBED, tmp_path)
    found = results(tmp_path / "me" / "candidate.json")
    nodes = {n["id"]: n for n in explorer_nodes(BuiltinTfMlirAdapter, CNN_PERTURBED / "saved_model.pb")}
    assert set(found) <= set(nodes) and len(found) >= 30
    by_op = {nodes[key]["namespace"]: value for key, value in found.items()}
    # before the perturbed layer nothing is coloured, from it on everything is (budget 1e-4)
    assert by_op["cnn_1/conv1_1/Relu"] == 0.0 and by_op["cnn_1/pool1_1/MaxPool2d"] == 0.0
    assert all(by_op[op] > 1e-4 for op in ("cnn_1/conv2_1/convolution", "cnn_1/conv2_1/Relu", "cnn_1/probs_1/Softmax"))
    data = json.loads((tmp_path / "me" / "candidate.json").read_text())
    assert data["thresholds"][0] == {"value": 1e-4, "bgColor": "transparent"}
    readme = (tmp_path / "me" / "README.md").read_text()
    assert f"model-explorer {(CNN_PERTURBED / 'saved_model.pb').resolve()} --node_data_paths=" in readme
    assert "hides ReadVariableOp nodes" in readme and "`conv2/convolution:0`" in readme
    # the reference, a Keras file Model Explorer cannot open, through the graph probe writes
    graph = json.loads((tmp_path / "me" / "reference.graph.json").read_text())
    assert set(results(tmp_path / "me" / "reference.json")) <= {n["id"] for n in graph["graphs"][0]["nodes"]}
