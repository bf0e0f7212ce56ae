"""probe's own ONNX schema, the types ONNX Runtime infers and quantized (QDQ) values: checked against the
``onnx`` package on hand-built models, without TensorFlow (but for tf2onnx's conversion of the int8 sample)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SAMPLES, assert_one_line_error, invoke, list_json, ok

from probe_cli.archive.reader import list_tensors, open_archive, read_slice
from probe_cli.backends import registry
from probe_cli.backends.onnx import proto
from probe_cli.core.types import Feed

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
h = onnx.helper
F = onnx.TensorProto.FLOAT


def _saved(graph: Any, path: Path) -> Path:
    """``graph`` as a model of opset 17 at ``path``."""
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return path


def _messages(descriptor: Any) -> dict[str, Any]:
    """Full name -> descriptor of a message and every message nested in it."""
    found = {descriptor.full_name: descriptor}
    for inner in descriptor.nested_types:
        found.update(_messages(inner))
    return found


def _wire(field: Any) -> int:
    return {
        field.TYPE_MESSAGE: 2,
        field.TYPE_STRING: 2,
        field.TYPE_BYTES: 2,
        field.TYPE_FLOAT: 5,
        field.TYPE_DOUBLE: 1,
    }.get(field.type, 0)


def test_every_field_probe_reads_has_the_number_and_wire_type_onnx_gives_it() -> None:
    ours: dict[str, Any] = {}
    for message in proto.ModelProto.DESCRIPTOR.file.message_types_by_name.values():
        ours.update(_messages(message))
    theirs: dict[str, Any] = {}
    for message in onnx.ModelProto.DESCRIPTOR.file.message_types_by_name.values():
        theirs.update(_messages(message))
    checked = 0
    for full, message in ours.items():
        if full == "onnx.TypeProto.Other":  # stands for Sequence, Map, ...: only which one is set is read
            continue
        for field in message.fields:
            real = theirs[full].fields_by_name[field.name]
            assert (field.number, _wire(field), field.is_repeated) == (real.number, _wire(real), real.is_repeated), (
                field.full_name
            )
            if field.type != field.TYPE_BYTES or real.type == field.TYPE_BYTES:  # functions are kept as bytes
                assert field.type in (real.type, field.TYPE_INT32 if real.type == real.TYPE_ENUM else -1), field
            checked += 1
    assert checked > 40


def _rich_model() -> Any:
    """A model with what probe does not parse: a local function, metadata, doc strings, a sequence value."""
    function = h.make_function(
        "local", "Twice", ["x"], ["y"], [h.make_node("Add", ["x", "x"], ["y"])], [h.make_opsetid("", 17)]
    )
    graph = h.make_graph(
        [
            h.make_node("Twice", ["a"], ["b"], domain="local", name="twice", doc_string="doubles"),
            h.make_node("Reshape", ["b", "shape"], ["c"], name="flat"),
            h.make_node("MatMul", ["c", "w"], ["d"], name="dense"),
            h.make_node("SequenceConstruct", ["d", "d"], ["seq"], name="pack"),
        ],
        "rich",
        [h.make_tensor_value_info("a", F, [None, 2, 3])],
        [
            h.make_tensor_value_info("d", F, None),
            h.make_value_info("seq", h.make_sequence_type_proto(h.make_tensor_type_proto(F, None))),
        ],
        [
            h.make_tensor("shape", onnx.TensorProto.INT64, [2], [-1, 6]),
            h.make_tensor("w", F, [6, 1200], np.linspace(-1, 1, 7200, dtype=np.float32)),  # moved out to type
        ],
        doc_string="a graph",
    )
    model = h.make_model(
        graph, functions=[function], opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)]
    )
    h.set_model_props(model, {"author": "someone"})
    return model


def test_a_model_parsed_and_written_again_keeps_what_probe_does_not_read() -> None:
    model = _rich_model()
    again = proto.ModelProto.FromString(model.SerializeToString()).SerializeToString()
    assert onnx.load_from_string(again) == model


def test_types_come_from_onnx_runtime_with_the_weights_left_out(tmp_path: Path) -> None:
    """Nothing but the input is typed in the file: the Reshape's shape needs the value of its shape input
    (kept), the MatMul's the weight's shape (turned into a typed input); a sequence is no tensor to list."""
    path = tmp_path / "rich.onnx"
    onnx.save(_rich_model(), path)
    listed = {t["name"]: t for t in list_json(path)["tensors"]}
    assert {name: (t["dtype"], t["shape"]) for name, t in listed.items()} == {
        "a:0": ("float32", [None, 2, 3]),
        "b:0": ("float32", [None, 2, 3]),
        "c:0": ("float32", [None, 6]),
        "d:0": ("float32", [None, 1200]),
    }
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    np.save(tmp_path / "x.npy", x)
    archive = tmp_path / "rich.h5"
    ok(invoke("dump", path, "--tensor", "d:0", "--input", tmp_path / "x.npy", "-o", archive))
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["d"], {"a": x})[0]
    with open_archive(archive) as file:
        (stored,) = list_tensors(file)
        assert (stored.name, stored.attrs["graph_name"]) == ("d:0", "d")
        np.testing.assert_allclose(read_slice(file[stored.path], ()), expected, rtol=1e-6)


def test_a_model_onnx_runtime_cannot_type_is_listed_untyped_and_its_dump_says_why(tmp_path: Path) -> None:
    graph = h.make_graph(
        [h.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")],
        "custom",
        [h.make_tensor_value_info("x", F, [1, 3])],
        [h.make_tensor_value_info("y", F, None)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)]), path)
    listed = list_json(path)
    assert [(t["name"], t["op_type"], t["shape"]) for t in listed["tensors"]] == [
        ("x:0", "INPUT", [1, 3]),
        ("y:0", "Frobnicate", None),
    ]
    result = invoke("dump", path, "-o", tmp_path / "out.h5")
    assert_one_line_error(result, 1, "ONNX Runtime cannot run", "Frobnicate")
    assert not (tmp_path / "out.h5").exists()


def test_listing_an_onnx_model_does_not_import_the_onnx_package() -> None:
    """``import onnx`` takes longer than a dump of a small model (it loads ml_dtypes)."""
    script = (
        "import sys\n"
        "from probe_cli.cli import main\n"
        f"sys.argv = ['probe', 'list', {str(SAMPLES / 'cnn.onnx')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('onnx', 'ml_dtypes', 'tensorflow') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_sessions_of_two_selections_leave_the_loaded_model_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "rich.onnx"
    onnx.save(_rich_model(), path)
    traced = registry.open_model(path)
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    flat = (x + x).reshape(-1, 6)
    weights = np.linspace(-1, 1, 7200, dtype=np.float32).reshape(6, 1200)
    for name, expected in (("c:0", flat), ("d:0", flat @ weights)):
        (run,) = traced.backend.executors(traced, [traced.index.tensor(name)])
        np.testing.assert_allclose(run([Feed("a", x, "x")])[name], expected, rtol=1e-5)
    assert [value.name for value in traced.loaded.model.graph.output] == ["d", "seq"]


def test_a_quantized_value_records_its_scale_and_zero_point_and_compares_as_real_values(tmp_path: Path) -> None:
    """QDQ form: QuantizeLinear's integer output (and a Reshape of it) carries the node's constant scale and
    zero point, so it is stored with them and compared as real values against the float model."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    scale = h.make_tensor("s", F, [], [0.05])
    zero = h.make_tensor("z", onnx.TensorProto.INT8, [], [3])
    shape = h.make_tensor("shape", onnx.TensorProto.INT64, [2], [-1, 6])
    quantized = h.make_graph(
        [
            h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
            h.make_node("Reshape", ["q", "shape"], ["qr"], name="qr"),
            h.make_node("DequantizeLinear", ["qr", "s", "z"], ["dq"], name="dq"),
            h.make_node("Relu", ["dq"], ["y"], name="relu"),
        ],
        "qdq",
        [h.make_tensor_value_info("x", F, [None, 6])],
        [h.make_tensor_value_info("y", F, None)],
        [scale, zero, shape],
    )
    plain = h.make_graph(
        [h.make_node("Relu", ["x"], ["y"], name="relu")],
        "plain",
        [h.make_tensor_value_info("x", F, [None, 6])],
        [h.make_tensor_value_info("y", F, None)],
    )
    paths = {graph.name: _saved(graph, tmp_path / f"{graph.name}.onnx") for graph in (quantized, plain)}
    listed = {t["name"]: t for t in list_json(paths["qdq"])["tensors"]}
    expected = {"scale": pytest.approx(0.05), "zero_point": 3, "quantized_dimension": 0}
    assert listed["q:0"]["quantization"] == listed["qr:0"]["quantization"] == expected
    assert listed["dq:0"].get("quantization") is None
    result = invoke("compare", paths["plain"], paths["qdq"], "--input", tmp_path / "x.npy", "--json")
    compared = {t["candidate"]: t for t in json.loads(result.stdout)["tensors"]}
    assert compared["q:0"]["paired_by"] == "copy"
    # the quantization error, at most half a step, not the distance between floats and integers
    assert compared["q:0"]["max_abs_error"] <= 0.025 + 1e-6
    assert compared["qr:0"]["max_abs_error"] <= 0.025 + 1e-6


