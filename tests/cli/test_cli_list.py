"""``probe list``: the JSON document, the names, ``--match`` and ``--layers``, plain output."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest
from conftest import ANSI, RCNN, SAMPLES, ExtraModels, Samples, assert_one_line_error, invoke, list_json, ok

MODELS = ["cnn", "cnn_keras", "multi_io", "mini_rcnn", "nested"]


@pytest.mark.parametrize("name", MODELS)
def test_json_keys(index_of: Callable[[str], dict[str, Any]], name: str) -> None:
    doc = index_of(name)
    assert {"inputs", "layers", "tensors"} <= set(doc)
    assert doc["inputs"] and doc["layers"] and doc["tensors"]
    for spec in doc["inputs"]:
        assert {"name", "dtype", "shape"} <= set(spec)
        assert isinstance(spec["name"], str) and isinstance(spec["dtype"], str)
        assert isinstance(spec["shape"], list)
        assert all(d is None or isinstance(d, int) for d in spec["shape"])
    for layer in doc["layers"]:
        assert {"name", "class_name", "outputs"} <= set(layer)
        assert isinstance(layer["outputs"], list)
    tensor_names = {t["name"] for t in doc["tensors"]}
    layer_names = {layer["name"] for layer in doc["layers"]}
    for tensor in doc["tensors"]:
        assert {"name", "op_type", "dtype", "shape", "layer"} <= set(tensor)
        assert tensor["shape"] is None or all(d is None or isinstance(d, int) for d in tensor["shape"])
        assert tensor["layer"] is None or tensor["layer"] in layer_names, tensor
    for layer in doc["layers"]:
        assert set(layer["outputs"]) <= tensor_names, layer
    assert len(tensor_names) == len(doc["tensors"]), "tensor names must be unique"


def test_json_values_cnn(index_of: Callable[[str], dict[str, Any]], reference_models: dict[str, Any]) -> None:
    doc = index_of("cnn")
    assert doc["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 28, 28, 1], **_extra(doc)}]
    model = reference_models["cnn"]
    assert [layer["name"] for layer in doc["layers"]] == ["image"] + [layer.name for layer in model.layers]
    conv1 = next(layer for layer in doc["layers"] if layer["name"] == "conv1")
    assert conv1["class_name"] == "Conv2D"
    assert conv1["outputs"] == ["conv1/Relu:0"]
    by_name = {t["name"]: t for t in doc["tensors"]}
    relu = by_name["conv1/Relu:0"]
    assert relu["op_type"] == "Relu" and relu["dtype"] == "float32" and relu["layer"] == "conv1"
    assert relu["shape"] == [None, 26, 26, 8], "unknown dims are null"
    assert by_name["image:0"]["op_type"] == "Placeholder"


def _extra(doc: dict[str, Any]) -> dict[str, Any]:
    """Keys of the input entry beyond the required three (e.g. graph_name), taken as they are."""
    return {k: v for k, v in doc["inputs"][0].items() if k not in ("name", "dtype", "shape")}


@pytest.mark.parametrize("name", MODELS)
def test_names_have_no_scope_prefix_or_suffixes(
    index_of: Callable[[str], dict[str, Any]], reference_models: dict[str, Any], name: str
) -> None:
    doc = index_of(name)
    model_scope = {"cnn": "cnn", "cnn_keras": "cnn", "multi_io": "multi_io", "mini_rcnn": "mini_rcnn"}.get(
        name, "outer"
    )
    layer_names = {layer["name"] for layer in doc["layers"]}
    for tensor in doc["tensors"]:
        first = tensor["name"].split("/")[0].split(":")[0]
        assert not tensor["name"].startswith(model_scope + "_"), tensor["name"]
        assert not re.match(rf"{re.escape(model_scope)}(_\d+)?/", tensor["name"]), tensor["name"]
        if tensor["layer"] is not None:
            top = tensor["layer"].split("/")[0]
            assert first == top, f"{tensor['name']} does not begin with its layer {tensor['layer']}"
            assert top in layer_names
            # the traced name of the layer scope (conv1_1/...) must not leak into the probe name
            assert not tensor["name"].startswith(f"{top}_1/"), tensor["name"]
        # the raw traced name stays available
        assert tensor.get("graph_name"), tensor


def test_layer_names_match_keras_summary(
    index_of: Callable[[str], dict[str, Any]], reference_models: dict[str, Any]
) -> None:
    for name in ("cnn", "multi_io", "mini_rcnn"):
        listed = {layer["name"] for layer in index_of(name)["layers"]}
        assert {layer.name for layer in reference_models[name].layers} <= listed


def test_custom_layer_ops_are_listed(index_of: Callable[[str], dict[str, Any]]) -> None:
    tensors = index_of("mini_rcnn")["tensors"]
    nms = [t for t in tensors if t["op_type"].startswith("NonMaxSuppression")]
    assert len(nms) == 2, "one NMS per image of the fixed batch"
    for t in nms:
        assert t["layer"] == "ROI"
        assert re.fullmatch(r"ROI/.*NonMaxSuppressionV\d:0", t["name"]), t["name"]
        assert "mini_rcnn" not in t["name"] and "mini_rcnn" in t["graph_name"]


def test_nested_and_shared_layer_names(index_of: Callable[[str], dict[str, Any]]) -> None:
    doc = index_of("nested")
    names = [t["name"] for t in doc["tensors"]]
    assert any(n.startswith("inner/d1/") for n in names), names
    assert any(n.startswith("inner/d2/") for n in names), names
    layers = {t["layer"] for t in doc["tensors"]}
    assert "inner/d1" in layers
    shared = [n for n in names if n.startswith("shared/") and n.endswith("/MatMul:0")]
    assert len(shared) == 2, f"each call of the shared layer has its own tensors: {shared}"
    assert all(t["layer"] == "shared" for t in doc["tensors"] if t["name"] in shared)


def test_nested_names_same_for_h5_and_keras(index_of: Callable[[str], dict[str, Any]]) -> None:
    keras_names = [t["name"] for t in index_of("nested")["tensors"]]
    h5_names = [t["name"] for t in index_of("nested_h5")["tensors"]]
    assert keras_names == h5_names


def test_cnn_names_same_for_h5_and_keras(index_of: Callable[[str], dict[str, Any]]) -> None:
    assert [t["name"] for t in index_of("cnn")["tensors"]] == [t["name"] for t in index_of("cnn_keras")["tensors"]]


@pytest.mark.parametrize("name", ["cnn", "mini_rcnn"])
def test_json_stable_across_runs(index_of: Callable[[str], dict[str, Any]], samples: Samples, name: str) -> None:
    """A second trace in the same process (Keras' name counters have moved on) gives the same names."""
    first = index_of(name)
    second = list_json(*({"cnn": (samples.cnn_h5,), "mini_rcnn": RCNN}[name]))
    assert [t["name"] for t in first["tensors"]] == [t["name"] for t in second["tensors"]]
    assert first["layers"] == second["layers"]
    assert first["inputs"] == second["inputs"]


@pytest.mark.parametrize("name", ["cnn", "multi_io", "mini_rcnn", "nested"])
def test_every_listed_name_is_dumpable_under_that_name(
    index_of: Callable[[str], dict[str, Any]],
    samples: Samples,
    extra_models: Any,
    out_dir: Path,
    name: str,
) -> None:
    doc = index_of(name)
    model_args = {
        "cnn": (samples.cnn_h5,),
        "multi_io": (samples.multi_io_h5,),
        "mini_rcnn": RCNN,
        "nested": (extra_models.nested_keras,),
    }[name]
    args: list[str] = []
    for tensor in doc["tensors"]:
        args += ["-t", re.escape(tensor["name"])]
    archive = out_dir / "all.h5"
    ok(invoke("dump", *model_args, *args, "-o", archive))
    with h5py.File(archive, "r") as f:
        for tensor in doc["tensors"]:
            ds = f["tensors/" + tensor["name"]]
            assert ds.attrs["name"] == tensor["name"]
            assert ds.attrs["op_type"] == tensor["op_type"]
            if tensor["shape"] is not None:
                assert len(ds.shape) == len(tensor["shape"])
                assert all(d is None or d == g for d, g in zip(tensor["shape"], ds.shape)), tensor


@pytest.mark.parametrize(
    "patterns",
    [
        ["conv1/.*"],
        ["conv1/Relu"],  # an op name, without :0
        [".*Relu:0", "probs/.*"],
        [".*Mean.*"],
    ],
)
def test_match_equals_dump_selection(samples: Samples, patterns: list[str]) -> None:
    match_args = [a for p in patterns for a in ("--match", p)]
    listed = [t["name"] for t in list_json(samples.cnn_h5, *match_args)["tensors"]]
    tensor_args = [a for p in patterns for a in ("-t", p)]
    planned = json.loads(ok(invoke("dump", samples.cnn_h5, *tensor_args, "--dry-run", "--json")).stdout)
    assert listed == [t["name"] for t in planned["tensors"]]
    assert listed, patterns


def test_match_nothing_fails_like_dump(samples: Samples) -> None:
    """Same exit code and hint as dump's, under the option the user typed."""
    listed = assert_one_line_error(invoke("list", samples.cnn_h5, "--match", "Relu"), 2, ".*Relu.*")
    dumped = assert_one_line_error(invoke("dump", samples.cnn_h5, "-t", "Relu", "--dry-run"), 2, ".*Relu.*")
    assert listed.startswith("Error: --match 'Relu' matches no tensor")
    assert dumped.startswith("Error: --tensor 'Relu' matches no tensor")
    layers = assert_one_line_error(invoke("list", samples.cnn_h5, "--layers", "--match", "conv"), 2)
    assert layers.startswith("Error: --match 'conv' matches no layer (") and "conv1" in layers


def test_match_op_name_selects_tensor(samples: Samples) -> None:
    doc = list_json(samples.cnn_h5, "--match", "conv1/Relu")
    assert [t["name"] for t in doc["tensors"]] == ["conv1/Relu:0"]


def test_match_shows_only_the_layers_of_the_selected_tensors(samples: Samples) -> None:
    """A search in a large model is not buried under every layer: the layers table keeps the owners."""
    doc = list_json(samples.cnn_h5, "--match", "conv2/.*")
    assert {t["layer"] for t in doc["tensors"]} == {"conv2"}
    assert [layer["name"] for layer in doc["layers"]] == ["conv2"]
    plain = ok(invoke("list", samples.cnn_h5, "--match", "conv2/.*")).stdout
    layers_table = plain.split("Layers", 1)[1].split("Tensors", 1)[0]
    assert "conv2" in layers_table and "conv1" not in layers_table and "probs" not in layers_table


def test_match_keeps_a_nested_model_whose_output_is_selected() -> None:
    """The nested Sequential ``inner`` owns no tensor itself; its output (inner/d2's) keeps it listed."""
    doc = list_json(SAMPLES / "nested_shared.h5", "--match", "inner/d2/.*")
    assert [layer["name"] for layer in doc["layers"]] == ["inner", "inner/d2"]


@pytest.mark.parametrize(
    ("model", "names"),
    [
        pytest.param(  # a nested Sequential and a layer called twice
            ("nested_shared.h5",),
            ["a", "b", "inner", "inner/d1", "inner/d2", "shared", "merge", "head"],
            id="nested_shared.h5",
        ),
        pytest.param(  # a custom layer's sublayers; Dropout: a pass-through
            ("subclassed.keras", "--custom-objects", str(SAMPLES / "subclassed_model.py")),
            ["features", "stem", "block", "block/hidden", "block/proj", "dropout", "head"],
            id="subclassed.keras",
        ),
        pytest.param(("lstm.h5",), ["tokens", "embed", "lstm", "lstm/lstm_cell", "probs"], id="lstm.h5"),
        # a graph exported from Keras: the input placeholder, then the layers its scopes name
        pytest.param(
            ("mini_rcnn_frozen.pb",),
            ["image", "conv1", "conv2", "conv3", "rpn_bbox_conv", "rpn_bbox", "rpn_class_conv", "rpn_class", "ROI"],
            id="mini_rcnn_frozen.pb",
        ),
    ],
)
def test_match_everything_keeps_every_layer(model: tuple[str, ...], names: list[str]) -> None:
    """The layers the sample builders (make_models.py, subclassed_model.py) create, in order, each entry
    as the unfiltered listing has it."""
    path, *options = model
    layers = list_json(SAMPLES / path, *options, "--match", ".*")["layers"]
    assert [layer["name"] for layer in layers] == names
    assert layers == list_json(SAMPLES / path, *options)["layers"]


def test_match_in_a_tf_graph_prints_no_empty_layers_table() -> None:
    """A frozen graph's ops outside the model's layers (the outputs' Identity ops) belong to no layer:
    the selection has none, and no empty table is printed."""
    assert list_json(SAMPLES / "mini_rcnn_frozen.pb", "--match", "Identity.*")["layers"] == []
    plain = ok(invoke("list", SAMPLES / "mini_rcnn_frozen.pb", "--match", "Identity.*")).stdout
    assert "Layers" not in plain and "Identity_1:0" in plain


def test_layers_view_plain(samples: Samples) -> None:
    result = ok(invoke("list", samples.cnn_h5, "--layers"))
    assert "Layers" in result.stdout and "conv1" in result.stdout
    assert "Tensors" not in result.stdout
    assert "conv1/convolution:0" not in result.stdout


def test_layers_match(samples: Samples) -> None:
    doc = list_json(samples.cnn_h5, "--layers", "--match", "conv.*")
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2"]
    plain = ok(invoke("list", samples.cnn_h5, "--layers", "--match", "conv.*")).stdout
    assert "conv1" in plain and "conv2" in plain and "probs" not in plain


def test_plain_output_when_piped(samples: Samples, index_of: Callable[[str], dict[str, Any]]) -> None:
    result = ok(invoke("list", samples.cnn_h5))
    assert not ANSI.search(result.stdout)
    for box in "│┃━─┏┗":
        assert box not in result.stdout
    for tensor in index_of("cnn")["tensors"]:
        assert tensor["name"] in result.stdout
    for section in ("Inputs", "Layers", "Tensors"):
        assert section in result.stdout
    assert result.stderr == ""


def test_list_multi_io_inputs(index_of: Callable[[str], dict[str, Any]]) -> None:
    inputs = {spec["name"]: spec for spec in index_of("multi_io")["inputs"]}
    assert inputs["image"]["dtype"] == "float32" and inputs["image"]["shape"] == [None, 32, 32, 3]
    assert inputs["tokens"]["dtype"] == "int32" and inputs["tokens"]["shape"] == [None, 12]


@pytest.fixture
def scratch_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the temporary link Keras is given goes: probe makes exactly one there, and it is gone
    once probe is done."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def recorded(*args: Any, **kwargs: Any) -> Any:
        directory = real(*args, **kwargs)
        made.append(directory.name)
        return directory

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recorded)
    yield scratch
    assert [Path(name).parent for name in made] == [scratch]
    assert Path(made[0]).name.startswith("probe-model-")
    assert list(scratch.iterdir()) == []  # no link left behind


