"""TensorFlow Lite models: detection, listing, names, dumping (equal to the interpreter), compare, refusals.

Small Keras models are built here (convolution, batch norm with non-trivial statistics, depthwise
convolution, residual add, dense layers), exported as SavedModels and converted to float and to
full-integer int8 TFLite; values are checked against an interpreter run directly in the test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, assert_one_line_error, invoke, list_json, ok, tiny_residual

import probe_cli as probe
from probe_cli.archive.reader import dataset_stats, dequantized, list_tensors, open_archive, read_slice
from probe_cli.backends import registry, tfenv
from probe_cli.backends.tflite import loader
from probe_cli.core.errors import MissingExtra, ModelLoadError
from probe_cli.core.graph_names import tflite_names, tflite_source

SHAPE = (16, 16, 3)
SAMPLES_FED = 3


@dataclass(frozen=True)
class TFLiteModels:
    keras: Path
    float_bin: Path  # the float conversion, under an extension that says nothing
    int8: Path
    #: full-integer with int8 input and output
    int8_io: Path
    #: converted with a batch of 1 built in (no dynamic batch): runs sample by sample
    static: Path
    #: the same with its weights as resource variables (VAR_HANDLE, READ_VARIABLE ops)
    variables: Path
    flex: Path
    custom: Path
    nan: Path


def _model(keras: Any) -> Any:
    return tiny_residual(keras, SHAPE)


def _representative() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    for _ in range(16):
        yield [rng.random((1, *SHAPE), dtype=np.float32)]


@pytest.fixture(scope="module")
def models(keras: Any, tf: Any, tmp_path_factory: pytest.TempPathFactory) -> TFLiteModels:
    out = tmp_path_factory.mktemp("tflite")
    keras.utils.set_random_seed(11)
    model = _model(keras)
    model.save(out / "tiny.keras")
    saved = out / "tiny_savedmodel"
    model.export(str(saved), verbose=False)

    def convert(path: Path, converter: Any, int8: bool = False, io: bool = False) -> Path:
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        path.write_bytes(converter.convert())
        return path

    from_saved = tf.lite.TFLiteConverter.from_saved_model
    function = tf.function(lambda x: model(x, training=False))
    static = function.get_concrete_function(tf.TensorSpec((1, *SHAPE), tf.float32))
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(static)

    class Flex(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def f(self, x: Any) -> Any:
            return tf.math.cumprod(tf.nn.relu(x), axis=1) * 2.0  # Cumprod: no TFLite builtin

    class Custom(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def f(self, x: Any) -> Any:
            return tf.raw_ops.Asinh(x=tf.nn.relu(x)) * 2.0  # neither builtin nor Flex

    class Nan(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def f(self, x: Any) -> Any:
            return tf.nn.relu(tf.math.log(x - 0.5)) + 1.0  # NaN where x < 0.5

    flex_module, custom_module, nan_module = Flex(), Custom(), Nan()
    flex = tf.lite.TFLiteConverter.from_concrete_functions([flex_module.f.get_concrete_function()], flex_module)
    flex.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    custom = tf.lite.TFLiteConverter.from_concrete_functions([custom_module.f.get_concrete_function()], custom_module)
    custom.allow_custom_ops = True
    nan = tf.lite.TFLiteConverter.from_concrete_functions([nan_module.f.get_concrete_function()], nan_module)
    return TFLiteModels(
        keras=out / "tiny.keras",
        float_bin=convert(out / "tiny_float.bin", from_saved(str(saved))),
        int8=convert(out / "tiny_int8.tflite", from_saved(str(saved)), int8=True),
        int8_io=convert(out / "tiny_int8_io.tflite", from_saved(str(saved)), int8=True, io=True),
        static=convert(out / "tiny_static.tflite", tf.lite.TFLiteConverter.from_concrete_functions([frozen])),
        variables=convert(out / "tiny_vars.tflite", tf.lite.TFLiteConverter.from_concrete_functions([static], model)),
        flex=convert(out / "flex.tflite", flex),
        custom=convert(out / "custom.tflite", custom),
        nan=convert(out / "nan.tflite", nan),
    )


def interpreter_values(path: Path, fed: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every op's output and the input, by raw name, one value per sample: the interpreter run by hand."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (image,) = interpreter.get_input_details()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    found: dict[str, list[np.ndarray]] = {}
    for sample in fed:
        interpreter.set_tensor(image["index"], sample[None])
        interpreter.invoke()
        for index in [image["index"], *produced_by_ops(interpreter)]:
            if np.dtype(details[index]["dtype"]).kind != "O":  # not a resource handle
                found.setdefault(details[index]["name"], []).append(interpreter.get_tensor(index))
    return found


def produced_by_ops(interpreter: Any) -> list[int]:
    """The tensors the model's ops output (the delegate's nodes are no ops of the model)."""
    return [int(i) for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE" for i in op["outputs"]]


def images(count: int = SAMPLES_FED, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).random((count, *SHAPE), dtype=np.float32)


def stored_integers(archive: Path) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Each stored tensor's dataset as h5py reads it (integers when quantized) and attributes, by graph name."""
    with h5py.File(archive, "r") as file:
        found = {}
        for tensor in list_tensors(file):
            node = file[tensor.path]
            assert isinstance(node, h5py.Dataset), f"{tensor.name} is not one dataset"
            found[str(tensor.attrs["graph_name"])] = (node[()], dict(tensor.attrs))
        return found


