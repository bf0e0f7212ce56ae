"""Model shapes that break layer-output tools: nested models, shared layers, subclassed models, odd inputs.

Every value is checked against Keras or against the layer's arithmetic redone
with its own weights (``x @ W + b``), never only by shape.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    SAMPLES,
    assert_one_line_error,
    close,
    dense,
    import_file,
    inputs_of,
    invoke,
    list_json,
    ok,
    tensors_of,
)

NESTED_SHARED = SAMPLES / "nested_shared.h5"
SUBCLASSED = SAMPLES / "subclassed.keras"
SUBCLASSED_CODE = SAMPLES / "subclassed_model.py"

#: Custom classes of the models built by these tests (imported by probe through --custom-objects).
TEST_CLASSES = """\
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="probe_tests_shapes")
class DictModel(keras.Model):
    \"\"\"Takes a dict {"x": float, "tok": int ids}; a Dense ``shared`` is called on both branches.\"\"\"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(3, activation="relu", name="proj")
        self.emb = keras.layers.Embedding(20, 3, name="emb")
        self.shared = keras.layers.Dense(2, name="shared")

    def call(self, inputs):
        x = self.proj(inputs["x"])
        t = ops.mean(self.emb(inputs["tok"]), axis=1)
        return self.shared(x) + self.shared(t)


@keras.saving.register_keras_serializable(package="probe_tests_shapes")
class PairModel(keras.Model):
    \"\"\"Takes a list [a, b]; returns two outputs.\"\"\"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d = keras.layers.Dense(2, name="d")

    def call(self, pair):
        a, b = pair
        return self.d(ops.concatenate([a, b], axis=-1)), a * 2.0


@keras.saving.register_keras_serializable(package="probe_tests_shapes")
class MaskedMean(keras.layers.Layer):
    \"\"\"Mean over time of the steps whose boolean mask is set.\"\"\"

    def call(self, inputs):
        x, mask = inputs
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][2])
"""


# ---------------------------------------------------------------- helpers


def by_name(index: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in index[key]}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def nested_model(keras: Any) -> Any:
    assert NESTED_SHARED.is_file(), "sample nested_shared.h5 is missing (run 'make models')"
    return keras.models.load_model(NESTED_SHARED, compile=False)


@pytest.fixture(scope="module")
def nested_index() -> dict[str, Any]:
    return list_json(NESTED_SHARED)


@pytest.fixture(scope="module")
def nested_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nested_shared.h5 with every tensor dumped, 5 random samples."""
    archive = tmp_path_factory.mktemp("nested") / "all.h5"
    ok(invoke("dump", NESTED_SHARED, "-t", ".*", "--batch-size", "5", "--seed", "3", "-o", archive))
    return archive


@pytest.fixture(scope="module")
def subclassed_model(keras: Any) -> Any:
    assert SUBCLASSED.is_file(), "sample subclassed.keras is missing (run 'make models')"
    import_file(SUBCLASSED_CODE, "probe_test_subclassed_model")
    return keras.models.load_model(SUBCLASSED, compile=False)


@pytest.fixture(scope="module")
def subclassed_index() -> dict[str, Any]:
    return list_json(SUBCLASSED, "--custom-objects", SUBCLASSED_CODE)


@pytest.fixture(scope="module")
def subclassed_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("subclassed") / "all.h5"
    ok(invoke("dump", SUBCLASSED, "--custom-objects", SUBCLASSED_CODE, "-t", ".*", "--batch-size", "4", "-o", archive))
    return archive


