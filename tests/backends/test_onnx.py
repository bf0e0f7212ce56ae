"""ONNX models: detection, listing (names, layouts, inserted nodes, Loop bodies), dumps equal to ONNX Runtime's,
compare against the Keras model they were exported from, external data, the missing extra, broken files.

A small Keras model with a depthwise convolution, a residual add, a batch norm with non-trivial statistics and
an 8x8x8 input (H == W == C, so shapes cannot tell NHWC from NCHW) is exported with Keras' own
``model.export(format="onnx")`` once per module; values are checked against ONNX Runtime run directly here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, assert_one_line_error, invoke, list_json, ok, tiny_residual

from probe_cli.archive.reader import list_tensors, open_archive, read_slice
from probe_cli.backends import registry

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

SHAPE = (8, 8, 8)
SAMPLES_FED = 3


@dataclass(frozen=True)
class ONNXModels:
    keras: Path
    onnx: Path
    #: the same model with the ``pw`` layer's kernel x 1.01
    perturbed: Path
    #: the export with its weights in an external data file
    external: Path
    #: the export under an extension that says nothing
    unnamed: Path
    #: a hand-built model with a Loop node
    loop: Path
    inputs: Path


def _model(keras: Any) -> Any:
    model = tiny_residual(keras, SHAPE)
    rng = np.random.default_rng(8)
    for layer in model.layers:  # non-zero biases, which a converter cannot drop
        if layer.get_weights() and layer.name != "bn1":
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.get_weights()])
    model(np.zeros((1, *SHAPE), "float32"))  # Keras' ONNX export refuses a model never called
    return model


def _save(
    path: Path, nodes: list[Any], inputs: list[Any], outputs: list[Any], initializers: tuple[Any, ...] | list[Any] = ()
) -> Path:
    """A hand-built model (opset 17) saved to ``path``."""
    graph = onnx.helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def _loop_model(path: Path) -> Path:
    """``y = x + sum of 3 iterations of (x * 2)``: a Loop whose body's tensors cannot be fetched."""
    h = onnx.helper
    body = h.make_graph(
        [
            h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
            h.make_node("Mul", ["acc_in", "two"], ["doubled"], name="double"),
            h.make_node("Identity", ["doubled"], ["acc_out"], name="carry"),
        ],
        "body",
        [
            h.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
            h.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
            h.make_tensor_value_info("acc_in", onnx.TensorProto.FLOAT, [None, 4]),
        ],
        [
            h.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            h.make_tensor_value_info("acc_out", onnx.TensorProto.FLOAT, [None, 4]),
        ],
        [h.make_tensor("two", onnx.TensorProto.FLOAT, [], [2.0])],
    )
    return _save(
        path,
        [
            h.make_node("Relu", ["x"], ["r"], name="relu"),
            h.make_node("Loop", ["trips", "cond", "r"], ["looped"], name="loop", body=body),
            h.make_node("Add", ["looped", "x"], ["y"], name="add"),
        ],
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])],
        [
            h.make_tensor("trips", onnx.TensorProto.INT64, [], [3]),
            h.make_tensor("cond", onnx.TensorProto.BOOL, [], [True]),
        ],
    )


