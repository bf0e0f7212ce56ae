"""Unit tests of ``probe_cli.names``: traced scopes -> probe's stable tensor names (no TensorFlow)."""

from __future__ import annotations

import pytest

from probe_cli.core.names import Frame, LayerCall, Owner, call_owners, display_name, unique_names

CONV1 = Frame(1, "conv1", 0)
ROI = Frame(2, "ROI", 0)


@pytest.fixture
def rcnn_owners() -> dict[str, Owner]:
    """Scopes as a traced ``mini_rcnn`` records them: model prefix ``mini_rcnn_1`` and ``_1`` suffixes."""
    calls = [
        LayerCall("mini_rcnn_1/conv1_1", (CONV1,)),
        LayerCall("mini_rcnn_1/roi_1", (ROI,)),
        LayerCall("mini_rcnn_1", ()),  # the traced model itself, recorded last
    ]
    return call_owners(calls)


def test_call_owners_maps_scope_to_layer_path(rcnn_owners: dict[str, Owner]) -> None:
    assert rcnn_owners == {
        "mini_rcnn_1/conv1_1": Owner("conv1", "conv1"),
        "mini_rcnn_1/roi_1": Owner("ROI", "ROI"),
        "mini_rcnn_1": Owner("", None),
    }


def test_model_prefix_and_tracing_suffix_stripped(rcnn_owners: dict[str, Owner]) -> None:
    assert display_name("mini_rcnn_1/conv1_1/Relu", rcnn_owners) == ("conv1/Relu", "conv1")
    assert display_name("mini_rcnn_1/conv1_1/BiasAdd/ReadVariableOp", rcnn_owners) == (
        "conv1/BiasAdd/ReadVariableOp",
        "conv1",
    )


def test_op_inside_custom_layer_keeps_its_inner_path(rcnn_owners: dict[str, Owner]) -> None:
    assert display_name("mini_rcnn_1/roi_1/map/while/NonMaxSuppressionV3", rcnn_owners) == (
        "ROI/map/while/NonMaxSuppressionV3",
        "ROI",
    )


def test_op_in_model_scope_but_no_layer(rcnn_owners: dict[str, Owner]) -> None:
    """The traced model's own scope is stripped, and the op belongs to no layer."""
    assert display_name("mini_rcnn_1/add", rcnn_owners) == ("add", None)


def test_ops_outside_layers_keep_graph_names(rcnn_owners: dict[str, Owner]) -> None:
    assert display_name("Identity", rcnn_owners) == ("Identity", None)
    assert display_name("other_scope/Identity_1", rcnn_owners) == ("other_scope/Identity_1", None)
    assert display_name("x", {}) == ("x", None)


def test_scope_match_respects_path_components(rcnn_owners: dict[str, Owner]) -> None:
    """``mini_rcnn_1/conv1_1`` must not claim ``mini_rcnn_1/conv1_10/...``."""
    assert display_name("mini_rcnn_1/conv1_10/Relu", rcnn_owners) == ("conv1_10/Relu", None)


def test_op_named_like_a_scope_is_not_inside_it(rcnn_owners: dict[str, Owner]) -> None:
    assert display_name("mini_rcnn_1/conv1_1", rcnn_owners) == ("conv1_1", None)


def test_nested_model_names_outer_then_inner() -> None:
    outer, inner = Frame(10, "outer", 0), Frame(11, "inner", 0)
    owners = call_owners(
        [
            LayerCall("model_1/outer_1/inner_1", (outer, inner)),
            LayerCall("model_1/outer_1", (outer,)),
        ]
    )
    assert display_name("model_1/outer_1/inner_1/MatMul", owners) == ("outer/inner/MatMul", "outer/inner")
    assert display_name("model_1/outer_1/add", owners) == ("outer/add", "outer")


def test_longest_recorded_scope_wins() -> None:
    outer, inner = Frame(10, "outer", 0), Frame(11, "inner", 0)
    owners = {"a": Owner("outer", "outer"), "a/b": Owner("outer/inner", "outer/inner")}
    assert call_owners([LayerCall("a", (outer,)), LayerCall("a/b", (outer, inner))]) == owners
    assert display_name("a/b/c/d", owners) == ("outer/inner/c/d", "outer/inner")
    assert display_name("a/c/d", owners) == ("outer/c/d", "outer")


def test_shared_layer_calls_get_call_index() -> None:
    shared = Frame(5, "shared", 0), Frame(5, "shared", 1)
    owners = call_owners(
        [
            LayerCall("m_1/shared_1", (shared[0],)),
            LayerCall("m_1/shared_2", (shared[1],)),
        ]
    )
    assert display_name("m_1/shared_1/MatMul", owners) == ("shared/call_0/MatMul", "shared")
    assert display_name("m_1/shared_2/MatMul", owners) == ("shared/call_1/MatMul", "shared")


