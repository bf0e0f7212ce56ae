"""SavedModel directories and frozen GraphDef files: names as in the graph, values as in Keras."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from probe_cli.cli import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
RCNN = ["--custom-objects", str(SAMPLES / "mini_rcnn_layers.py")]


def probe(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _nms_values(archive: Path) -> list[np.ndarray]:
    with h5py.File(archive) as f:
        found: list[tuple[str, np.ndarray]] = []
        f["tensors"].visititems(
            lambda path, obj: found.append((path, obj[()])) if path.endswith("NonMaxSuppressionV3:0") else None
        )
    return [value for _, value in sorted(found)]


def test_frozen_graph_and_saved_model_give_the_keras_values(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    results = {}
    for label, model, extra in (
        ("keras", SAMPLES / "mini_rcnn.h5", RCNN),
        ("frozen", SAMPLES / "mini_rcnn_frozen.pb", []),
        ("saved", SAMPLES / "mini_rcnn_savedmodel", []),
    ):
        out = tmp_path / f"{label}.h5"
        result = probe("dump", model, *extra, "-t", ".*NonMaxSuppressionV3", "-i", tmp_path / "x.npy", "-o", out)
        assert result.exit_code == 0, result.stderr
        results[label] = _nms_values(out)
    assert len(results["keras"]) == 2
    for label in ("frozen", "saved"):
        for got, expected in zip(results[label], results["keras"], strict=True):
            np.testing.assert_array_equal(got, expected)


def test_frozen_graph_names_are_the_graph_names() -> None:
    result = probe("list", SAMPLES / "mini_rcnn_frozen.pb", "--json", "--match", ".*NonMaxSuppressionV3")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [t["name"] for t in doc["tensors"]] == [
        "mini_rcnn_1/ROI_1/rpn_non_max_suppression/NonMaxSuppressionV3:0",
        "mini_rcnn_1/ROI_1/rpn_non_max_suppression_1/NonMaxSuppressionV3:0",
    ]
    assert all(t["name"] == t["graph_name"] for t in doc["tensors"])
    assert [i["name"] for i in doc["inputs"]] == ["image"]


def test_unknown_signature_is_a_usage_error() -> None:
    result = probe("list", SAMPLES / "mini_rcnn_savedmodel", "--signature", "nope")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: SavedModel {str(SAMPLES / 'mini_rcnn_savedmodel')!r} has no signature 'nope' "
        "(signatures: serve, serving_default)"
    ]


@pytest.fixture(scope="module")
def frozen_map_fn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The map_fn sample frozen: freezing lowers its while loop into the graph."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from probe_cli.load import import_custom_objects

    objects = import_custom_objects([SAMPLES / "map_fn_layers.py"])
    model = keras.models.load_model(SAMPLES / "map_fn_nms.keras", compile=False, custom_objects=objects)
    spec = tf.TensorSpec((2, 16, 16, 3), tf.float32, name="image")
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    )
    path = tmp_path_factory.mktemp("frozen") / "map_fn_frozen.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


def test_lowered_loop_ops_are_captured_per_iteration(
    frozen_map_fn: Path, tmp_path: Path, map_fn_nms_reference: Callable[[np.ndarray], list[np.ndarray]]
) -> None:
    """NMS inside a loop that freezing lowered: listed as such, dumped once per image, each exact."""

    listing = probe("list", frozen_map_fn, "--json", "--match", ".*NonMaxSuppressionV3")
    assert listing.exit_code == 0, listing.stderr
    doc = json.loads(listing.stdout)
    assert [i["name"] for i in doc["inputs"]] == ["image"]  # no "unused_control_flow_input" placeholders
    (nms,) = doc["tensors"]
    assert nms["context"].startswith("lowered loop ") and "per_image/while" in nms["context"]

    images = np.random.default_rng(3).random((2, 16, 16, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "x.h5"
    result = probe("dump", frozen_map_fn, "-t", ".*NonMaxSuppressionV3", "-i", tmp_path / "x.npy", "-o", out)
    assert result.exit_code == 0, result.stderr
    expected = map_fn_nms_reference(images)
    with h5py.File(out) as f:
        group = f[f"tensors/{nms['name']}"]
        assert group.attrs["layout"] == "per_iteration" and group.attrs["count"] == 2
        for step in range(2):
            np.testing.assert_array_equal(group[f"step_{step:06d}"][()], expected[step])

    everything = probe("dump", frozen_map_fn, "-t", ".*", "-o", tmp_path / "all.h5")
    assert everything.exit_code == 0, everything.stderr
    whole = probe("dump", frozen_map_fn, "-o", tmp_path / "default.h5")  # the default: the graph's outputs
    assert whole.exit_code == 0, whole.stderr
    with h5py.File(tmp_path / "default.h5") as f:
        assert f["tensors/Identity:0"].shape == (2, 6, 4)


def test_colocation_and_control_inputs_survive_the_prune(tmp_path: Path) -> None:
    """TF1 graphs carry colocation attributes (``_class: loc:@op``) and control inputs (``^op``): a tensor
    colocated with an op it does not need, or needing a feed only as a control input, is still fetched."""
    import tensorflow as tf

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
    result = probe("dump", path, "-t", "shifted:0", "-t", "seven:0", "-i", tmp_path / "x.npy", "-o", out)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert list(f["tensors"]) == ["shifted:0", "seven:0"]
        np.testing.assert_array_equal(f["tensors/shifted:0"][()], values + 3.0)
        assert f["tensors/seven:0"][()] == 7.0
