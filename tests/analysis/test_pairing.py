"""Pairing tensors of two forms of a model: map, name, graph name, then the graph's structure (inputs,
outputs, copies, fused chains); never by a guess (no TensorFlow)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from probe_cli.analysis.pairing import (
    BY_COPY,
    BY_FUSED,
    BY_GRAPH_NAME,
    BY_INPUT,
    BY_MAP,
    BY_NAME,
    BY_OUTPUT,
    FUSED_AWAY,
    INSERTED,
    NO_COUNTERPART,
    WEIGHT,
    Pair,
    oriented,
    pair,
    read_map,
)
from probe_cli.core.errors import FileProblem
from probe_cli.core.graph import GraphNode, ModelGraph


@dataclass(frozen=True)
class T:
    name: str
    graph_name: str


KERAS = [
    T("image:0", "image:0"),
    T("conv1/Relu:0", "cnn_1/conv1_1/Relu:0"),
    T("probs/Softmax:0", "cnn_1/probs_1/Softmax:0"),
]


def how(result: object) -> dict[tuple[str, str], str]:
    return {(p.reference, p.candidate): p.how for p in result.pairs}  # type: ignore[attr-defined]


def test_by_name_then_graph_name_in_the_references_order() -> None:
    saved = [
        T("Identity:0", "Identity:0"),
        T("StatefulPartitionedCall/cnn_1/probs_1/Softmax:0", "StatefulPartitionedCall/cnn_1/probs_1/Softmax:0"),
        T("conv1/Relu:0", "StatefulPartitionedCall/cnn_1/conv1_1/Relu:0"),
        T("image:0", "image:0"),
    ]
    result = pair(KERAS, saved)
    assert result.pairs == [
        Pair("image:0", "image:0", BY_NAME),
        Pair("conv1/Relu:0", "conv1/Relu:0", BY_NAME),
        Pair("probs/Softmax:0", "StatefulPartitionedCall/cnn_1/probs_1/Softmax:0", BY_GRAPH_NAME),
    ]
    assert (result.only_candidate, result.only_reference) == (["Identity:0"], [])


def test_a_key_two_tensors_share_pairs_neither() -> None:
    cand = [T("x/one", "m_1/blk_1/Relu:0"), T("x/two", "m_1/blk_2/Relu:0")]  # both key blk/Relu:0
    ref = [T("blk/Relu:0", "m_1/blk_1/Relu:0")]
    result = pair(ref, cand)
    assert (
        result.pairs == [] and result.only_candidate == ["x/one", "x/two"] and result.only_reference == ["blk/Relu:0"]
    )


def test_the_map_comes_first_and_each_tensor_pairs_once() -> None:
    ref = [T("conv1/Relu:0", "conv1/Relu:0"), T("renamed:0", "renamed:0")]
    cand = [T("conv1/Relu:0", "conv1/Relu:0"), T("other:0", "other:0")]
    result = pair(ref, cand, {"renamed:0": "conv1/Relu:0", "conv1/Relu:0": "other:0"})
    assert result.pairs == [Pair("conv1/Relu:0", "other:0", BY_MAP), Pair("renamed:0", "conv1/Relu:0", BY_MAP)]


def test_a_key_shared_on_one_side_pairs_nothing_even_when_one_holder_paired_by_name() -> None:
    """A key two of the candidate's tensors share stays unusable after one of them pairs by name: the other
    must not pair, by that key, with a different layer of the reference's."""
    cand = [T("dense/MatMul:0", "model_1/dense_1/MatMul:0"), T("dense_1/MatMul:0", "model_1/dense_1/MatMul:0")]
    ref = [T("dense_1/MatMul:0", "dense_1/MatMul:0"), T("other:0", "model_1/dense_2/MatMul:0")]
    result = pair(ref, cand)
    assert result.pairs == [Pair("dense_1/MatMul:0", "dense_1/MatMul:0", BY_NAME)]
    assert result.only_candidate == ["dense/MatMul:0"] and result.only_reference == ["other:0"]


# --- structure -----------------------------------------------------------------------------------------


def graph(
    spec: list[tuple[str, str, tuple[str, ...]]], inputs: tuple[str, ...], outputs: tuple[str, ...]
) -> ModelGraph:
    """``(name, op_type, op_inputs)`` in graph order; graph names are the names."""
    return ModelGraph(tuple(GraphNode(n, n, op, ins) for n, op, ins in spec), inputs, outputs)