def test_detected_by_content_whatever_the_extension(models: TFLiteModels) -> None:
    assert registry.detect_format(models.float_bin) == "tflite"
    assert registry.detect_format(models.int8) == "tflite"
    document = list_json(models.float_bin)
    assert document["format"] == "tflite"
    assert [(i["name"], i["dtype"], i["shape"]) for i in document["inputs"]] == [("image", "float32", [None, *SHAPE])]


def test_list_shows_op_types_dtypes_and_quantization(models: TFLiteModels) -> None:
    model = probe.open(models.int8)
    tensors = {t["name"]: t for t in model.tensors}
    ops = {t["op_type"] for t in model.tensors}
    assert {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"} <= ops
    assert {"DEQUANTIZE", "INPUT"} <= ops and "DELEGATE" not in ops
    relu = tensors["relu1/Relu:0"]
    assert relu["dtype"] == "int8" and relu["shape"] == [None, 16, 16, 8]
    assert isinstance(relu["quantization"]["scale"], float) and relu["quantization"]["scale"] > 0
    assert relu["quantization"]["zero_point"] == -128  # a ReLU's output starts at real 0
    assert "quantization" not in tensors["image:0"]  # float input
    # weights and constants are no op's output: not listed
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(models.int8), experimental_preserve_all_tensors=True)
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    produced = {names[i] for i in produced_by_ops(interpreter)} | {"serving_default_image:0"}
    assert {t["graph_name"] for t in model.tensors} == produced
    assert len(names) > len(produced)  # the weights, biases and constants


@pytest.mark.parametrize("which", ["float_bin", "int8", "int8_io", "static"])
def test_every_listed_tensor_dumps_equal_to_the_interpreter(models: TFLiteModels, which: str, tmp_path: Path) -> None:
    """Three samples: one invoke of a dynamic batch (float, int8), or one per sample (static batch 1)."""
    path = getattr(models, which)
    model = probe.open(path)
    archive = tmp_path / "run.h5"
    fed = images()
    spec = model.index.inputs[0]
    if spec.dtype == "int8":  # an int8-input model is fed integers
        fed = np.random.default_rng(5).integers(-128, 128, (SAMPLES_FED, *SHAPE)).astype(np.int8)
    model.dump(archive, fed, tensors=[".*"])
    expected = interpreter_values(path, fed)
    stored = stored_integers(archive)
    assert set(stored) == set(expected), "every tensor an op produces is listed and dumped"
    for graph_name, (values, attrs) in stored.items():
        reference = expected[graph_name]  # one value per sample: batch-axis tensors join along axis 0
        joined = np.concatenate(reference) if reference[0].ndim else np.stack(reference)
        assert values.dtype == joined.dtype, graph_name
        np.testing.assert_array_equal(values, joined, err_msg=graph_name)
        if values.dtype == np.int8 and attrs.get("op_type") != "INPUT":
            assert "scale" in attrs and "zero_point" in attrs, graph_name


def test_resource_handles_are_not_listed(models: TFLiteModels, tmp_path: Path) -> None:
    """``VAR_HANDLE`` outputs are handles, no values (reading one crashes the interpreter); the
    ``READ_VARIABLE`` ops' outputs are values and dump."""
    model = probe.open(models.variables)
    ops = [t.op_type for t in model.index.tensors]
    assert "VAR_HANDLE" not in ops and "READ_VARIABLE" in ops
    result = model.dump(tmp_path / "vars.h5", images(2), tensors=[".*"])
    assert len(result.stored) == len(model.index.tensors)


