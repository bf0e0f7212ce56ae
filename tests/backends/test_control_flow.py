"""Tensors inside loop bodies and branches: listed under stable names, captured once per execution.

Small models are built in a temporary directory: a custom layer running NMS per
image inside ``tf.map_fn``, an LSTM followed by a ``tf.cond`` gate and a nested
``map_fn``. Values are compared with the op computed directly, or with Keras.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import close, import_file

from probe_cli.core.errors import RunError
from probe_cli.core.types import Feed

#: The NMS settings of the ``MapNms`` layer, written into its source and used by ``direct_nms``.
MAX_BOXES = 4
IOU_THRESHOLD = 0.5

LAYERS = f"""\
import keras
import tensorflow as tf

MAX_BOXES = {MAX_BOXES}
IOU_THRESHOLD = {IOU_THRESHOLD}


@keras.saving.register_keras_serializable(package="probe_cf_tests")
class MapNms(keras.layers.Layer):
    \"\"\"NMS per image over the batch, in a tf.map_fn.\"\"\"

    def call(self, x):
        def one(args):
            boxes, scores = args
            keep = tf.image.non_max_suppression(boxes, scores, MAX_BOXES, iou_threshold=IOU_THRESHOLD)
            return tf.pad(keep, [[0, MAX_BOXES - tf.shape(keep)[0]]], constant_values=-1)

        return tf.map_fn(one, (x[..., :4], x[..., 4]), fn_output_signature=tf.int32)


@keras.saving.register_keras_serializable(package="probe_cf_tests")
class Gate(keras.layers.Layer):
    \"\"\"Doubles a positive-sum input, negates any other.\"\"\"

    def call(self, x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: -x)


@keras.saving.register_keras_serializable(package="probe_cf_tests")
class Nested(keras.layers.Layer):
    \"\"\"A map_fn inside a map_fn: 2 * x + 1 elementwise.\"\"\"

    def call(self, x):
        return tf.map_fn(lambda row: tf.map_fn(lambda v: v * 2.0 + 1.0, row), x)
"""

SEQUENCE = 5
BATCH = 3


@dataclasses.dataclass(frozen=True)
class Models:
    layers: Path
    nms: Path
    lstm: Path
    gate: Path


@pytest.fixture(scope="module")
def models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("control_flow")
    layers_py = root / "cf_layers.py"
    layers_py.write_text(LAYERS)
    module = import_file(layers_py, "probe_cf_layers")

    keras.utils.set_random_seed(7)
    dets = keras.Input((6, 5), batch_size=BATCH, name="dets")
    keras.Model(dets, module.MapNms(name="ROI")(dets)).save(root / "nms.keras")

    seq = keras.Input((SEQUENCE, 3), name="seq")
    hidden = keras.layers.LSTM(4, return_sequences=True, name="lstm")(seq)
    keras.Model(seq, module.Nested(name="nested")(hidden)).save(root / "lstm.keras")

    x = keras.Input((2, 3), name="x")
    keras.Model(x, keras.layers.Dense(3, name="dense")(module.Gate(name="gate")(x))).save(root / "gate.keras")
    return Models(layers_py, root / "nms.keras", root / "lstm.keras", root / "gate.keras")


def _trace(path: Path, layers: Path) -> Any:
    from probe_cli.backends.base import OpenOptions
    from probe_cli.backends.registry import open_model

    return open_model(path, OpenOptions(custom_objects=(layers,)))


def capture(traced: Any, infos: list[Any], feeds: list[Feed]) -> dict[str, Any]:
    """One execution: every value of each tensor in ``infos`` (by probe name), with its iteration."""
    from probe_cli.backends.keras.capture import Capturer

    return Capturer(traced, infos)(feeds)


@pytest.fixture(scope="module")
def nms(models: Models) -> Any:
    return _trace(models.nms, models.layers)


@pytest.fixture(scope="module")
def lstm(models: Models) -> Any:
    return _trace(models.lstm, models.layers)


@pytest.fixture(scope="module")
def gate(models: Models) -> Any:
    return _trace(models.gate, models.layers)


@pytest.fixture(scope="module")
def lstm_keras(models: Models, keras: Any) -> Any:
    """The LSTM model loaded with Keras (its custom layer was registered by ``models``)."""
    return keras.models.load_model(models.lstm, compile=False)


@pytest.fixture(scope="module")
def lstm_hidden(lstm_keras: Any, keras: Any) -> Any:
    """Keras' own per-step LSTM outputs (the layer has return_sequences=True), as a sub-model."""
    return keras.Model(lstm_keras.inputs, lstm_keras.get_layer("lstm").output)


