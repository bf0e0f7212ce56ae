"""``compare --model-explorer``: node data and graph JSON, built without TensorFlow, read back through
Model Explorer's own data classes when it is installed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_report import synthetic

from probe_cli.analysis import explorer
from probe_cli.core.graph import GraphNode, ModelGraph


def chain_graph(count: int, model_format: str = "keras-h5") -> ModelGraph:
    """The graph of :func:`test_report.synthetic`: block0 reads the input, each block the one before."""
    nodes = [GraphNode("x:0", "x:0", "Placeholder")]
    for i in range(count):
        source = "x:0" if i == 0 else f"block{i - 1}/Relu:0"
        nodes.append(
            GraphNode(f"block{i}/Relu:0", f"m_1/block{i}_1/Relu:0", "Relu", (source,), "float32", f"block{i}", (1, 8))
        )
    return ModelGraph(tuple(nodes), ("x:0",), (f"block{count - 1}/Relu:0",), model_format)


def test_thresholds_colour_only_what_is_over_budget() -> None:
    steps = explorer.thresholds(1e-4)
    assert steps[0] == {"value": 1e-4, "bgColor": "transparent"}  # within budget: Model Explorer's own colour
    assert [s["value"] for s in steps] == sorted(s["value"] for s in steps)
    assert steps[1] == {"value": pytest.approx(1e-3), "bgColor": "#ffb74d"}
    assert steps[-1] == {"value": explorer.LARGEST, "bgColor": explorer.DARKEST}


def test_node_data_is_valid_json_even_for_infinite_errors() -> None:
    data = explorer.node_data({"a": 0.0, "b": float("inf"), "c": float("nan"), "d": 2e-3}, 1e-4, "n", {"d": "#f00"})
    assert data["results"] == {
        "a": {"value": 0.0},
        "b": {"value": explorer.LARGEST},
        "d": {"value": 2e-3, "bgColor": "#f00"},
    }
    json.dumps(data, allow_nan=False)


def test_keys_by_format() -> None:
    tflite = ModelGraph(
        (GraphNode("conv1/Relu:0", "m_1/conv1_1/Relu;m_1/conv1_1/BiasAdd", "CONV_2D"),), format="tflite"
    )
    assert explorer.keys_for(tflite) == ({"conv1/Relu:0": "m_1/conv1_1/Relu;m_1/conv1_1/BiasAdd"}, "tensor name")
    saved = ModelGraph(
        (
            GraphNode("conv1/Relu:0", "StatefulPartitionedCall/m_1/conv1_1/Relu:0", "Relu"),
            GraphNode("unknown:0", "unknown:0", "Const"),
        ),
        format="saved-model",
    )
    ids = {"m_1/conv1_1/Relu": "25", "Inputs": "arg0"}
    assert explorer.keys_for(saved, ids) == ({"conv1/Relu:0": "25"}, "node id")
    # without Model Explorer's ids, the graph probe writes, keyed by probe name
    assert explorer.keys_for(saved, None) == ({"conv1/Relu:0": "conv1/Relu:0", "unknown:0": "unknown:0"}, "probe name")


def test_the_overlay_of_a_model_explorer_cannot_open(tmp_path: Path) -> None:
    result = synthetic(4)  # block2 and block3 over budget
    graphs = {"candidate": (chain_graph(4), tmp_path / "m.h5"), "reference": (chain_graph(4), tmp_path / "m.h5")}
    out = explorer.write_explorer(tmp_path / "me", result, graphs)
    cand = out.overlays[0]
    assert cand.role == "candidate" and cand.keyed_by == "probe name" and cand.matched == 4 and not cand.unmatched
    assert cand.opens == (tmp_path / "me" / "candidate.graph.json").resolve()
    assert (
        cand.command
        == f"model-explorer {cand.opens} --node_data_paths={(tmp_path / 'me' / 'candidate.json').resolve()}"
    )
    data = json.loads((tmp_path / "me" / "candidate.json").read_text())
    assert {k: v["value"] for k, v in data["results"].items()} == {
        "block0/Relu:0": 0.0, "block1/Relu:0": 0.0, "block2/Relu:0": 1e-3, "block3/Relu:0": 2e-3,
    }  # fmt: skip
    graph = json.loads(cand.opens.read_text())
    nodes = {n["id"]: n for n in graph["graphs"][0]["nodes"]}
    assert set(data["results"]) <= set(nodes)
    assert nodes["block1/Relu:0"]["incomingEdges"] == [
        {"sourceNodeId": "block0/Relu:0", "sourceNodeOutputId": "0", "targetNodeInputId": "0"}
    ]
    assert nodes["block1/Relu:0"]["namespace"] == "block1" and nodes["block1/Relu:0"]["label"] == "Relu"
    readme = out.readme.read_text()
    assert "First divergence: `block2/Relu:0`" in readme and cand.command in readme
    assert "pip install ai-edge-model-explorer" in readme


def test_a_budget_the_thresholds_do_not_hold_colours_the_node_itself(tmp_path: Path) -> None:
    result = synthetic(4)
    loose = [
        replace(t, budget=0.01, failed=False, status="ok") if t.name == "block2/Relu:0" else t for t in result.tensors
    ]
    result = replace(result, tensors=loose)
    graphs = {role: (chain_graph(4), None) for role in ("candidate", "reference")}
    explorer.write_explorer(tmp_path, result, graphs)
    data = json.loads((tmp_path / "candidate.json").read_text())["results"]
    assert data["block2/Relu:0"]["bgColor"] == "transparent"  # within its own 1% budget
    assert "bgColor" not in data["block3/Relu:0"]  # the thresholds say it


def test_model_explorer_reads_the_files_with_its_own_classes(tmp_path: Path) -> None:
    dacite = pytest.importorskip("dacite", reason="Model Explorer (and its dacite) is not installed")
    builder = pytest.importorskip("model_explorer.graph_builder", reason="Model Explorer is not installed")
    node_data = pytest.importorskip("model_explorer.node_data_builder")
    graphs = {role: (chain_graph(3), tmp_path / "m.keras") for role in ("candidate", "reference")}
    out = explorer.write_explorer(tmp_path / "me", synthetic(3), graphs)
    strict = dacite.Config(strict=True)
    doc = json.loads(out.overlays[0].opens.read_text())
    graph = dacite.from_dict(builder.Graph, doc["graphs"][0], config=strict)  # as its node data providers read graphs
    data = dacite.from_dict(
        node_data.GraphNodeData, json.loads(out.overlays[0].node_data[0].read_text()), config=strict
    )
    assert set(data.results) <= {n.id for n in graph.nodes} and len(data.results) == 3
    assert data.thresholds[0].bgColor == "transparent"