@pytest.fixture(scope="module")
def models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> ONNXModels:
    out = tmp_path_factory.mktemp("onnx")
    keras.utils.set_random_seed(11)
    model = _model(keras)
    model.save(out / "tiny.keras")
    model.export(str(out / "tiny.onnx"), format="onnx", verbose=False)
    layer = model.get_layer("pw")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 1.01, bias])
    model.export(str(out / "tiny_perturbed.onnx"), format="onnx", verbose=False)
    external_dir = out / "external"
    external_dir.mkdir()
    proto = onnx.load(str(out / "tiny.onnx"))
    onnx.save_model(
        proto,
        str(external_dir / "tiny.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="tiny.weights",
        size_threshold=256,  # the weights; shape constants stay inline, where shape inference reads them
    )
    shutil.copy(out / "tiny.onnx", out / "tiny.bin")
    images = np.random.default_rng(5).random((SAMPLES_FED, *SHAPE), dtype=np.float32)
    np.save(out / "images.npy", images)
    return ONNXModels(
        out / "tiny.keras",
        out / "tiny.onnx",
        out / "tiny_perturbed.onnx",
        external_dir / "tiny.onnx",
        out / "tiny.bin",
        _loop_model(out / "loop.onnx"),
        out / "images.npy",
    )


def _every_output(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime's value of every node output, by ONNX tensor name, marked here independently of probe."""
    proto = onnx.load(str(path))
    names = [o for node in proto.graph.node if node.op_type != "Constant" for o in node.output if o]
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {proto.graph.input[0].name: images})))


def _stored(archive: Path) -> dict[str, tuple[str, np.ndarray]]:
    """probe name -> (graph name, values) of every stored tensor."""
    with open_archive(archive) as file:
        return {
            t.name: (str(t.attrs["graph_name"]), np.asarray(read_slice(file[t.path], ())))
            for t in list_tensors(file)
            if isinstance(file[t.path], h5py.Dataset)
        }


def test_onnx_is_detected_by_content(models: ONNXModels) -> None:
    assert registry.detect_format(models.unnamed) == "onnx"
    assert registry.detect_format(SAMPLES / "cnn.onnx") == "onnx"
    assert registry.detect_format(SAMPLES / "mini_rcnn_frozen.pb") == "graph-def"  # a GraphDef is no ModelProto


def test_list_names_every_node_output_after_its_keras_layer_with_layouts(models: ONNXModels) -> None:
    listed = list_json(models.onnx)
    tensors = {t["name"]: t for t in listed["tensors"]}
    assert [i["name"] for i in listed["inputs"]] == ["image"]
    assert listed["outputs"] == ["probs/Softmax:0"]  # the graph output Identity:0, named through its node
    assert tensors["probs/Softmax:0"]["graph_name"] == "Identity:0"
    conv = tensors["conv1/BiasAdd:0"]  # the Conv took its BiasAdd's name
    assert (conv["op_type"], conv["layer"], conv["layout"]) == ("Conv", "conv1", "NCHW")
    assert conv["graph_name"] == "tiny_1/conv1_1/BiasAdd:0"
    assert tensors["image:0"]["layout"] == "NHWC"  # tracked back from the Transpose feeding the Conv
    for name in ("bn1/batchnorm/add_1:0", "relu1/Relu:0", "add/Add:0", "act/Relu:0"):
        assert tensors[name]["layout"] == "NCHW", name
    assert "layout" not in tensors["fc1/Relu:0"]  # after the Squeeze: nothing to track
    inserted = [t for t in listed["tensors"] if t["context"] == "inserted"]
    assert {t["op_type"] for t in inserted} >= {"Transpose", "Conv", "Squeeze"}  # the depthwise conv is Conv__N
    assert all(t["layer"] is None for t in inserted)
    assert {layer["name"] for layer in listed["layers"]} >= {"image", "conv1", "bn1", "relu1", "dw", "add", "probs"}
    text = ok(invoke("list", models.onnx)).stdout
    assert "layout" in text and "inserted" in text


def test_op_inputs_are_the_producers_of_a_nodes_inputs(models: ONNXModels) -> None:
    traced = registry.open_model(models.onnx)
    add = traced.index.tensor("add/Add:0")
    assert [t.name for t in traced.op_inputs(add)] == ["relu1/Relu:0", "dw/Relu:0"]
    conv = traced.index.tensor("conv1/BiasAdd:0")
    assert [t.op_type for t in traced.op_inputs(conv)] == ["Transpose"]  # weights and bias are not listed