@pytest.fixture(scope="module")
def test_models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models built here: subclassed with dict / list inputs, an unbuilt one, and a 3-input 2-output model."""
    out = tmp_path_factory.mktemp("shape_models")
    code = out / "shape_classes.py"
    code.write_text(TEST_CLASSES)
    classes = import_file(code, "probe_test_shape_classes")
    keras.utils.set_random_seed(21)

    dict_model = classes.DictModel(name="dict_model")
    dict_model({"x": np.zeros((2, 4), "float32"), "tok": np.zeros((2, 5), "int32")})
    dict_model.save(out / "dict.keras")
    pair_model = classes.PairModel(name="pair_model")
    pair_model([np.zeros((2, 3), "float32"), np.zeros((2, 2), "float32")])
    pair_model.save(out / "pair.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "saving a model that has not yet been built": on purpose
        classes.PairModel(name="never_called").save(out / "unbuilt.keras")

    seq = keras.Input(shape=(None, 3), name="seq")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    mask = keras.Input(shape=(None,), dtype="bool", name="mask")
    steps = keras.layers.Dense(4, activation="relu", name="step")(seq)
    pooled = classes.MaskedMean(name="masked_mean")([steps, mask])
    label = keras.layers.Dense(2, name="label")(pooled)
    embedded = keras.layers.Embedding(input_dim=9, output_dim=4, name="embed")(tokens)
    score = keras.layers.Dense(1, name="score")(keras.layers.GlobalAveragePooling1D(name="tok_pool")(embedded))
    keras.Model([seq, tokens, mask], [label, score], name="mixed").save(out / "mixed.keras")
    return {
        "code": code,
        "dict": out / "dict.keras",
        "pair": out / "pair.keras",
        "unbuilt": out / "unbuilt.keras",
        "mixed": out / "mixed.keras",
    }


# ---------------------------------------------------------------- nested models


def test_nested_model_layers_are_named_outer_inner(nested_index: dict[str, Any]) -> None:
    layers = by_name(nested_index, "layers")
    assert layers["inner"]["class_name"] == "Sequential"
    assert layers["inner/d1"]["outputs"] == ["inner/d1/Relu:0"]
    assert layers["inner/d2"]["outputs"] == ["inner/d2/BiasAdd:0"]
    assert layers["inner"]["outputs"] == ["inner/d2/BiasAdd:0"]
    tensors = by_name(nested_index, "tensors")
    assert tensors["inner/d1/MatMul:0"]["layer"] == "inner/d1"
    assert tensors["inner/d2/BiasAdd:0"]["layer"] == "inner/d2"


def test_nested_model_values(nested_archive: Path, nested_model: Any) -> None:
    a = inputs_of(nested_archive)["a"]
    inner = nested_model.get_layer("inner")
    hidden = np.maximum(dense(inner.get_layer("d1"), a), 0)
    values = tensors_of(nested_archive)
    close(values["inner/d1/Relu:0"], hidden)
    close(values["inner/d2/BiasAdd:0"], dense(inner.get_layer("d2"), hidden))
    close(values["inner/d2/BiasAdd:0"], inner(a))


# ---------------------------------------------------------------- shared layers


def test_shared_layer_has_one_name_per_call(nested_index: dict[str, Any]) -> None:
    shared = by_name(nested_index, "layers")["shared"]
    assert shared["outputs"] == ["shared/call_0/Tanh:0", "shared/call_1/Tanh:0"]
    tensors = by_name(nested_index, "tensors")
    for call in ("call_0", "call_1"):
        for op in ("MatMul", "BiasAdd", "Tanh"):
            assert tensors[f"shared/{call}/{op}:0"]["layer"] == "shared"


def test_layer_option_selects_every_call_of_a_shared_layer(tmp_path: Path, nested_model: Any) -> None:
    archive = tmp_path / "shared.h5"
    ok(invoke("dump", NESTED_SHARED, "--layer", "shared", "--batch-size", "4", "--seed", "5", "-o", archive))
    values = tensors_of(archive)
    assert set(values) == {"shared/call_0/Tanh:0", "shared/call_1/Tanh:0"}
    feeds = inputs_of(archive)
    shared = nested_model.get_layer("shared")
    inner_out = np.asarray(nested_model.get_layer("inner")(feeds["a"]))
    close(values["shared/call_0/Tanh:0"], np.tanh(dense(shared, inner_out)))
    close(values["shared/call_1/Tanh:0"], np.tanh(dense(shared, feeds["b"])))
    assert not np.allclose(values["shared/call_0/Tanh:0"], values["shared/call_1/Tanh:0"])


def test_shared_layer_inner_ops_and_output(nested_archive: Path, nested_model: Any) -> None:
    feeds = inputs_of(nested_archive)
    values = tensors_of(nested_archive)
    kernel = np.asarray(nested_model.get_layer("shared").weights[0])
    close(values["shared/call_0/MatMul:0"], np.asarray(nested_model.get_layer("inner")(feeds["a"])) @ kernel)
    close(values["shared/call_1/MatMul:0"], feeds["b"] @ kernel)
    close(values["head/BiasAdd:0"], nested_model.predict([feeds["a"], feeds["b"]], verbose=0))


# ---------------------------------------------------------------- subclassed models


def test_subclassed_inputs_from_build_config(subclassed_index: dict[str, Any]) -> None:
    [spec] = subclassed_index["inputs"]
    assert (spec["name"], spec["dtype"], spec["shape"]) == ("features", "float32", [None, 5])
    assert subclassed_index["outputs"] == ["head/Softmax:0"]


def test_subclassed_lists_every_op(subclassed_index: dict[str, Any], subclassed_model: Any, tf: Any) -> None:
    """The listed op tensors are exactly those of an independent trace of the same model."""
    spec = tf.TensorSpec((None, 5), tf.float32)
    graph = tf.function(lambda x: subclassed_model(x, training=False)).get_concrete_function(spec).graph
    expected: Counter[str] = Counter()
    for op in graph.get_operations():
        if op.type == "Identity":
            continue  # the function's own output plumbing
        expected.update(op.type for t in op.outputs if t.dtype.name not in ("resource", "variant"))
    listed = Counter(t["op_type"] for t in subclassed_index["tensors"])
    assert listed == expected
    assert expected["MatMul"] == 4 and expected["Placeholder"] == 1


def test_subclassed_sublayers_attributed(subclassed_index: dict[str, Any]) -> None:
    layers = by_name(subclassed_index, "layers")
    assert layers["block"]["class_name"] == "ResidualBlock"
    assert layers["block/hidden"]["outputs"] == ["block/hidden/Relu:0"]
    assert layers["block/proj"]["outputs"] == ["block/proj/BiasAdd:0"]
    tensors = by_name(subclassed_index, "tensors")
    assert tensors["block/hidden/MatMul:0"]["layer"] == "block/hidden"
    assert tensors["block/proj/BiasAdd:0"]["layer"] == "block/proj"
    assert tensors["block/add:0"]["layer"] == "block"
    assert tensors["stem/Tanh:0"]["layer"] == "stem"


def test_subclassed_every_listed_tensor_dumped(subclassed_index: dict[str, Any], subclassed_archive: Path) -> None:
    assert set(tensors_of(subclassed_archive)) == {t["name"] for t in subclassed_index["tensors"]}


def test_subclassed_values_equal_direct_computation(subclassed_archive: Path, subclassed_model: Any) -> None:
    x = inputs_of(subclassed_archive)["features"]
    assert x.shape == (4, 5)
    values = tensors_of(subclassed_archive)
    stem = np.tanh(dense(subclassed_model.stem, x))
    hidden = np.maximum(dense(subclassed_model.block.hidden, stem), 0)
    block = stem + dense(subclassed_model.block.proj, hidden)
    close(values["stem/Tanh:0"], stem)
    close(values["block/hidden/MatMul:0"], stem @ np.asarray(subclassed_model.block.hidden.weights[0]))
    close(values["block/hidden/Relu:0"], hidden)
    close(values["block/add:0"], block)
    close(values["head/Softmax:0"], subclassed_model(x, training=False))


def test_subclassed_layer_option(tmp_path: Path, subclassed_model: Any) -> None:
    archive = tmp_path / "block.h5"
    ok(invoke("dump", SUBCLASSED, "--custom-objects", SUBCLASSED_CODE, "--layer", "block/.*", "-o", archive))
    values = tensors_of(archive)
    assert set(values) == {"block/hidden/Relu:0", "block/proj/BiasAdd:0"}
    stem = np.tanh(dense(subclassed_model.stem, inputs_of(archive)["features"]))
    close(values["block/hidden/Relu:0"], np.maximum(dense(subclassed_model.block.hidden, stem), 0))


def test_subclassed_dict_input(test_models: dict[str, Path], keras: Any, tmp_path: Path) -> None:
    """Dict inputs are named by their keys; a shared sublayer's calls are told apart."""
    args = (test_models["dict"], "--custom-objects", test_models["code"])
    index = list_json(*args)
    assert [(s["name"], s["shape"]) for s in index["inputs"]] == [("tok", [None, 5]), ("x", [None, 4])]
    assert by_name(index, "layers")["shared"]["outputs"] == ["shared/call_0/BiasAdd:0", "shared/call_1/BiasAdd:0"]
    archive = tmp_path / "dict.h5"
    ok(invoke("dump", *args, "-t", ".*", "--batch-size", "3", "-o", archive))
    assert set(tensors_of(archive)) == {t["name"] for t in index["tensors"]}
    model = keras.models.load_model(test_models["dict"], compile=False)
    feeds = inputs_of(archive)
    values = tensors_of(archive)
    x = np.maximum(dense(model.proj, feeds["x"]), 0)
    close(values["proj/Relu:0"], x)
    close(values["shared/call_0/BiasAdd:0"], dense(model.shared, x))
    close(values[index["outputs"][0]], model({"x": feeds["x"], "tok": feeds["tok"]}))