def lstm_by_numpy(layer: Any, seq: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The LSTM cell recomputed with numpy from the layer's weights, starting from zero state. Per time
    step: the gate pre-activations ``z = x W + h U + b``, the new carry ``c`` and the output ``h``."""
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in layer.get_weights())

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    h = c = np.zeros((len(seq), recurrent.shape[0]))
    steps = []
    for t in range(seq.shape[1]):
        z = seq[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=-1)  # Keras' gate order
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        steps.append({"z": z, "c": c, "h": h})
    return steps


def _detections(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 1, (BATCH, 6, 2))
    size = rng.uniform(0.2, 0.6, (BATCH, 6, 2))
    scores = rng.uniform(0, 1, (BATCH, 6, 1))
    return np.concatenate([corner, corner + size, scores], axis=-1).astype("float32")


def direct_nms(boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    """``MapNms``'s op run directly on each image's boxes ``(n, 4)`` and scores ``(n,)``, unpadded."""
    import tensorflow as tf

    return [
        tf.image.non_max_suppression(b, s, MAX_BOXES, iou_threshold=IOU_THRESHOLD).numpy()
        for b, s in zip(boxes, scores, strict=True)
    ]


NMS_OP = "ROI/map/while/body/non_max_suppression/NonMaxSuppressionV3:0"


def test_nms_inside_map_fn_is_listed(nms: Any) -> None:
    info = nms.index.tensor(NMS_OP)
    assert info.op_type == "NonMaxSuppressionV3"
    assert info.layer == "ROI"
    assert info.context == "loop ROI/map/while/body"
    assert info.dtype == "int32"
    # listed right before the outputs of the While op that runs it, cond graph first
    names = [t.name for t in nms.index.tensors]
    assert names.index("ROI/map/while/cond/Less:0") < names.index(NMS_OP) < names.index("ROI/map/while:0")
    # top-level tensors keep no context; every listed name is unique
    assert nms.index.tensor("ROI/map/while:0").context is None
    assert len(names) == len(set(names))


def test_body_tensors_are_selected_by_the_same_patterns(nms: Any) -> None:
    from probe_cli.core.resolve import resolve

    assert [t.name for t in resolve(nms.index, ["ROI/.*NonMaxSuppressionV3"])] == [NMS_OP]


def test_names_identical_in_two_traces(models: Models, nms: Any) -> None:
    again = _trace(models.nms, models.layers)
    assert [(t.name, t.graph_name, t.context) for t in again.index.tensors] == [
        (t.name, t.graph_name, t.context) for t in nms.index.tensors
    ]


def test_nms_captured_once_per_image_equal_to_direct_nms(nms: Any) -> None:

    dets = _detections()
    output = nms.index.outputs[0]
    values = capture(nms, [nms.index.tensor(NMS_OP), nms.index.tensor(output)], [Feed("dets", dets, "test")])
    runs = values[NMS_OP]
    assert [run.iteration for run in runs] == list(range(BATCH))
    assert [run.path for run in runs] == [(i,) for i in range(BATCH)]
    direct = direct_nms(dets[..., :4], dets[..., 4])
    for run, keep in zip(runs, direct):
        np.testing.assert_array_equal(run.value, keep)
    # the top-level output in the same request: one value, the direct NMS of each image padded with -1
    [top] = values[output]
    assert top.path == () and top.iteration == 0
    padded = [np.pad(keep, (0, MAX_BOXES - len(keep)), constant_values=-1) for keep in direct]
    np.testing.assert_array_equal(top.value, np.stack(padded))


def test_a_mixed_request_is_one_execution(
    nms: Any, models: Models, keras: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Top-level tensors asked for with body tensors come from the re-traced function's own
    execution: no second, pruned execution is built, and the values are the Runner's and Keras'."""
    import probe_cli.backends.keras.capture as capture_module
    from probe_cli.backends.tfgraph import Runner

    dets = _detections()
    feeds = [Feed("dets", dets, "test")]
    top = [t for t in nms.index.tensors if t.context is None and t.op_type != "Placeholder"]
    pruned = Runner(nms, top)(feeds)

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a second execution was built")

    monkeypatch.setattr(capture_module, "Runner", refuse)
    values = capture(nms, [*top, nms.index.tensor(NMS_OP)], feeds)
    assert len(values[NMS_OP]) == BATCH
    for info in top:
        [run] = values[info.name]
        np.testing.assert_array_equal(run.value, pruned[info.name], err_msg=info.name)
    # the boxes and scores the loop runs over, captured in the same request, are the fed ones, and each
    # image's NMS equals the op run directly on them
    boxes, scores = (values[name][0].value for name in ("ROI/strided_slice:0", "ROI/strided_slice_1:0"))
    np.testing.assert_array_equal(boxes, dets[..., :4])
    np.testing.assert_array_equal(scores, dets[..., 4])
    for run, keep in zip(values[NMS_OP], direct_nms(boxes, scores), strict=True):
        np.testing.assert_array_equal(run.value, keep)
    [output] = nms.index.outputs
    expected = keras.models.load_model(models.nms, compile=False).predict(dets, verbose=0)
    np.testing.assert_array_equal(values[output][0].value, expected)


LSTM_GATES = "lstm/while/body/lstm_cell/call_1/BiasAdd:0"


def test_lstm_body_listed_and_captured_once_per_timestep(lstm: Any, lstm_keras: Any, lstm_hidden: Any) -> None:

    body = [t for t in lstm.index.tensors if t.context == "loop lstm/while/body"]
    assert body and {t.layer for t in body} <= {"lstm", "lstm/lstm_cell"}
    cell = [t for t in body if t.layer == "lstm/lstm_cell"]
    assert cell and all(t.name.startswith("lstm/while/body/lstm_cell/") for t in cell)
    # the cell's outputs (h, and the carry c) are the layer's listed outputs
    [cell_layer] = [layer for layer in lstm.index.layers if layer.name == "lstm/lstm_cell"]
    assert cell_layer.outputs and set(cell_layer.outputs) <= {t.name for t in cell}
    h, c = cell_layer.outputs

    seq = np.random.default_rng(1).uniform(-1, 1, (2, SEQUENCE, 3)).astype("float32")
    [lstm_out] = next(layer for layer in lstm.index.layers if layer.name == "lstm").outputs
    wanted = [lstm.index.tensor(name) for name in (LSTM_GATES, c, h, lstm_out)]
    values = capture(lstm, wanted, [Feed("seq", seq, "test")])
    for name in (LSTM_GATES, c, h):
        assert [run.iteration for run in values[name]] == list(range(SEQUENCE)), name
    # Keras' own per-step outputs (the layer has return_sequences=True) ...
    layer = lstm_keras.get_layer("lstm")
    sequence = np.asarray(lstm_hidden(seq))
    [top] = values[lstm_out]
    close(top.value, sequence)
    # ... and the cell redone with numpy from the layer's weights, step by step
    for t, step in enumerate(lstm_by_numpy(layer, seq)):
        close(values[h][t].value, sequence[:, t])
        close(values[h][t].value, step["h"])
        close(values[c][t].value, step["c"])
        close(values[LSTM_GATES][t].value, step["z"])


def test_nested_loops_ordered_by_outer_then_inner_counter(lstm: Any, lstm_keras: Any, lstm_hidden: Any) -> None:

    inner = "nested/map/while/body/map/while/body/"
    names = {"element": inner + "TensorArrayV2Read/TensorListGetItem:0", "mul": inner + "mul:0", "add": inner + "add:0"}
    for name in names.values():
        assert lstm.index.tensor(name).context == "loop nested/map/while/body/map/while/body"
    seq = np.random.default_rng(2).uniform(-1, 1, (2, SEQUENCE, 3)).astype("float32")
    [output] = lstm.index.outputs
    wanted = [lstm.index.tensor(name) for name in (*names.values(), output)]
    values = capture(lstm, wanted, [Feed("seq", seq, "test")])
    # outer loop over the batch (2), inner loop over the time steps; each step sees the LSTM's output
    # at (b, t), as Keras computes it, and maps it to 2 * v + 1
    hidden = np.asarray(lstm_hidden(seq))
    for kind, name in names.items():
        runs = values[name]
        assert [run.path for run in runs] == [(b, t) for b in range(2) for t in range(SEQUENCE)], kind
        for run in runs:
            v = hidden[run.path]
            expected = {"element": v, "mul": v * 2.0, "add": v * 2.0 + 1.0}[kind]
            np.testing.assert_allclose(run.value, expected, rtol=1e-5, atol=1e-6, err_msg=f"{kind} {run.path}")
    close(values[output][0].value, lstm_keras(seq))


@pytest.mark.parametrize(("sign", "ran", "skipped"), [(1.0, "then", "else"), (-1.0, "else", "then")])
def test_cond_branch_captured_when_it_runs(gate: Any, sign: float, ran: str, skipped: str) -> None:

    branch = {
        kind: [t for t in gate.index.tensors if t.context == f"branch gate/cond/{kind}"] for kind in ("then", "else")
    }
    assert branch["then"] and branch["else"]
    assert all(t.layer == "gate" for t in branch["then"] + branch["else"])
    x = sign * np.random.default_rng(3).uniform(0.1, 1, (1, 2, 3)).astype("float32")
    wanted = [t for t in branch[ran] + branch[skipped] if t.op_type != "Const"]
    values = capture(gate, wanted, [Feed("x", x, "test")])
    not_run = [t for t in branch[skipped] if t.op_type != "Const"]
    assert not_run and all(values[t.name] == [] for t in not_run)
    [result] = [values[t.name] for t in branch[ran] if t.op_type != "Const"]
    assert len(result) == 1 and result[0].iteration == 0 and result[0].path == ()
    np.testing.assert_allclose(result[0].value, x * 2.0 if ran == "then" else -x)


def test_model_without_forward_function_gives_run_error(gate: Any) -> None:
    from probe_cli.backends.keras.capture import Capturer

    info = next(t for t in gate.index.tensors if t.context)
    with pytest.raises(RunError, match="cannot capture"):
        Capturer(dataclasses.replace(gate, forward=None), [info])