def keras_cnn() -> ModelGraph:
    """A Keras trace: input, Pad + Conv + BiasAdd + ReLU, a linear bottleneck (Conv + BatchNorm, no
    activation), a residual add, Dense (MatMul + BiasAdd), softmax."""
    return graph(
        [
            ("x:0", "Placeholder", ()),
            ("c1/kernel:0", "ReadVariableOp", ("c1/handle:0",)),
            ("c1/handle:0", "Placeholder", ()),
            ("pad/Pad:0", "Pad", ("x:0",)),
            ("c1/convolution:0", "Conv2D", ("pad/Pad:0", "c1/kernel:0")),
            ("c1/bias:0", "ReadVariableOp", ("c1/handle:0",)),
            ("c1/BiasAdd:0", "BiasAdd", ("c1/convolution:0", "c1/bias:0")),
            ("c1/Relu:0", "Relu", ("c1/BiasAdd:0",)),
            ("proj/convolution:0", "Conv2D", ("c1/Relu:0", "c1/kernel:0")),
            ("proj_bn/scale:0", "Const", ()),
            ("proj_bn/batchnorm/mul_1:0", "Mul", ("proj/convolution:0", "proj_bn/scale:0")),
            ("proj_bn/batchnorm/add_1:0", "AddV2", ("proj_bn/batchnorm/mul_1:0", "proj_bn/scale:0")),
            ("add/Add:0", "AddV2", ("proj_bn/batchnorm/add_1:0", "c1/Relu:0")),
            ("gap/Mean:0", "Mean", ("add/Add:0",)),
            ("probs/MatMul:0", "MatMul", ("gap/Mean:0", "c1/kernel:0")),
            ("probs/BiasAdd:0", "BiasAdd", ("probs/MatMul:0", "c1/bias:0")),
            ("probs/Softmax:0", "Softmax", ("probs/BiasAdd:0",)),
        ],
        ("x:0",),
        ("probs/Softmax:0",),
    )


def tflite_cnn() -> ModelGraph:
    """Its conversion: Pad folded into the Conv, BatchNorm folded into the projection, Dense fused with its
    bias; weights not listed; the output a new tensor."""
    return graph(
        [
            ("serving_default_x:0", "INPUT", ()),
            ("c1/Relu:0", "CONV_2D", ("serving_default_x:0",)),
            ("tfl_proj_conv", "CONV_2D", ("c1/Relu:0",)),  # nothing in its name says what it is
            ("add/Add:0", "ADD", ("tfl_proj_conv", "c1/Relu:0")),
            ("gap/Mean:0", "MEAN", ("add/Add:0",)),
            ("probs/MatMul2:0", "FULLY_CONNECTED", ("gap/Mean:0",)),
            ("StatefulPartitionedCall_1:0", "SOFTMAX", ("probs/MatMul2:0",)),
        ],
        ("serving_default_x:0",),
        ("StatefulPartitionedCall_1:0",),
    )


def test_inputs_outputs_and_fused_chains_pair_from_the_graph() -> None:
    result = pair(keras_cnn(), tflite_cnn())
    assert how(result) == {
        ("x:0", "serving_default_x:0"): BY_INPUT,
        ("c1/Relu:0", "c1/Relu:0"): BY_NAME,
        ("proj_bn/batchnorm/add_1:0", "tfl_proj_conv"): BY_FUSED,
        ("add/Add:0", "add/Add:0"): BY_NAME,
        ("gap/Mean:0", "gap/Mean:0"): BY_NAME,
        ("probs/BiasAdd:0", "probs/MatMul2:0"): BY_FUSED,
        ("probs/Softmax:0", "StatefulPartitionedCall_1:0"): BY_OUTPUT,
    }
    fused = next(p for p in result.pairs if p.candidate == "tfl_proj_conv")
    assert fused.chain == ("Conv2D", "Mul", "AddV2")
    assert result.only_candidate == []
    why = result.why_reference
    assert why["c1/kernel:0"] == why["proj_bn/scale:0"] == why["c1/handle:0"] == WEIGHT
    assert why["proj/convolution:0"] == why["proj_bn/batchnorm/mul_1:0"] == why["probs/MatMul:0"] == FUSED_AWAY
    assert why["pad/Pad:0"] == why["c1/convolution:0"] == why["c1/BiasAdd:0"] == FUSED_AWAY


def test_the_same_rules_pair_the_other_way_round() -> None:
    """The fused form as the reference: its fused op pairs with the end of the candidate's chain."""
    result = pair(tflite_cnn(), keras_cnn())
    assert how(result)[("tfl_proj_conv", "proj_bn/batchnorm/add_1:0")] == BY_FUSED
    assert how(result)[("probs/MatMul2:0", "probs/BiasAdd:0")] == BY_FUSED
    assert how(result)[("serving_default_x:0", "x:0")] == BY_INPUT


