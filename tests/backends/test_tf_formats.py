"""SavedModel directories and frozen GraphDef files: names as in the graph, values as in Keras."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import (
    RCNN_H5,
    RCNN_LAYERS,
    SAMPLES,
    assert_one_line_error,
    close,
    inputs_of,
    invoke,
    list_json,
    ok,
    steps_of,
    tensors_of,
)

RCNN_SAVED = SAMPLES / "mini_rcnn_savedmodel"
RCNN_FROZEN = SAMPLES / "mini_rcnn_frozen.pb"
#: Inner tensors checked in both formats, relative to the prefix, computed by ``rcnn_expected``.
#: Inner tensors of the exported sample under the names the Keras file gives them.
RCNN_INNER = (
    "conv1/convolution:0",
    "conv1/Relu:0",
    "conv3/Relu:0",
    "rpn_bbox/Reshape:0",
    "rpn_class/Reshape:0",
    "ROI/rpn_non_max_suppression/NonMaxSuppressionV3:0",
    "ROI/rpn_non_max_suppression_1/NonMaxSuppressionV3:0",
)


def assert_values(got: np.ndarray, expected: Any) -> None:
    """Same dtype and shape, values to float32 rounding (exact for small integers such as NMS indices)."""
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    close(got, expected)


@dataclasses.dataclass(frozen=True)
class RcnnCase:
    """An input batch for the exported sample, and its values computed by the Keras model."""

    images: np.ndarray
    #: Inner tensors by ``RCNN_INNER`` name.
    inner: dict[str, Any]
    #: The two model outputs by their graph names.
    outputs: dict[str, Any]


@pytest.fixture(scope="module")
def rcnn_expected(reference_models: dict[str, Any], keras: Any, tf: Any) -> RcnnCase:
    """The Keras sample the SavedModel and frozen graph were exported from, evaluated directly once for
    both formats; NMS takes its box count and IoU threshold from the sample's ``ProposalLayer``."""
    images = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    model = reference_models["mini_rcnn"]
    proposals = model.get_layer("ROI")
    heads = keras.Model(
        model.inputs, [model.get_layer(name).output for name in ("conv1", "conv3", "rpn_bbox", "rpn_class")]
    )
    kernel = np.asarray(model.get_layer("conv1").weights[0])
    conv1, conv3, boxes, scores = (np.asarray(a) for a in heads(images))
    nms = [
        tf.image.non_max_suppression(b, s, proposals.proposal_count, proposals.nms_threshold).numpy()
        for b, s in zip(boxes, scores, strict=True)
    ]
    rois, probs = model.predict(images, verbose=0)
    inner = dict(
        zip(
            RCNN_INNER,
            [tf.nn.conv2d(images, kernel, 1, "SAME").numpy(), conv1, conv3, boxes, scores, *nms],
            strict=True,
        )
    )
    return RcnnCase(images, inner, {"Identity:0": rois, "Identity_1:0": probs})


@pytest.mark.parametrize(
    ("path", "prefix"),
    [(RCNN_FROZEN, "mini_rcnn_1/"), (RCNN_SAVED, "StatefulPartitionedCall/mini_rcnn_1/")],
    ids=["frozen", "saved"],
)
def test_frozen_graph_and_saved_model_give_the_keras_values(
    path: Path,
    prefix: str,
    tmp_path: Path,
    rcnn_expected: RcnnCase,
) -> None:
    """Outputs and inner tensors (convolutions, the heads, NMS per image) of the exported sample equal
    the Keras model it was exported from, under the Keras file's names; ``prefix`` is where the model's
    ops sit in the graph, which each tensor's graph name keeps."""
    np.save(tmp_path / "x.npy", rcnn_expected.images)
    out = tmp_path / "out.h5"
    inner = "|".join(re.escape(name.removesuffix(":0")) for name in RCNN_INNER)
    ok(invoke("dump", path, "-t", f"({inner})", "-t", "Identity(_1)?", "-i", tmp_path / "x.npy", "-o", out))
    values = tensors_of(out)
    expected = {**rcnn_expected.inner, **rcnn_expected.outputs}
    assert set(values) == set(expected)
    for name, want in expected.items():
        assert_values(values[name], want)
    graph_names = {t["name"]: t["graph_name"] for t in list_json(path)["tensors"]}
    raw = {"conv1/Relu:0": "conv1_1/Relu:0", "ROI/rpn_non_max_suppression_1/NonMaxSuppressionV3:0":
           "ROI_1/rpn_non_max_suppression_1/NonMaxSuppressionV3:0"}  # fmt: skip
    for name, graph_name in raw.items():
        assert graph_names[name] == prefix + graph_name


@pytest.fixture(scope="module")
def saved_signature(tf: Any) -> Any:
    return tf.saved_model.load(str(RCNN_SAVED)).signatures["serving_default"]