def test_tflite_names() -> None:
    """Fused names: the op whose value the tensor holds; split ops: the last tensor; dull names: their own."""
    raw = [
        "m_1/c_1/Relu;m_1/bn_1/batchnorm/add_1;m_1/c_1/convolution",
        "m_1/d_1/MatMul;m_1/d_1/Relu",
        "m_1/e_1/MatMul;m_1/e_1/BiasAdd",
        "m_1/s_1/Tanh;m_1/s_1/Tensordot",
        "m_1/s_1/Tanh;m_1/s_1/Tensordot1",
        "m_1/sp_1/split:1",
        "tfl.quantize",
        "tfl.quantize",
        "StatefulPartitionedCall_1:0",
    ]
    ops = ["CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED", "TANH", "RESHAPE", "SPLIT", "QUANTIZE", "QUANTIZE", None]
    assert tflite_names(raw, ops, taken={"x:0"}) == [
        ("c/Relu:0", "c"),
        ("d/Relu:0", "d"),
        ("e/BiasAdd:0", "e"),
        ("m_1/s_1/Tanh;m_1/s_1/Tensordot:0", "s"),
        ("s/Tanh:0", "s"),
        ("sp/split:1", "sp"),
        ("tfl.quantize:0", None),
        ("tfl.quantize:0#2", None),
        ("StatefulPartitionedCall_1:0", None),
    ]
    assert tflite_source("m_1/a_1/mul;m_1/a_1/Relu6", "HARD_SWISH") == "m_1/a_1/mul"  # no fusing op: first listed


def test_names_are_the_keras_files_and_graph_names_stay_raw(models: TFLiteModels) -> None:
    keras_model = probe.open(models.keras)
    keras_outputs = {name for layer in keras_model.index.layers for name in layer.outputs}
    for path in (models.float_bin, models.int8):
        tensors = {t.name: t for t in probe.open(path).index.tensors}
        shared = keras_outputs & set(tensors)
        assert {"relu1/Relu:0", "dw/Relu:0", "add/Add:0", "act/Relu:0", "gap/Mean:0", "fc1/Relu:0"} <= shared
        assert "probs/Softmax:0" in tensors  # the model output, named after the signature, is the softmax
        relu = tensors["relu1/Relu:0"]
        assert relu.layer == "relu1"
        assert ";" in relu.graph_name and relu.graph_name.split(";")[0] == "tiny_1/relu1_1/Relu"
        fc1 = tensors["fc1/Relu:0"]  # FULLY_CONNECTED lists MatMul first: the fused ReLU is what it holds
        assert fc1.op_type == "FULLY_CONNECTED"
    int8 = {t.name: t for t in probe.open(models.int8).index.tensors}
    assert int8["tfl.quantize:0"].layer is None and int8["tfl.quantize:0"].graph_name == "tfl.quantize"


def test_float_conversion_compares_as_the_same(models: TFLiteModels) -> None:
    result = probe.compare(models.keras, models.float_bin, images(4))
    assert result.same, [(t.name, t.status, t.rel_error) for t in result.tensors if t.status != "ok"]
    paired = {t.name for t in result.tensors}
    keras_layers = [layer for layer in probe.open(models.keras).index.layers if layer.name != "image"]
    layer_outputs = {name for layer in keras_layers for name in layer.outputs}
    # the outputs the converter fused into the next layer's op (conv1 + bn1 + relu1 are one CONV_2D) have
    # no tensor of their own; every other layer output pairs
    assert layer_outputs - paired == {"conv1/BiasAdd:0", "bn1/batchnorm/add_1:0", "pw/BiasAdd:0"}
    assert "probs/Softmax:0" in paired


def test_int8_conversion_gives_per_layer_metrics(models: TFLiteModels) -> None:
    result = probe.compare(models.keras, models.int8, images(4))
    by_name = {t.name: t for t in result.tensors}
    for name in ("relu1/Relu:0", "dw/Relu:0", "add/Add:0", "act/Relu:0", "gap/Mean:0", "fc1/Relu:0", "probs/Softmax:0"):
        t = by_name[name]
        assert t.status in ("ok", "differs") and t.rel_error is not None and t.cosine is not None, name
        assert t.rel_error < 0.2 and t.cosine > 0.95, (name, t.rel_error, t.cosine)  # dequantized, not integers
    assert any(t.status == "differs" for t in result.tensors)  # int8 rounding exceeds the float tolerance
    # an int8-input conversion is fed the float model's inputs, quantized
    io = {t.name: t for t in probe.compare(models.keras, models.int8_io, images(4)).tensors}
    assert io["relu1/Relu:0"].rel_error is not None and io["relu1/Relu:0"].rel_error < 0.2