def test_a_fused_activation_pairs_with_the_activation_and_a_separate_one_splits_the_chain() -> None:
    """An anchor fused with its activation but named after neither holds the activation's value; where
    the candidate keeps the activation as its own op, the anchor holds the pre-activation value."""
    ref = graph(
        [
            ("x:0", "Placeholder", ()),
            ("w:0", "Const", ()),
            ("c/convolution:0", "Conv2D", ("x:0", "w:0")),
            ("c/BiasAdd:0", "BiasAdd", ("c/convolution:0", "w:0")),
            ("c/Relu6:0", "Relu6", ("c/BiasAdd:0",)),
            ("out/Identity:0", "Identity", ("c/Relu6:0",)),
            ("tail/Mean:0", "Mean", ("c/Relu6:0",)),
        ],
        ("x:0",),
        ("tail/Mean:0",),
    )
    whole = graph(
        [("in:0", "INPUT", ()), ("k:0", "CONV_2D", ("in:0",)), ("tail/Mean:0", "MEAN", ("k:0",))],
        ("in:0",),
        ("tail/Mean:0",),
    )
    assert how(pair(ref, whole))[("c/Relu6:0", "k:0")] == BY_FUSED
    split = graph(
        [
            ("in:0", "INPUT", ()),
            ("k:0", "Conv", ("in:0",)),
            ("r:0", "Clip", ("k:0",)),
            ("tail/Mean:0", "ReduceMean", ("r:0",)),
        ],
        ("in:0",),
        ("tail/Mean:0",),
    )
    pairs = how(pair(ref, split))
    assert pairs[("c/BiasAdd:0", "k:0")] == BY_FUSED and pairs[("c/Relu6:0", "r:0")] == BY_FUSED


def test_copies_pair_with_their_sources_partner_and_inserted_ops_are_named_so() -> None:
    ref = graph(
        [("x:0", "Placeholder", ()), ("d/Relu:0", "Relu", ("x:0",))],
        ("x:0",),
        ("d/Relu:0",),
    )
    cand = graph(
        [
            ("x:0", "INPUT", ()),
            ("tfl.quantize", "QUANTIZE", ("x:0",)),
            ("d/Relu:0", "RELU", ("tfl.quantize",)),
            ("Identity:0", "DEQUANTIZE", ("d/Relu:0",)),
            ("Shape__12:0", "Shape", ("d/Relu:0",)),
            ("Mystery__3:0", "Sin", ("d/Relu:0",)),
        ],
        ("x:0",),
        ("Identity:0",),
    )
    result = pair(ref, cand)
    assert how(result) == {
        ("x:0", "x:0"): BY_NAME,
        ("x:0", "tfl.quantize"): BY_COPY,
        ("d/Relu:0", "d/Relu:0"): BY_NAME,
        ("d/Relu:0", "Identity:0"): BY_OUTPUT,
    }
    assert result.why_candidate == {"Shape__12:0": WEIGHT, "Mystery__3:0": INSERTED}


def test_two_alike_branches_pair_by_what_reads_them_or_not_at_all() -> None:
    """Two convolutions reading one tensor: the fused op pairs with the one whose chain feeds the same
    paired tensor; when nothing tells them apart, neither pairs (no guess)."""
    ref = graph(
        [
            ("x:0", "Placeholder", ()),
            ("w:0", "Const", ()),
            ("a/convolution:0", "Conv2D", ("x:0", "w:0")),
            ("a/BiasAdd:0", "BiasAdd", ("a/convolution:0", "w:0")),
            ("b/convolution:0", "Conv2D", ("x:0", "w:0")),
            ("b/BiasAdd:0", "BiasAdd", ("b/convolution:0", "w:0")),
            ("a_out/Relu:0", "Relu", ("a/BiasAdd:0",)),
            ("b_out/Sigmoid:0", "Sigmoid", ("b/BiasAdd:0",)),
        ],
        ("x:0",),
        (),
    )
    cand = graph(
        [
            ("x:0", "INPUT", ()),
            ("conv_one", "CONV_2D", ("x:0",)),
            ("conv_two", "CONV_2D", ("x:0",)),
            ("a_out/Relu:0", "RELU", ("conv_two",)),
            ("b_out/Sigmoid:0", "LOGISTIC", ("conv_one",)),
        ],
        ("x:0",),
        (),
    )
    pairs = how(pair(ref, cand))
    assert pairs[("a/BiasAdd:0", "conv_two")] == BY_FUSED and pairs[("b/BiasAdd:0", "conv_one")] == BY_FUSED
    blind = graph(
        [("x:0", "INPUT", ()), ("conv_one", "CONV_2D", ("x:0",)), ("conv_two", "CONV_2D", ("x:0",))], ("x:0",), ()
    )
    result = pair(ref, blind)
    assert set(result.only_candidate) == {"conv_one", "conv_two"}