def test_subclassed_list_input_two_outputs(test_models: dict[str, Path], keras: Any, tmp_path: Path) -> None:
    args = (test_models["pair"], "--custom-objects", test_models["code"])
    index = list_json(*args)
    assert [(s["name"], s["shape"]) for s in index["inputs"]] == [("pair_0", [None, 3]), ("pair_1", [None, 2])]
    assert len(index["outputs"]) == 2
    archive = tmp_path / "pair.h5"
    ok(invoke("dump", *args, "-t", ".*", "--batch-size", "2", "-o", archive))
    model = keras.models.load_model(test_models["pair"], compile=False)
    feeds = inputs_of(archive)
    values = tensors_of(archive)
    expected = model([feeds["pair_0"], feeds["pair_1"]])
    for name, want in zip(index["outputs"], expected, strict=True):
        close(values[name], want)
    close(values["d/BiasAdd:0"], dense(model.d, np.concatenate([feeds["pair_0"], feeds["pair_1"]], axis=-1)))


def test_subclassed_never_built_is_a_clear_error(test_models: dict[str, Path]) -> None:
    result = invoke("list", test_models["unbuilt"], "--custom-objects", test_models["code"])
    assert_one_line_error(result, 1, "no known inputs", "call it once")


# ---------------------------------------------------------------- several inputs and outputs


