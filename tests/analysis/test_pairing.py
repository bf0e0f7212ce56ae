"""Pairing tensors of two forms of a model: map, then name, then graph name; never by a guess (no TensorFlow)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe_cli.analysis.pairing import BY_GRAPH_NAME, BY_MAP, BY_NAME, Pair, pair, read_map
from probe_cli.core.errors import FileProblem


@dataclass(frozen=True)
class T:
    name: str
    graph_name: str


KERAS = [
    T("image:0", "image:0"),
    T("conv1/Relu:0", "cnn_1/conv1_1/Relu:0"),
    T("probs/Softmax:0", "cnn_1/probs_1/Softmax:0"),
]


def test_by_name_then_graph_name_in_as_order() -> None:
    saved = [
        T("Identity:0", "Identity:0"),
        T("StatefulPartitionedCall/cnn_1/probs_1/Softmax:0", "StatefulPartitionedCall/cnn_1/probs_1/Softmax:0"),
        T("conv1/Relu:0", "StatefulPartitionedCall/cnn_1/conv1_1/Relu:0"),
        T("image:0", "image:0"),
    ]
    result = pair(saved, KERAS)
    assert result.pairs == [
        Pair("StatefulPartitionedCall/cnn_1/probs_1/Softmax:0", "probs/Softmax:0", BY_GRAPH_NAME),
        Pair("conv1/Relu:0", "conv1/Relu:0", BY_NAME),
        Pair("image:0", "image:0", BY_NAME),
    ]
    assert (result.only_a, result.only_b) == (["Identity:0"], [])


def test_a_key_two_tensors_share_pairs_neither() -> None:
    a = [T("x/one", "m_1/blk_1/Relu:0"), T("x/two", "m_1/blk_2/Relu:0")]  # both key blk/Relu:0
    b = [T("blk/Relu:0", "m_1/blk_1/Relu:0")]
    result = pair(a, b)
    assert result.pairs == [] and result.only_a == ["x/one", "x/two"] and result.only_b == ["blk/Relu:0"]


def test_the_map_comes_first_and_each_tensor_pairs_once() -> None:
    a = [T("conv1/Relu:0", "conv1/Relu:0"), T("other:0", "other:0")]
    b = [T("conv1/Relu:0", "conv1/Relu:0"), T("renamed:0", "renamed:0")]
    result = pair(a, b, {"conv1/Relu:0": "renamed:0", "other:0": "conv1/Relu:0"})
    assert result.pairs == [Pair("conv1/Relu:0", "renamed:0", BY_MAP), Pair("other:0", "conv1/Relu:0", BY_MAP)]


def test_read_map_json_object_json_pairs_and_csv(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"a:0": "b:0"}))
    (tmp_path / "pairs.json").write_text(json.dumps([["a:0", "b:0"], ["c:0", "d:0"]]))
    (tmp_path / "m.csv").write_text("# candidate,reference\na:0, b:0\nc:0,d:0\n")
    assert read_map(tmp_path / "m.json") == {"a:0": "b:0"}
    assert read_map(tmp_path / "pairs.json") == read_map(tmp_path / "m.csv") == {"a:0": "b:0", "c:0": "d:0"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not valid JSON"), ('[["a:0"]]', "is not a pair of tensor names"), ("a,b,c\n", "not a pair")],
)
def test_a_bad_map_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.map").write_text(text)
    with pytest.raises(FileProblem, match=message):
        read_map(tmp_path / "bad.map")
    with pytest.raises(FileProblem, match="cannot be read"):
        read_map(tmp_path / "missing.json")


def test_a_key_shared_on_one_side_pairs_nothing_even_when_one_holder_paired_by_name() -> None:
    """A key two of A's tensors share stays unusable after one of them pairs by name: the other must not
    pair, by that key, with a different layer of B's."""
    a = [T("dense/MatMul:0", "model_1/dense_1/MatMul:0"), T("dense_1/MatMul:0", "model_1/dense_1/MatMul:0")]
    b = [T("dense_1/MatMul:0", "dense_1/MatMul:0"), T("other:0", "model_1/dense_2/MatMul:0")]
    result = pair(a, b)
    assert result.pairs == [Pair("dense_1/MatMul:0", "dense_1/MatMul:0", BY_NAME)]
    assert result.only_a == ["dense/MatMul:0"] and result.only_b == ["other:0"]