def test_a_different_family_or_an_unpaired_source_pairs_nothing() -> None:
    ref = graph(
        [("x:0", "Placeholder", ()), ("w:0", "Const", ()), ("m/MatMul:0", "MatMul", ("x:0", "w:0"))], ("x:0",), ()
    )
    pooled = graph([("in:0", "INPUT", ()), ("p:0", "MAX_POOL_2D", ("in:0",))], ("in:0",), ())
    assert pair(ref, pooled).only_candidate == ["p:0"]
    assert pair(ref, pooled).why_candidate == {"p:0": NO_COUNTERPART}
    orphan = graph([("y:0", "Placeholder", ()), ("fc:0", "FULLY_CONNECTED", ("y:0",))], (), ())
    assert pair(ref, orphan).pairs == []


def test_restricted_keeps_pairs_of_the_stored_and_lists_the_rest() -> None:
    result = pair(keras_cnn(), tflite_cnn()).restricted({"c1/Relu:0", "add/Add:0"}, {"c1/Relu:0"})
    assert [(p.reference, p.candidate) for p in result.pairs] == [("c1/Relu:0", "c1/Relu:0")]
    assert result.only_reference == ["add/Add:0"] and result.only_candidate == []


def test_read_map_json_object_json_pairs_and_csv(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"a:0": "b:0"}))
    (tmp_path / "pairs.json").write_text(json.dumps([["a:0", "b:0"], ["c:0", "d:0"]]))
    (tmp_path / "m.csv").write_text("# reference,candidate\na:0, b:0\nc:0,d:0\n")
    assert read_map(tmp_path / "m.json") == {"a:0": "b:0"}
    assert read_map(tmp_path / "pairs.json") == read_map(tmp_path / "m.csv") == {"a:0": "b:0", "c:0": "d:0"}


def test_a_map_written_candidate_first_is_turned_round_and_one_fitting_neither_way_refused() -> None:
    ref, cand = {"probs/Softmax:0", "x:0"}, {"Identity:0", "x:0"}
    assert oriented({"probs/Softmax:0": "Identity:0"}, ref, cand) == {"probs/Softmax:0": "Identity:0"}
    assert oriented({"Identity:0": "probs/Softmax:0"}, ref, cand) == {"probs/Softmax:0": "Identity:0"}
    with pytest.raises(FileProblem, match="REFERENCE_NAME,CANDIDATE_NAME"):
        oriented({"Identity:0": "nowhere:0"}, ref, cand)


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


def test_a_graph_survives_json() -> None:
    g = keras_cnn()
    assert ModelGraph.from_json(g.to_json()) == g