def test_dump_of_every_node_output_equals_onnx_runtime(models: ONNXModels, tmp_path: Path) -> None:
    archive = tmp_path / "all.h5"
    ok(invoke("dump", models.onnx, "--input", models.inputs, "--check-numerics", "--batch-size", "2", "-o", archive))
    direct = _every_output(models.onnx, np.load(models.inputs))
    stored = _stored(archive)
    computed = {graph: value for graph, value in stored.values() if graph in direct}
    assert set(computed) == set(direct), "every node output is dumped"
    for graph, value in computed.items():
        np.testing.assert_allclose(value, direct[graph], rtol=1e-6, atol=1e-6, err_msg=graph)


def test_compare_with_the_keras_model_pairs_its_layer_outputs_and_aligns_layouts(models: ONNXModels) -> None:
    result = invoke("compare", models.keras, models.onnx, "--input", models.inputs, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    compared = {t.get("name_b") or t["name"]: t for t in document["tensors"]}
    layer_outputs = [name for layer in list_json(models.keras)["layers"] for name in layer["outputs"]]
    paired = [name for name in layer_outputs if name in compared]
    assert len(paired) >= 0.9 * len(layer_outputs), sorted(set(layer_outputs) - set(paired))
    assert compared["add/Add:0"]["layout_change"] == "reference transposed NHWC -> NCHW (tracked layout)"
    assert compared["add/Add:0"]["max_abs_error"] < 1e-5


def test_compare_with_a_perturbed_export_finds_the_changed_layer(models: ONNXModels) -> None:
    result = invoke("compare", models.keras, models.perturbed, "--input", models.inputs, "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    first = json.loads(result.stdout)["first_divergence"]
    assert first.startswith("pw/"), first


@pytest.fixture(scope="module")
def folded(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny model as built (its Conv biases zero): tf2onnx folds ``bn1`` into ``conv1``'s Conv, one ONNX
    Conv for both layers; and a copy of the export with that Conv's kernel x 1.01."""
    out = tmp_path_factory.mktemp("folded")
    keras.utils.set_random_seed(11)
    model = tiny_residual(keras, SHAPE)
    model(np.zeros((1, *SHAPE), "float32"))
    model.save(out / "tiny.keras")
    model.export(str(out / "tiny.onnx"), format="onnx", verbose=False)
    proto = onnx.load(str(out / "tiny.onnx"))
    conv = next(node for node in proto.graph.node if node.op_type == "Conv")  # the first: conv1 with bn1
    kernel = next(w for w in proto.graph.initializer if w.name == conv.input[1])
    kernel.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(kernel) * np.float32(1.01), kernel.name))
    onnx.save(proto, str(out / "tiny_conv1_x1.01.onnx"))
    return out / "tiny.keras", out / "tiny.onnx", out / "tiny_conv1_x1.01.onnx"


def test_a_conv_folded_with_its_batch_norm_is_compared_and_a_perturbed_one_named(
    folded: tuple[Path, Path, Path],
) -> None:
    keras_model, exported, perturbed = folded
    same = ok(invoke("compare", keras_model, exported))
    line = "Reference layers: 11 of 11 compared, 1 of them downstream (fused or dropped by the converter)."
    assert same.stdout.splitlines()[-2:] == [line, "Same: all 15 paired tensor(s) within budget (37 unpaired)."]
    coverage = json.loads(ok(invoke("compare", keras_model, exported, "--json")).stdout)["layer_coverage"]
    assert coverage == {"layers": 11, "compared": 11, "downstream": ["conv1"], "not_compared": []}

    result = invoke("compare", keras_model, perturbed, "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    first = next(t for t in document["tensors"] if t["reference"] == document["first_divergence"])
    assert (first["reference"], first["paired_by"], first["op_type"]) == ("bn1/batchnorm/add_1:0", "fused", "Conv")
    assert first["layers"] == ["conv1", "bn1"]
    assert 0.005 < first["rel_error"] < 0.02  # the 1% of the kernel, through the batch norm's scale
    text = invoke("compare", keras_model, perturbed).stdout
    expected = (
        f"First divergence: bn1/batchnorm/add_1:0 = {first['candidate']} (layers conv1 + bn1, fused into one Conv): "
    )
    assert [row for row in text.splitlines() if row.startswith("First divergence")][0].startswith(expected)


def test_external_data_is_read_beside_the_model_and_nothing_is_left_there(models: ONNXModels, tmp_path: Path) -> None:
    archive = tmp_path / "external.h5"
    before = sorted(p.name for p in models.external.parent.iterdir())
    ok(invoke("dump", models.external, "--input", models.inputs, "--layer", ".*", "-o", archive))
    assert sorted(p.name for p in models.external.parent.iterdir()) == before
    direct = _every_output(models.onnx, np.load(models.inputs))
    for graph, value in _stored(archive).values():
        if graph in direct:
            np.testing.assert_allclose(value, direct[graph], rtol=1e-6, atol=1e-6, err_msg=graph)


def test_stats_only_and_shards(models: ONNXModels, tmp_path: Path) -> None:
    stats = tmp_path / "stats.h5"
    ok(invoke("dump", models.onnx, "--input", models.inputs, "--stats-only", "--tensor", "add/Add:0", "-o", stats))
    direct = _every_output(models.onnx, np.load(models.inputs))["tiny_1/add_1/Add:0"]
    with h5py.File(stats) as file:
        group = file["stats/add/Add:0"]
        assert group.attrs["count"] == direct.size
        assert group.attrs["mean"] == pytest.approx(float(direct.mean(dtype=np.float64)), rel=1e-6)
    shard = tmp_path / "shard.h5"
    ok(invoke("dump", models.onnx, "--input", models.inputs, "--tensor", "add/Add:0", "--shard", "1/3", "-o", shard))
    value = _stored(shard)["add/Add:0"][1]
    np.testing.assert_allclose(value, direct[1:2], rtol=1e-6, atol=1e-6)


def test_loop_bodies_are_listed_as_not_fetchable(models: ONNXModels, tmp_path: Path) -> None:
    listed = list_json(models.loop)
    assert [t["name"] for t in listed["tensors"]] == ["x:0", "r:0", "looped:0", "y:0"]
    body = {t["name"]: t for t in listed["unfetchable"]}
    assert set(body) == {"cond_out", "doubled", "acc_out"}
    assert body["doubled"]["context"] == "loop looped/body"
    assert "ONNX Runtime returns values of the main graph only" in body["doubled"]["reason"]
    archive = tmp_path / "loop.h5"
    ok(invoke("dump", models.loop, "--check-numerics", "-o", archive))  # the main graph's tensors only
    x = np.asarray(h5py.File(archive)["inputs/x"])
    np.testing.assert_allclose(_stored(archive)["y:0"][1], np.maximum(x, 0) * 8 + x, rtol=1e-6)


def test_without_the_extra_the_error_names_it(models: ONNXModels, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    result = invoke("list", models.onnx)
    assert_one_line_error(result, 2, "needs onnxruntime", "probe-cli[onnx]")


@pytest.mark.parametrize("cut", [2, 40, 0.5, -20])
def test_a_broken_onnx_file_is_one_error_line_and_nothing_is_written(
    models: ONNXModels, tmp_path: Path, cut: float
) -> None:
    data = models.onnx.read_bytes()
    length = int(len(data) * cut) if isinstance(cut, float) else cut
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[:length])
    archive = tmp_path / "out.h5"
    result = invoke("dump", broken, "-o", archive)
    assert result.exit_code in (1, 2), result.stdout + result.stderr
    assert_one_line_error(result, result.exit_code)
    assert not archive.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx"]


def test_the_readme_compare_of_the_samples() -> None:
    """``probe compare sample_models/cnn.h5 sample_models/cnn_perturbed.onnx`` exits 1 at conv2; the unperturbed
    export passes."""
    result = invoke("compare", SAMPLES / "cnn.h5", SAMPLES / "cnn_perturbed.onnx")
    assert result.exit_code == 1, result.stdout + result.stderr
    # the Conv holds its bias: its value is the BiasAdd's
    assert "First divergence: conv2/BiasAdd:0 = conv2/convolution:0 (op Conv, layer conv2)" in result.stdout
    ok(invoke("compare", SAMPLES / "cnn.h5", SAMPLES / "cnn.onnx"))


def test_check_numerics_names_the_node_where_nan_appears(tmp_path: Path) -> None:
    """``log(x - 0.5)`` is NaN where x < 0.5: the Sub is finite, the Log is the first node with NaN."""
    h = onnx.helper
    model = _save(
        tmp_path / "nan.onnx",
        [
            h.make_node("Sub", ["x", "half"], ["shifted"], name="shift"),
            h.make_node("Log", ["shifted"], ["logged"], name="log"),
            h.make_node("Relu", ["logged"], ["y"], name="relu"),
        ],
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])],
        [h.make_tensor("half", onnx.TensorProto.FLOAT, [], [0.5])],
    )
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.1, 0.7, 0.6]], np.float32))
    result = invoke("dump", model, "--input", inputs, "--check-numerics", "--json", "-o", tmp_path / "nan.h5")
    assert result.exit_code == 3, result.stdout + result.stderr
    found = json.loads(result.stdout)["numerics"]
    assert (found["name"], found["op_type"], found["nan"]) == ("logged:0", "Log", 1)
    assert [i["name"] for i in found["inputs"]] == ["shifted:0"]  # op_inputs: the Sub, not the constant


