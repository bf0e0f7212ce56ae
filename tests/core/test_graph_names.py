"""Keras names for ops of an exported graph, and pairing keys (no TensorFlow)."""

from __future__ import annotations

import pytest

from probe_cli.core.graph_names import (
    ACTIVATION,
    ANCHOR,
    OFFSET,
    keras_names,
    model_scope,
    pairing_key,
    split_fused_source,
    strip_wrappers,
)

EXPORTED = [
    "image",
    "StatefulPartitionedCall/cnn_1/conv1_1/convolution",
    "StatefulPartitionedCall/cnn_1/conv1_1/Relu",
    "StatefulPartitionedCall/cnn_1/bn2_1/batchnorm/add_1",
    "StatefulPartitionedCall/cnn_1/ROI_1/rpn_non_max_suppression_1/NonMaxSuppressionV3",
    "Func/StatefulPartitionedCall/input/_0",
    "Func/StatefulPartitionedCall/output/_1",
    "Func/StatefulPartitionedCall/output/_2",
    "StatefulPartitionedCall/Identity",
    "Identity",
]


def test_wrappers_are_stripped_but_a_name_is_never_emptied() -> None:
    assert strip_wrappers("StatefulPartitionedCall/StatefulPartitionedCall/m_1/d_1/Relu") == "m_1/d_1/Relu"
    assert strip_wrappers("StatefulPartitionedCall") == "StatefulPartitionedCall"


def test_the_model_scope_is_the_most_common_counted_first_scope() -> None:
    assert model_scope(EXPORTED) == "cnn_1"  # not Func, which has no counter though it is as common
    assert model_scope(["a/b", "x/y/z"]) is None


def test_layer_scopes_lose_their_counter_and_the_rest_stays() -> None:
    names = keras_names(EXPORTED)
    assert names["StatefulPartitionedCall/cnn_1/conv1_1/Relu"] == ("conv1/Relu", "conv1")
    assert names["StatefulPartitionedCall/cnn_1/bn2_1/batchnorm/add_1"] == ("bn2/batchnorm/add_1", "bn2")
    nms = "StatefulPartitionedCall/cnn_1/ROI_1/rpn_non_max_suppression_1/NonMaxSuppressionV3"
    assert names[nms] == ("ROI/rpn_non_max_suppression_1/NonMaxSuppressionV3", "ROI")  # an op scope keeps its counter
    for outside in ("image", "Identity", "StatefulPartitionedCall/Identity", "Func/StatefulPartitionedCall/input/_0"):
        assert outside not in names


def test_with_the_files_layer_list_only_those_layers_are_named() -> None:
    names = keras_names(EXPORTED, layers={"conv1", "ROI", "conv1_1"})
    assert names["StatefulPartitionedCall/cnn_1/conv1_1/Relu"] == ("conv1_1/Relu", "conv1_1")  # exact name first
    assert "StatefulPartitionedCall/cnn_1/bn2_1/batchnorm/add_1" not in names  # bn2 is not listed
    assert names[EXPORTED[4]][1] == "ROI"


@pytest.mark.parametrize(
    ("graph_name", "key"),
    [
        ("cnn_1/conv1_1/Relu:0", "conv1/Relu:0"),
        ("StatefulPartitionedCall/cnn_1/conv1_1/Relu:0", "conv1/Relu:0"),
        ("StatefulPartitionedCall/cnn_1/conv1_1/add_1:0", "conv1/add_1:0"),
        ("image:0", "image:0"),
        ("Identity_1:0", "Identity_1:0"),
    ],
)
def test_pairing_keys(graph_name: str, key: str) -> None:
    assert pairing_key(graph_name) == key


def test_split_fused_source_names_each_node_of_a_fused_op_split_again() -> None:
    conv = "m_1/relu1_1/Relu;m_1/bn1_1/batchnorm/add_1;m_1/bn1_1/batchnorm/mul_1;m_1/conv1_1/convolution"
    assert split_fused_source(conv, OFFSET) == "m_1/bn1_1/batchnorm/add_1"  # the Conv with the folded batch norm
    assert split_fused_source(conv, ACTIVATION) == "m_1/relu1_1/Relu"  # the Relu split off it
    dense = "m_1/fc_1/MatMul;m_1/fc_1/Relu;m_1/fc_1/BiasAdd"
    assert split_fused_source(dense, ANCHOR) == "m_1/fc_1/MatMul"
    assert split_fused_source(dense, OFFSET) == "m_1/fc_1/BiasAdd"
    assert split_fused_source("m_1/c_1/Relu;m_1/c_1/convolution", OFFSET) is None  # no bias listed
    assert split_fused_source("m_1/c_1/Relu;m_1/c_1/convolution", ANCHOR) == "m_1/c_1/convolution"