def test_show_and_readers_see_real_values(models: TFLiteModels, tmp_path: Path) -> None:
    archive = tmp_path / "int8.h5"
    probe.open(models.int8).dump(archive, images(2), tensors=[".*"])
    summary = {t.name: t for t in probe.show(archive).tensors}
    relu = summary["relu1/Relu:0"]
    # its real values, and beside them the stored type and integers, as dump's table shows them
    assert relu.dtype == "int8" and relu.stats["min"] >= 0.0 and relu.stats["max"] < 20
    assert relu.stored_range is not None and -128 <= relu.stored_range[0] < relu.stored_range[1] <= 127
    dumped = probe.open(models.int8).dump(tmp_path / "again.h5", images(2), tensors=[".*"])
    again = {s.info.name: s for s in dumped.stored}["relu1/Relu:0"]
    assert (again.dtype, again.stored_range) == ("int8", relu.stored_range)
    assert again.stats["min"] == relu.stats["min"] and again.stats["max"] == relu.stats["max"]
    with open_archive(archive) as file:
        stored = {t.name: t for t in list_tensors(file)}
        tensor = stored["relu1/Relu:0"]
        assert tensor.quantized and tensor.dtype == "float32" and tensor.attrs["dtype"] == "int8"
        node = file[tensor.path]
        raw = node[()]
        scale, zero_point = float(node.attrs["scale"]), int(node.attrs["zero_point"])
        real = (scale * (raw.astype(np.float64) - zero_point)).astype(np.float32)
        np.testing.assert_array_equal(read_slice(node, ()), real)
        np.testing.assert_array_equal(dequantized(raw, node.attrs), real)
        assert dataset_stats(node)["max"] == pytest.approx(float(real.max()))
        assert not stored["image:0"].quantized