def test_names_of_a_model_not_converted_from_tensorflow_and_its_inputs_and_outputs_in_order(tmp_path: Path) -> None:
    """PyTorch-style names keep their own (without the leading ``/`` the archive would drop); inputs and
    outputs keep the graph's order, which structural pairing relies on."""
    h = onnx.helper
    model = _save(
        tmp_path / "torchlike.onnx",
        [
            h.make_node("Add", ["b", "a"], ["/head/Add_output_0"], name="/head/Add"),
            h.make_node("Relu", ["/head/Add_output_0"], ["logits"], name="/head/Relu"),
            h.make_node("Identity", ["a"], ["output_1"], name="/passthrough/Identity"),
        ],
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 3]) for n in ("b", "a")],
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 3]) for n in ("logits", "output_1")],
    )
    listed = list_json(model)
    assert [i["name"] for i in listed["inputs"]] == ["b", "a"]
    assert [t["name"] for t in listed["tensors"]] == [
        "b:0",
        "a:0",
        "head/Add_output_0:0",
        "logits:0",
        "passthrough/Identity:0",  # output_1 says nothing of its node: named through it
    ]
    assert listed["outputs"] == ["logits:0", "passthrough/Identity:0"]
    archive = tmp_path / "torchlike.h5"
    ok(invoke("dump", model, "--tensor", ".*", "-o", archive))
    stored = _stored(archive)
    np.testing.assert_allclose(stored["logits:0"][1], np.maximum(stored["head/Add_output_0:0"][1], 0))