def test_a_fused_op_named_after_its_anchor_pairs_with_the_end_of_its_chain() -> None:
    """TFLite names EfficientNet's stem ``stem_conv/convolution`` though it holds the folded BatchNorm's
    output: what reads it (a swish, whose sigmoid reads ``x * beta``) reads that output on the other side.
    An input is never moved, even when its readers read a normalization of it."""
    ref = graph(
        [
            ("x:0", "Placeholder", ()),
            ("k:0", "Const", ()),
            ("scale/mul:0", "Mul", ("x:0", "k:0")),
            ("stem_conv/convolution:0", "Conv2D", ("scale/mul:0", "k:0")),
            ("stem_bn/batchnorm/mul_1:0", "Mul", ("stem_conv/convolution:0", "k:0")),
            ("stem_bn/batchnorm/add_1:0", "AddV2", ("stem_bn/batchnorm/mul_1:0", "k:0")),
            ("act/mul:0", "Mul", ("k:0", "stem_bn/batchnorm/add_1:0")),
            ("act/Sigmoid:0", "Sigmoid", ("act/mul:0",)),
            ("act/mul_1:0", "Mul", ("stem_bn/batchnorm/add_1:0", "act/Sigmoid:0")),
            ("act/IdentityN:0", "IdentityN", ("act/mul_1:0", "stem_bn/batchnorm/add_1:0", "k:0")),
            ("act/IdentityN:1", "IdentityN", ("act/mul_1:0", "stem_bn/batchnorm/add_1:0", "k:0")),
            ("head/convolution:0", "Conv2D", ("act/IdentityN:0", "k:0")),
            ("head/BiasAdd:0", "BiasAdd", ("head/convolution:0", "k:0")),
            ("out/Sigmoid:0", "Sigmoid", ("head/BiasAdd:0",)),
        ],
        ("x:0",),
        ("out/Sigmoid:0",),
    )
    cand = graph(
        [
            ("x:0", "INPUT", ()),
            ("stem_conv/convolution:0", "CONV_2D", ("x:0",)),  # the scale, the Conv and the BatchNorm
            ("act/Sigmoid:0", "LOGISTIC", ("stem_conv/convolution:0",)),
            ("act/mul_1:0", "MUL", ("stem_conv/convolution:0", "act/Sigmoid:0")),
            ("head/convolution1:0", "CONV_2D", ("act/mul_1:0",)),
            ("out/Sigmoid:0", "LOGISTIC", ("head/convolution1:0",)),
        ],
        ("x:0",),
        ("out/Sigmoid:0",),
    )
    result = pair(ref, cand)
    pairs = how(result)
    assert pairs[("stem_bn/batchnorm/add_1:0", "stem_conv/convolution:0")] == BY_FUSED
    assert ("stem_conv/convolution:0", "stem_conv/convolution:0") not in pairs
    assert pairs[("x:0", "x:0")] == BY_NAME
    assert result.why_reference["stem_conv/convolution:0"] == FUSED_AWAY
    # output 0 of the swish's IdentityN passes on its input 0, so the head's Conv reads the swish
    assert pairs[("act/IdentityN:0", "act/mul_1:0")] == BY_COPY
    assert pairs[("head/BiasAdd:0", "head/convolution1:0")] == BY_FUSED


def test_what_a_fusion_swallowed_names_the_op_that_computes_it_away() -> None:
    result = pair(keras_cnn(), tflite_cnn())
    assert result.fused_into_reference["proj/convolution:0"] == "tfl_proj_conv"
    assert result.fused_into_reference["probs/MatMul:0"] == "probs/MatMul2:0"
    assert "c1/kernel:0" not in result.fused_into_reference  # a weight, not a step of a fused chain


def test_outputs_ordered_otherwise_pair_by_what_they_copy_or_not_at_all() -> None:
    """A SavedModel orders its outputs by signature key (box before score), Keras as the model returns
    them: an output that copies a paired tensor pairs with its partner; a place pairs only alike tensors."""

    def node(name: str, op: str, ins: tuple[str, ...], shape: tuple[int | None, ...]) -> GraphNode:
        return GraphNode(name, name, op, ins, "float32", None, shape)

    ref = ModelGraph(
        (
            node("x:0", "Placeholder", (), (None, 8)),
            node("score/Sigmoid:0", "Sigmoid", ("x:0",), (None, 1)),
            node("box/Relu:0", "Relu", ("x:0",), (None, 4)),
        ),
        ("x:0",),
        ("score/Sigmoid:0", "box/Relu:0"),
    )
    saved = ModelGraph(
        (
            node("x:0", "Placeholder", (), (None, 8)),
            node("score/Sigmoid:0", "Sigmoid", ("x:0",), (None, 1)),
            node("box/Relu:0", "Relu", ("x:0",), (None, 4)),
            node("Identity:0", "Identity", ("box/Relu:0",), (None, 4)),
            node("Identity_1:0", "Identity", ("score/Sigmoid:0",), (None, 1)),
        ),
        ("x:0",),
        ("Identity:0", "Identity_1:0"),
    )
    pairs = how(pair(ref, saved))
    assert pairs[("box/Relu:0", "Identity:0")] == pairs[("score/Sigmoid:0", "Identity_1:0")] == BY_OUTPUT
    assert ("score/Sigmoid:0", "Identity:0") not in pairs
    fused = ModelGraph(  # outputs that are ops of their own, in the other order: told apart by shape
        (
            node("in:0", "INPUT", (), (None, 8)),
            node("StatefulPartitionedCall:0", "RELU", ("in:0",), (None, 4)),
            node("StatefulPartitionedCall:1", "LOGISTIC", ("in:0",), (None, 1)),
        ),
        ("in:0",),
        ("StatefulPartitionedCall:0", "StatefulPartitionedCall:1"),
    )
    assert not {p for p in how(pair(ref, fused)) if p[1].startswith("StatefulPartitionedCall")} & {
        ("score/Sigmoid:0", "StatefulPartitionedCall:0"),
        ("box/Relu:0", "StatefulPartitionedCall:1"),
    }