def test_layers_with_equal_names_are_told_apart_by_key() -> None:
    """Two distinct layers both named ``dense`` (e.g. in two nested models) are not "shared"."""
    a_outer, b_outer = Frame(1, "a", 0), Frame(2, "b", 0)
    a_dense, b_dense = Frame(3, "dense", 0), Frame(4, "dense", 0)
    owners = call_owners(
        [
            LayerCall("m/a/dense", (a_outer, a_dense)),
            LayerCall("m/b/dense", (b_outer, b_dense)),
        ]
    )
    assert display_name("m/a/dense/MatMul", owners) == ("a/dense/MatMul", "a/dense")
    assert display_name("m/b/dense/MatMul", owners) == ("b/dense/MatMul", "b/dense")


def test_shared_nested_model_called_twice() -> None:
    outer = Frame(7, "tower", 0), Frame(7, "tower", 1)
    inner = Frame(8, "dense", 0), Frame(8, "dense", 1)
    owners = call_owners(
        [
            LayerCall("m_1/tower_1/dense_1", (outer[0], inner[0])),
            LayerCall("m_1/tower_1", (outer[0],)),
            LayerCall("m_1/tower_2/dense_1", (outer[1], inner[1])),
            LayerCall("m_1/tower_2", (outer[1],)),
        ]
    )
    first = display_name("m_1/tower_1/dense_1/MatMul", owners)
    second = display_name("m_1/tower_2/dense_1/MatMul", owners)
    assert first[0].startswith("tower/call_0/dense") and first[0].endswith("/MatMul")
    assert second[0].startswith("tower/call_1/dense") and second[0].endswith("/MatMul")
    assert first[0] != second[0]
    assert first[1] == second[1] == "tower/dense"
    assert display_name("m_1/tower_2/add", owners) == ("tower/call_1/add", "tower")


def test_first_call_recorded_for_a_scope_wins() -> None:
    owners = call_owners([LayerCall("s", (Frame(1, "first", 0),)), LayerCall("s", (Frame(2, "second", 0),))])
    assert owners == {"s": Owner("first", "first")}


def test_names_are_stable_across_runs() -> None:
    """Same recorded calls, same names: nothing depends on ids beyond equality of keys."""
    calls = [LayerCall("m_1/conv_1", (Frame(123, "conv", 0),)), LayerCall("m_1/conv_2", (Frame(123, "conv", 1),))]
    again = [LayerCall("m_7/conv_3", (Frame(999, "conv", 0),)), LayerCall("m_7/conv_4", (Frame(999, "conv", 1),))]
    first = [display_name(f"{c.scope}/Relu", call_owners(calls))[0] for c in calls]
    second = [display_name(f"{c.scope}/Relu", call_owners(again))[0] for c in again]
    assert first == second == ["conv/call_0/Relu", "conv/call_1/Relu"]


# --- unique_names -------------------------------------------------------------------------------


def test_unique_names_keeps_distinct_display_names() -> None:
    pairs = [("m_1/conv1_1/Relu", "conv1/Relu"), ("m_1/conv2_1/Relu", "conv2/Relu"), ("Identity", "Identity")]
    assert unique_names(pairs) == dict(pairs)


def test_collision_falls_back_to_graph_name() -> None:
    pairs = [("m_1/a_1/op", "a/op"), ("m_1/a_2/op", "a/op"), ("m_1/a_3/op", "a/op")]
    assert unique_names(pairs) == {"m_1/a_1/op": "a/op", "m_1/a_2/op": "m_1/a_2/op", "m_1/a_3/op": "m_1/a_3/op"}


def test_fallback_graph_name_already_displayed_stays_unique() -> None:
    """The fallback (a graph name) may be an earlier op's display name: both must stay distinct."""
    pairs = [("Z", "X"), ("A", "B"), ("B", "X")]
    result = unique_names(pairs)
    assert set(result) == {"Z", "A", "B"}
    assert len(set(result.values())) == 3
    assert result == {"Z": "X", "A": "A", "B": "B"}


def test_fallback_chain_stays_unique() -> None:
    pairs = [("Z", "X"), ("A", "B"), ("C", "A"), ("B", "X")]
    result = unique_names(pairs)
    assert len(set(result.values())) == len(pairs)
    assert result == {"Z": "X", "A": "A", "C": "C", "B": "B"}


def test_display_equal_to_own_graph_name() -> None:
    assert unique_names([("a", "b"), ("b", "b")]) == {"a": "a", "b": "b"}


def test_unique_names_empty() -> None:
    assert unique_names([]) == {}