@pytest.fixture(scope="module")
def tiny_tflite(models: ONNXModels, tf: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model converted to TensorFlow Lite."""
    from probe_cli.backends import tfenv

    out = tmp_path_factory.mktemp("tiny_tflite")
    saved = out / "saved"
    tfenv.keras().models.load_model(models.keras).export(str(saved), verbose=False)
    flat = out / "tiny.tflite"
    flat.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return flat


@pytest.fixture(scope="module")
def from_tflite(tiny_tflite: Path) -> Path:
    """The tiny model's TensorFlow Lite file converted by tf2onnx to ONNX: fused ``;`` names split again."""
    import tf2onnx

    path = tiny_tflite.with_name("tiny_from_tflite.onnx")
    tf2onnx.convert.from_tflite(str(tiny_tflite), output_path=str(path))
    return path


@pytest.fixture(scope="module")
def nchw_input(tiny_tflite: Path, tf: Any) -> Path:
    """The same with its input taken as NCHW (``tf2onnx --inputs-as-nchw``), as ONNX deployments often do."""
    import tf2onnx

    (given,) = tf.lite.Interpreter(model_path=str(tiny_tflite)).get_input_details()
    path = tiny_tflite.with_name("tiny_nchw.onnx")
    tf2onnx.convert.from_tflite(str(tiny_tflite), inputs_as_nchw=[given["name"]], output_path=str(path))
    return path


def test_an_onnx_model_taking_nchw_images_is_fed_the_reference_inputs_transposed(
    models: ONNXModels, nchw_input: Path
) -> None:
    """8x8x8 images: only the tracked layout tells NHWC from NCHW. The candidate gets the reference's
    arrays transposed, and no warning says the inputs differ."""
    (spec,) = list_json(nchw_input)["inputs"]
    assert spec["shape"] == [None, 8, 8, 8]
    result = invoke("compare", models.keras, nchw_input, "--input", models.inputs, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["warnings"] == []
    compared = {t["reference"]: t for t in document["tensors"]}
    assert compared["probs/Softmax:0"]["status"] == "ok"
    first = next(t for t in document["tensors"] if t["role"] == "input")
    assert first["layout_change"] == "reference transposed NHWC -> NCHW (tracked layout)"
    assert first["max_abs_error"] == 0


def test_an_onnx_file_converted_from_tflite_names_split_fused_ops_after_what_they_compute(
    models: ONNXModels, from_tflite: Path
) -> None:
    """tf2onnx makes a Conv and a Relu of a CONV_2D with a fused ReLU and names the Conv after the fused tensor
    (``relu1/Relu;bn1/batchnorm/add_1;...``): the Conv holds the batch norm's value, the Relu the activation's."""
    tensors = {t["name"]: t for t in list_json(from_tflite)["tensors"]}
    assert tensors["bn1/batchnorm/add_1:0"]["op_type"] == "Conv"
    assert tensors["relu1/Relu:0"]["op_type"] == "Relu" and tensors["relu1/Relu:0"]["context"] is None
    assert tensors["probs/Softmax:0"]["op_type"] == "Softmax"  # the output, named after the signature
    result = invoke("compare", models.keras, from_tflite, "--input", models.inputs, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    compared = {t["reference"]: t for t in json.loads(result.stdout)["tensors"]}
    for name in ("bn1/batchnorm/add_1:0", "relu1/Relu:0", "add/Add:0", "probs/Softmax:0"):
        assert compared[name]["paired_by"] == "name" and compared[name]["rel_error"] < 1e-5, name


def test_stats_only_channels_are_the_channels_of_an_nchw_tensor(models: ONNXModels, tmp_path: Path) -> None:
    """Per-channel statistics of the ONNX export are per channel (axis 1 of NCHW), so they equal the Keras
    model's (channels last) and the two --stats-only archives compare the same; H == W == C here."""
    archives = []
    for model in (models.keras, models.onnx):
        archive = tmp_path / f"{model.suffix[1:]}.stats.h5"
        command = [
            "dump",
            model,
            "--input",
            models.inputs,
            "--stats-only",
            "--channels",
            "--hist-range=-4,4",
            "-o",
            archive,
        ]
        ok(invoke(*command, "--tensor", "add/Add:0"))
        archives.append(archive)
    with h5py.File(archives[0]) as keras_stats, h5py.File(archives[1]) as onnx_stats:
        np.testing.assert_allclose(
            onnx_stats["stats/add/Add:0/channel_mean"][()], keras_stats["stats/add/Add:0/channel_mean"][()], atol=1e-6
        )
    ok(invoke("diff", archives[1], archives[0]))
