"""probe's own ONNX schema and the types ONNX Runtime infers: checked against the ``onnx`` package, without
TensorFlow. Hand-built models; values are ONNX Runtime's, run directly here."""

from __future__ import annotations

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
    assert [value.name for value in traced.function.model.graph.output] == ["d", "seq"]