def test_per_axis_dequantizing() -> None:
    values = np.array([[[1, 2], [3, 4]]], dtype=np.int8)  # (1, 2, 2), quantized along the last axis
    attrs = {"scale": np.array([0.5, 0.25]), "zero_point": np.array([1, 0]), "quantized_dimension": 2}
    expected = np.array([[[0.0, 0.5], [1.0, 1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(dequantized(values, attrs), expected)
    rows = {"scale": np.array([0.5, 2.0, 4.0]), "zero_point": np.array([0, 0, 1]), "quantized_dimension": 0}
    np.testing.assert_array_equal(
        dequantized(np.array([[2], [2]], dtype=np.int8), rows, slice(1, 3)), np.array([[4.0], [4.0]], np.float32)
    )
    assert dequantized(np.ones(3, np.float32), attrs).dtype == np.float32  # real values pass through


def test_the_samples_are_readable_and_equal_to_the_interpreter(tmp_path: Path) -> None:
    for name in ("cnn_float.tflite", "cnn_int8.tflite"):
        path = SAMPLES / name
        model = probe.open(path)
        archive = tmp_path / f"{name}.h5"
        fed = np.random.default_rng(1).random((2, 28, 28, 1), dtype=np.float32)
        model.dump(archive, fed, tensors=[".*"])
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        interpreter.resize_tensor_input(0, [2, 28, 28, 1])
        interpreter.allocate_tensors()
        interpreter.set_tensor(0, fed)
        interpreter.invoke()
        by_name = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
        for graph_name, (values, _) in stored_integers(archive).items():
            np.testing.assert_array_equal(values, interpreter.get_tensor(by_name[graph_name]), err_msg=graph_name)
    int8 = {t.name: t for t in probe.open(SAMPLES / "cnn_int8.tflite").index.tensors}
    assert int8["conv1/Relu:0"].dtype == "int8" and int8["conv1/Relu:0"].quantization is not None


def test_sample_by_sample_stacks_along_axis_0(models: TFLiteModels) -> None:
    values = probe.open(models.static).run(images(3), tensors=["relu1/Relu:0", "probs/Softmax:0"])
    assert values["relu1/Relu:0"].shape == (3, 16, 16, 8) and values["probs/Softmax:0"].shape == (3, 4)
    single = probe.open(models.static).run(images(3)[1:2], tensors=["probs/Softmax:0"])
    np.testing.assert_array_equal(values["probs/Softmax:0"][1:2], single["probs/Softmax:0"])


def test_executors_share_the_interpreter_whatever_batch_each_ran(models: TFLiteModels) -> None:
    """Executors of one model resize its inputs back and forth (a dynamic batch of 3, then of 1)."""
    model = probe.open(models.float_bin)
    three = model.run(images(3), tensors=["relu1/Relu:0", "probs/Softmax:0"])
    one = model.run(images(3)[2:], tensors=["probs/Softmax:0"])
    again = model.run(images(3), tensors=["relu1/Relu:0", "probs/Softmax:0"])
    np.testing.assert_array_equal(three["probs/Softmax:0"][2:], one["probs/Softmax:0"])
    np.testing.assert_array_equal(three["relu1/Relu:0"], again["relu1/Relu:0"])


def test_check_numerics_names_the_first_op_and_its_inputs(models: TFLiteModels, tmp_path: Path) -> None:
    fed = np.array([[0.1, 0.9, 0.7, 0.6]], dtype=np.float32)
    result = probe.open(models.nan).dump(tmp_path / "nan.h5", fed, check_numerics=True)
    assert result.nonfinite is not None
    info = result.nonfinite.info
    assert info.op_type == "LOG", info
    assert result.nonfinite.nan == 1
    model = probe.open(models.nan)
    (feeding,) = model._traced.op_inputs(info)  # x - 0.5, the listed tensor the LOG read
    assert [name for name, _ in result.nonfinite.inputs] == [feeding.name]
    assert result.nonfinite.inputs[0][1]["min"] == pytest.approx(-0.4)


def test_stats_only_summarizes_real_values(models: TFLiteModels, tmp_path: Path) -> None:
    result = probe.open(models.int8).dump(tmp_path / "stats.h5", images(2), tensors=["relu1/Relu:0"], stats_only=True)
    (stored,) = result.stored
    assert stored.stats["min"] >= 0.0 and stored.stats["max"] < 20  # dequantized, not int8 codes


def test_truncated_or_corrupt_files_get_one_line(models: TFLiteModels, tmp_path: Path) -> None:
    data = models.int8.read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(invoke("list", truncated), 1, "TensorFlow Lite", "truncated or corrupt")
    just_magic = tmp_path / "magic.bin"
    just_magic.write_bytes(data[:8])
    assert_one_line_error(invoke("list", just_magic), 1, "TensorFlow Lite")
    with pytest.raises(ModelLoadError):
        probe.open(truncated)


def test_flex_and_custom_ops_are_refused_by_name(models: TFLiteModels) -> None:
    assert_one_line_error(invoke("list", models.flex), 1, "FlexCumprod", "Flex")
    assert_one_line_error(invoke("dump", models.custom, "-o", models.custom.with_suffix(".h5")), 1, "custom op Asinh")


@pytest.fixture
def no_litert(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``import ai_edge_litert`` fails, as without the extra."""
    for name in [m for m in sys.modules if m.startswith("ai_edge_litert")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    yield


def test_falls_back_to_tf_lite_interpreter(models: TFLiteModels, no_litert: None, tmp_path: Path) -> None:
    assert loader.interpreter_class()[1] == "tf.lite"
    model = probe.open(models.int8)
    assert model.index.extra["interpreter"] == "tf.lite"
    values = model.run(images(2), tensors=["relu1/Relu:0"])["relu1/Relu:0"]
    assert values.dtype == np.int8 and values.shape == (2, 16, 16, 8)


def test_without_any_interpreter_one_line_says_what_to_install(
    models: TFLiteModels, no_litert: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_tensorflow() -> Any:
        raise ImportError("No module named 'tensorflow'")

    monkeypatch.setattr(tfenv, "tf", no_tensorflow)
    with pytest.raises(MissingExtra):
        loader.interpreter_class()
    assert_one_line_error(invoke("list", models.int8), 2, "pip install", "probe-cli[tflite]")


def test_signature_option(models: TFLiteModels) -> None:
    assert probe.open(models.int8, signature="serving_default").index.extra["signature"] == "serving_default"
    assert_one_line_error(invoke("list", models.int8, "--signature", "nope"), 2, "no signature 'nope'")


def test_cli_dump_and_compare_run(models: TFLiteModels, tmp_path: Path) -> None:
    archive = tmp_path / "cli.h5"
    ok(invoke("dump", models.int8, "--samples", "3", "-o", archive))
    assert ok(invoke("show", archive)).stdout
    ok(invoke("compare", models.keras, models.float_bin))


def test_the_list_table_shows_quantization() -> None:
    """probe list of an int8 model: a quantization column, per tensor its scale and zero point."""
    table = ok(invoke("list", SAMPLES / "cnn_int8.tflite")).stdout
    header = next(line for line in table.splitlines() if line.strip().startswith("name") and "op" in line)
    assert header.split()[-1] == "quantization"
    conv = next(line for line in table.splitlines() if line.strip().startswith("conv1/Relu:0"))
    assert "CONV_2D" in conv and "int8" in conv and "scale " in conv and "zero -128" in conv
    assert "quantization" not in ok(invoke("list", SAMPLES / "cnn_float.tflite")).stdout