def test_saved_model_default_dump_equals_its_signature(tmp_path: Path, saved_signature: Any) -> None:
    """With no --tensor/--layer, the signature's outputs, equal to calling the signature directly."""
    x = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "default.h5"
    ok(invoke("dump", RCNN_SAVED, "-i", tmp_path / "x.npy", "-o", out))
    values = tensors_of(out)
    called = saved_signature(image=x)
    layer_outputs = {"conv1/Relu:0", "conv2/Relu:0", "conv3/Relu:0", "rpn_bbox_conv/Sigmoid:0", "rpn_bbox/Reshape:0",
                     "rpn_class_conv/Sigmoid:0", "rpn_class/Reshape:0", "ROI/stack:0"}  # fmt: skip
    assert set(values) == {"image:0", "Identity:0", "Identity_1:0", *layer_outputs}  # as a Keras file's default
    np.testing.assert_array_equal(values["ROI/stack:0"], values["Identity:0"])
    assert_values(values["Identity:0"], called["output_0"].numpy())
    assert_values(values["Identity_1:0"], called["output_1"].numpy())
    np.testing.assert_array_equal(values["image:0"], x)
    np.testing.assert_array_equal(inputs_of(out)["image"], x)


def test_frozen_graph_names_are_the_keras_names() -> None:
    """The frozen graph's tensors get the Keras file's names and layers; the graph's own name stays graph_name."""
    doc = list_json(RCNN_FROZEN, "--match", ".*NonMaxSuppressionV3")
    keras_doc = list_json(RCNN_H5, "--custom-objects", RCNN_LAYERS, "--match", ".*NonMaxSuppressionV3")
    assert [(t["name"], t["layer"]) for t in doc["tensors"]] == [
        ("ROI/rpn_non_max_suppression/NonMaxSuppressionV3:0", "ROI"),
        ("ROI/rpn_non_max_suppression_1/NonMaxSuppressionV3:0", "ROI"),
    ]
    assert [t["name"] for t in doc["tensors"]] == [t["name"] for t in keras_doc["tensors"]]
    assert (
        [t["graph_name"] for t in doc["tensors"]]
        == [t["graph_name"] for t in keras_doc["tensors"]]
        == [
            "mini_rcnn_1/ROI_1/rpn_non_max_suppression/NonMaxSuppressionV3:0",
            "mini_rcnn_1/ROI_1/rpn_non_max_suppression_1/NonMaxSuppressionV3:0",
        ]
    )
    assert [i["name"] for i in doc["inputs"]] == ["image"]


def test_unknown_signature_is_a_usage_error() -> None:
    line = assert_one_line_error(invoke("list", RCNN_SAVED, "--signature", "nope"), 2)
    assert line == f"Error: SavedModel {str(RCNN_SAVED)!r} has no signature 'nope' (signatures: serve, serving_default)"


@dataclasses.dataclass(frozen=True)
class FrozenMapFn:
    path: Path
    #: The Keras model the graph was frozen from.
    model: Any


#: Where the ops of the frozen map_fn sample's lowered loop body sit (the layer scope mapped, the rest raw).
MAP_FN_BODY = "proposals/per_image/while/body/_1/map_fn_nms_1/proposals_1/per_image/while/"