def test_int_bool_and_dynamic_inputs(test_models: dict[str, Path], keras: Any, tmp_path: Path) -> None:
    args = (test_models["mixed"], "--custom-objects", test_models["code"])
    index = list_json(*args)
    specs = {s["name"]: (s["dtype"], s["shape"]) for s in index["inputs"]}
    assert specs == {
        "seq": ("float32", [None, None, 3]),
        "tokens": ("int32", [None, None]),
        "mask": ("bool", [None, None]),
    }
    assert len(index["outputs"]) == 2
    archive = tmp_path / "mixed.h5"
    ok(
        invoke(
            "dump", *args, "-t", ".*", "--batch-size", "6", "--seed", "9",
            "--shape", "seq=7,3", "--shape", "tokens=7", "--shape", "mask=7", "-o", archive,
        )
    )  # fmt: skip
    feeds = inputs_of(archive)
    assert feeds["seq"].shape == (6, 7, 3) and feeds["seq"].dtype == np.float32
    assert feeds["tokens"].dtype == np.int32 and 0 <= feeds["tokens"].min() and feeds["tokens"].max() < 9
    assert feeds["mask"].dtype == np.bool_ and feeds["mask"].any() and not feeds["mask"].all()
    assert set(tensors_of(archive)) == {t["name"] for t in index["tensors"]}

    model = keras.models.load_model(test_models["mixed"], compile=False)
    values = tensors_of(archive)
    label, score = model.predict([feeds["seq"], feeds["tokens"], feeds["mask"]], verbose=0)
    close(values[index["outputs"][0]], label)
    close(values[index["outputs"][1]], score)
    steps = np.maximum(dense(model.get_layer("step"), feeds["seq"]), 0)
    weights = feeds["mask"][..., None].astype(np.float32)
    pooled = (steps * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    [pooled_name] = by_name(index, "layers")["masked_mean"]["outputs"]
    close(values[pooled_name], pooled)
    table = np.asarray(model.get_layer("embed").weights[0])
    [embed_name] = by_name(index, "layers")["embed"]["outputs"]
    close(values[embed_name], table[feeds["tokens"]])
