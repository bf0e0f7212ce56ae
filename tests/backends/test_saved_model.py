"""SavedModels TensorFlow 2 cannot revive, with several signatures or no variables, and the Keras layer
names a tf.keras 2 SavedModel lists in ``keras_metadata.pb``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke, list_json, ok, tensors_of

X = np.array([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]], dtype=np.float32)
W = np.arange(6, dtype=np.float32).reshape(3, 2) - 2.0


def _save(tf: Any, root: Path, *, variables: bool) -> Path:
    """A module with a ``serving_default`` (relu(x @ w), w a variable or a constant) and a ``double`` signature."""

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(W, name="w") if variables else tf.constant(W)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": tf.nn.relu(tf.matmul(x, self.w), name="act")}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def double(self, x: Any) -> Any:
            return {"z": tf.multiply(x, 2.0, name="twice")}

    module = Module()
    path = root / ("with_variables" if variables else "no_variables")
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "double": module.double})
    return path


def _unrevivable(source: Path, target: Path) -> Path:
    """A copy whose object graph names functions that do not exist: ``tf.saved_model.load`` fails on it
    (as on a tf.keras 2 model with optimizer slots), while its MetaGraph and signatures stay intact."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(source, target)
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((target / "saved_model.pb").read_bytes())
    edited = 0
    for node in saved_model.meta_graphs[0].object_graph_def.nodes:
        if node.WhichOneof("kind") == "bare_concrete_function":
            node.bare_concrete_function.concrete_function_name = "no_such_function"
            edited += 1
    assert edited
    (target / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    return target


@pytest.fixture(scope="module")
def saved(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    found = {}
    for variables in (True, False):
        path = _save(tf, root, variables=variables)
        found[path.name] = path
        found[path.name + "_unrevivable"] = _unrevivable(path, root / (path.name + "_unrevivable"))
    with pytest.raises(Exception, match="no_such_function"):
        tf.saved_model.load(str(found["with_variables_unrevivable"]))
    return found


@pytest.mark.parametrize(
    "name", ["with_variables", "with_variables_unrevivable", "no_variables", "no_variables_unrevivable"]
)
def test_every_signature_dumps_values_equal_to_computing_them(
    saved: dict[str, Path], name: str, tmp_path: Path
) -> None:
    np.save(tmp_path / "x.npy", X)
    for signature, op, expected in (("serving_default", "act", np.maximum(X @ W, 0)), ("double", "twice", 2 * X)):
        out = tmp_path / f"{signature}.h5"
        pattern = f".*/{op}"
        ok(invoke("dump", saved[name], "--signature", signature, "-t", pattern, "-i", tmp_path / "x.npy", "-o", out))
        [value] = tensors_of(out).values()
        np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_verbose_says_which_loader_read_it(saved: dict[str, Path]) -> None:
    revived = ok(invoke("-v", "list", saved["with_variables"], "--layers")).stderr
    assert "loaded through its object graph" in revived
    fallback = ok(invoke("-v", "list", saved["with_variables_unrevivable"], "--layers")).stderr
    assert (
        f"probe: SavedModel {saved['with_variables_unrevivable']}: its object graph could not be revived "
        "('no_such_function'); loaded its MetaGraph and variables instead"
    ) in fallback
    assert "loaded" not in ok(invoke("list", saved["with_variables_unrevivable"], "--layers")).stderr


def test_an_unknown_signature_lists_the_ones_there(saved: dict[str, Path]) -> None:
    path = saved["no_variables_unrevivable"]
    line = assert_one_line_error(invoke("list", path, "--signature", "nope"), 2)
    assert line == f"Error: SavedModel {str(path)!r} has no signature 'nope' (signatures: double, serving_default)"


def test_a_broken_saved_model_names_the_first_error(saved: dict[str, Path], tmp_path: Path) -> None:
    broken = shutil.copytree(saved["with_variables"], tmp_path / "broken")
    (broken / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    assert_one_line_error(invoke("list", broken), 1, "cannot load SavedModel")


def test_keras_metadata_names_only_the_layers_it_lists(tf: Any, tmp_path: Path) -> None:
    """A tf.keras 2 SavedModel lists its layers in keras_metadata.pb: scopes of those layers get the
    Keras names; a scope that merely looks like one (a counter on a non-layer) keeps its graph name."""
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            with tf.name_scope("model_1"):
                with tf.name_scope("dense_1"):
                    y = tf.nn.relu(x, name="Relu")
                with tf.name_scope("helper_1"):
                    z = tf.negative(y, name="Neg")
            return {"z": z}

    module = Module()
    path = tmp_path / "keras2"
    tf.saved_model.save(module, str(path), signatures=module.serve)
    metadata = saved_metadata_pb2.SavedMetadata()
    for node_path, identifier, config in (
        ("root", "_tf_keras_network", {"name": "model", "class_name": "Functional"}),
        ("root.layer-1", "_tf_keras_layer", {"name": "dense", "class_name": "Dense"}),
        ("root.keras_api.metrics.0", "_tf_keras_metric", {"name": "helper", "class_name": "Mean"}),
    ):
        metadata.nodes.add(node_path=node_path, identifier=identifier, metadata=json.dumps(config))
    (path / "keras_metadata.pb").write_bytes(metadata.SerializeToString())
    tensors = {t["graph_name"]: t for t in list_json(path)["tensors"]}
    relu = next(t for g, t in tensors.items() if g.endswith("model_1/dense_1/Relu:0"))
    neg = next(t for g, t in tensors.items() if g.endswith("model_1/helper_1/Neg:0"))
    assert (relu["name"], relu["layer"]) == ("dense/Relu:0", "dense")
    assert (neg["name"], neg["layer"]) == (neg["graph_name"], None)