@pytest.fixture(scope="module")
def frozen_map_fn(keras: Any, tf: Any, tmp_path_factory: pytest.TempPathFactory) -> FrozenMapFn:
    """The map_fn sample frozen: freezing lowers its while loop into the graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from probe_cli.backends.base import import_custom_objects

    objects = import_custom_objects([SAMPLES / "map_fn_layers.py"])
    model = keras.models.load_model(SAMPLES / "map_fn_nms.keras", compile=False, custom_objects=objects)
    spec = tf.TensorSpec((2, 16, 16, 3), tf.float32, name="image")
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    )
    path = tmp_path_factory.mktemp("frozen") / "map_fn_frozen.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return FrozenMapFn(path, model)


@pytest.fixture(scope="module")
def map_fn_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("map_fn_images") / "x.npy"
    np.save(path, np.random.default_rng(3).random((2, 16, 16, 3), dtype=np.float32))
    return path


def test_lowered_loop_ops_are_captured_per_iteration(
    frozen_map_fn: FrozenMapFn,
    map_fn_images: Path,
    tmp_path: Path,
    map_fn_nms_reference: Callable[[np.ndarray], list[np.ndarray]],
) -> None:
    """NMS inside a loop that freezing lowered: listed as such, dumped once per image, each exact."""
    doc = list_json(frozen_map_fn.path, "--match", ".*NonMaxSuppressionV3")
    assert [i["name"] for i in doc["inputs"]] == ["image"]  # no "unused_control_flow_input" placeholders
    (nms,) = doc["tensors"]
    assert nms["name"] == MAP_FN_BODY + "non_max_suppression/NonMaxSuppressionV3:0"
    assert nms["context"].startswith("lowered loop ") and "per_image/while" in nms["context"]

    out = tmp_path / "x.h5"
    ok(invoke("dump", frozen_map_fn.path, "-t", ".*NonMaxSuppressionV3", "-i", map_fn_images, "-o", out))
    expected = map_fn_nms_reference(np.load(map_fn_images))
    with h5py.File(out) as f:
        group = f[f"tensors/{nms['name']}"]
        assert group.attrs["layout"] == "per_iteration" and group.attrs["count"] == 2
        for step in range(2):
            np.testing.assert_array_equal(group[f"step_{step:06d}"][()], expected[step])


def test_every_tensor_of_a_lowered_loop_graph_equals_keras(
    frozen_map_fn: FrozenMapFn,
    map_fn_images: Path,
    tmp_path: Path,
    keras: Any,
    tf: Any,
    map_fn_nms_reference: Callable[[np.ndarray], list[np.ndarray]],
) -> None:
    """``-t '.*'``: every listed tensor is stored; the outputs, the layers on the way and the loop body's
    tensors (per image) equal the Keras model the graph was frozen from."""
    out = tmp_path / "all.h5"
    ok(invoke("dump", frozen_map_fn.path, "-t", ".*", "-i", map_fn_images, "-o", out))
    listed = {t["name"] for t in list_json(frozen_map_fn.path)["tensors"]}
    with h5py.File(out) as f:
        stored: set[str] = set()
        f["tensors"].visititems(lambda _, obj: stored.add(str(obj.attrs["name"])) if "name" in obj.attrs else None)
    assert stored == listed

    images = np.load(map_fn_images)
    model = frozen_map_fn.model
    layers = ("conv1", "bbox", "class")
    conv1, boxes, scores = (
        np.asarray(a) for a in keras.Model(model.inputs, [model.get_layer(n).output for n in layers])(images)
    )
    rois, probs = (np.asarray(a) for a in model(images))
    kernel = np.asarray(model.get_layer("conv1").weights[0])
    values = tensors_of(out)
    for name, want in {
        "Identity:0": rois,
        "Identity_1:0": probs,
        "conv1/convolution/ReadVariableOp:0": kernel,
        "conv1/convolution:0": tf.nn.conv2d(images, kernel, 2, "SAME").numpy(),
        "conv1/Relu:0": conv1,
        "bbox/Reshape:0": boxes,
        "class/Reshape:0": scores,
    }.items():
        assert_values(values[name], want)
    keep = map_fn_nms_reference(images)
    for name, per_image in {
        "non_max_suppression/NonMaxSuppressionV3:0": keep,
        "GatherV2:0": [b[k] for b, k in zip(boxes, keep, strict=True)],
        "Pad:0": list(rois),
    }.items():
        got = steps_of(out, MAP_FN_BODY + name)
        assert len(got) == len(per_image) == 2, name
        for step, want in zip(got, per_image, strict=True):
            assert_values(step, want)


def test_default_dump_of_a_frozen_graph_stores_its_outputs(
    frozen_map_fn: FrozenMapFn, map_fn_images: Path, tmp_path: Path
) -> None:
    """With no --tensor/--layer: the graph's outputs, equal to the Keras model's."""
    out = tmp_path / "default.h5"
    ok(invoke("dump", frozen_map_fn.path, "-i", map_fn_images, "-o", out))
    values = tensors_of(out)
    assert {"Identity:0", "Identity_1:0"} <= set(values)
    rois, probs = (np.asarray(a) for a in frozen_map_fn.model(np.load(map_fn_images)))
    assert_values(values["Identity:0"], rois)
    assert_values(values["Identity_1:0"], probs)


def test_colocation_and_control_inputs_survive_the_prune(tmp_path: Path, tf: Any) -> None:
    """TF1 graphs carry colocation attributes (``_class: loc:@op``) and control inputs (``^op``): a tensor
    colocated with an op it does not need, or needing a feed only as a control input, is still fetched."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (2, 3), name="x")
        doubled = tf.multiply(x, 2.0, name="doubled")
        with tf.compat.v1.colocate_with(doubled.op):
            shifted = tf.add(x, 3.0, name="shifted")
        with tf.control_dependencies([x.op]):  # needs the feed only as a control input
            tf.add(tf.constant(3.0), 4.0, name="seven")
    assert shifted.op.get_attr("_class") == [b"loc:@doubled"]
    assert any("^x" in node.input for node in graph.as_graph_def().node)
    path = tmp_path / "colocated.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "x.npy", values)
    out = tmp_path / "out.h5"
    ok(invoke("dump", path, "-t", "shifted:0", "-t", "seven:0", "-i", tmp_path / "x.npy", "-o", out))
    with h5py.File(out) as f:
        assert list(f["tensors"]) == ["shifted:0", "seven:0"]
        np.testing.assert_array_equal(f["tensors/shifted:0"][()], values + 3.0)
        assert f["tensors/seven:0"][()] == 7.0