@pytest.mark.parametrize(
    ("source", "name"),
    [("cnn", "model.bin"), ("cnn", "model"), ("cnn_keras", "model.dat"), ("cnn_keras", "model.h5")],
    ids=["h5-as-bin", "h5-without-extension", "keras-as-dat", "keras-as-h5"],
)
def test_keras_model_is_read_by_content_whatever_its_extension(
    tmp_path: Path,
    samples: Samples,
    index_of: Callable[[str], dict[str, Any]],
    scratch_tempdir: Path,
    source: str,
    name: str,
) -> None:
    """Keras picks its loader by extension; probe by content, as the README says."""
    renamed = tmp_path / name
    renamed.write_bytes((samples.cnn_h5 if source == "cnn" else samples.cnn_keras).read_bytes())
    listed = list_json(renamed)
    assert listed.pop("model") == str(renamed)
    assert listed == {key: value for key, value in index_of(source).items() if key != "model"}


def test_renamed_model_failing_to_load_is_named_as_given(
    tmp_path: Path, extra_models: ExtraModels, scratch_tempdir: Path
) -> None:
    """A model under another extension that Keras refuses (a Lambda holding code, without
    --unsafe): the usual one-line error, never naming the temporary link, and the link is gone."""
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(extra_models.lambda_h5.read_bytes())
    line = assert_one_line_error(invoke("list", renamed), 2, str(renamed), "--unsafe")
    assert "probe-model" not in line