def test_an_int8_tflite_model_converted_to_onnx_pairs_its_quantized_tensors_by_what_they_hold(
    tmp_path: Path,
) -> None:
    """tf2onnx names a QuantizeLinear after the fused op it quantizes (``conv2/Relu;conv2/convolution``): it
    holds the ReLU's value, quantized like TFLite's tensor, so it is ``conv2/Relu:0``, not the convolution."""
    tf2onnx = pytest.importorskip("tf2onnx")
    path = tmp_path / "cnn_int8.onnx"
    tf2onnx.convert.from_tflite(str(SAMPLES / "cnn_int8.tflite"), output_path=str(path))
    tensors = {t["name"]: t for t in list_json(path)["tensors"]}
    assert tensors["conv2/Relu:0"]["op_type"] == "QuantizeLinear"
    assert tensors["conv2/Relu:0"]["quantization"]["zero_point"] == -128
    assert "conv2/convolution:0" not in tensors
    ok(invoke("compare", SAMPLES / "cnn_int8.tflite", path))
    ok(invoke("compare", SAMPLES / "cnn.h5", path, "--max-error", "0.05"))


def test_a_copy_through_the_converter_s_cast_is_the_same_values_in_another_dtype(tmp_path: Path) -> None:
    """tf2onnx casts int32 tokens before a comparison: the Cast pairs as a copy of the input, and equal
    values in another dtype are no difference (a tensor paired by name still must keep its dtype)."""
    ints = onnx.TensorProto.INT32
    reference = h.make_graph(
        [h.make_node("Neg", ["x"], ["y"], name="neg")],
        "reference",
        [h.make_tensor_value_info("x", ints, [None, 4])],
        [h.make_tensor_value_info("y", ints, None)],
    )
    candidate = h.make_graph(
        [
            h.make_node("Cast", ["x"], ["c"], to=F, name="cast__3"),
            h.make_node("Cast", ["c"], ["d"], to=ints, name="cast__4"),
            h.make_node("Neg", ["d"], ["y"], name="neg"),
        ],
        "candidate",
        [h.make_tensor_value_info("x", ints, [None, 4])],
        [h.make_tensor_value_info("y", ints, None)],
    )
    for graph in (reference, candidate):
        _saved(graph, tmp_path / f"{graph.name}.onnx")
    np.save(tmp_path / "x.npy", np.array([[1, -2, 3, 40]], np.int32))
    result = invoke(
        "compare", tmp_path / "reference.onnx", tmp_path / "candidate.onnx", "--input", tmp_path / "x.npy", "--json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    cast = next(t for t in json.loads(result.stdout)["tensors"] if t["candidate"] == "c:0")
    assert (cast["paired_by"], cast["status"], cast["dtype_a"], cast["dtype_b"]) == ("copy", "ok", "float32", "int32")
    assert cast["layout_change"] == "reference cast int32 -> float32"


def test_what_the_file_declares_in_full_stands_and_a_zero_point_fed_at_run_time_quantizes_nothing(
    tmp_path: Path,
) -> None:
    """ONNX Runtime reports a scalar and an unknown rank alike, so a declared scalar keeps its shape; a
    QuantizeLinear whose zero point is a graph input has no constant quantization to record."""
    graph = h.make_graph(
        [
            h.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="sum"),
            h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
        ],
        "declared",
        [h.make_tensor_value_info("x", F, [2, 3]), h.make_tensor_value_info("z", onnx.TensorProto.INT8, [])],
        [h.make_tensor_value_info("total", F, []), h.make_tensor_value_info("q", onnx.TensorProto.INT8, [2, 3])],
        [h.make_tensor("s", F, [], [0.5])],
    )
    path = tmp_path / "declared.onnx"
    _saved(graph, path)
    listed = {t["name"]: t for t in list_json(path)["tensors"]}
    assert listed["total:0"]["shape"] == []
    assert listed["q:0"].get("quantization") is None
