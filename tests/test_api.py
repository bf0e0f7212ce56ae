"""The Python API (``import probe_cli as probe``) on models built in memory and on files: values equal
what Keras computes, the archive equals the CLI's, and the caller's process and model are left as found."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import close, inputs_of, invoke, ok, tensors_of

import probe_cli as probe


@pytest.fixture(scope="module")
def functional(keras: Any) -> Any:
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden), name="functional_net")


@pytest.fixture(scope="module")
def subclassed(keras: Any, tf: Any) -> Any:
    """A subclassed model with a custom layer that loops (tf.while_loop) inside, called once."""

    class Doubler(keras.layers.Layer):
        def call(self, x):
            def body(i, acc):
                return i + 1, acc * 2.0

            _, out = tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), x])
            return out

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="net")
            self.dense = keras.layers.Dense(4, name="dense")
            self.doubler = Doubler(name="doubler")

        def call(self, x):
            return self.doubler(self.dense(x))

    model = Net()
    model(np.zeros((1, 3), np.float32))
    return model


def test_functional_values_equal_keras(functional: Any, keras: Any) -> None:
    m = probe.open(functional)
    x = np.random.default_rng(3).random((7, 6), dtype=np.float32)
    values = m.run(x)
    assert set(values) == {"features:0", "hidden/Relu:0", "head/BiasAdd:0"}
    hidden = keras.Model(functional.inputs, functional.get_layer("hidden").output)
    close(values["hidden/Relu:0"], hidden(x))
    close(values["head/BiasAdd:0"], functional(x))
    np.testing.assert_array_equal(values["features:0"], x)


def test_sequential_in_batches_equals_keras(keras: Any) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="seq")
    x = np.random.default_rng(4).random((70, 4), dtype=np.float32)
    values = probe.open(model).run(x, tensors=["d/BiasAdd:0"], batch_size=32)  # 3 batches, concatenated
    close(values["d/BiasAdd:0"], model(x))


def test_subclassed_model_with_a_loop(subclassed: Any) -> None:
    m = probe.open(subclassed)
    x = np.random.default_rng(5).random((2, 3), dtype=np.float32)
    assert m.index.tensor("doubler/while/body/mul:0").context == "loop doubler/while/body"
    values = m.run(x, tensors=["doubler/while/body/mul:0", "dense/BiasAdd:0"])
    dense = values["dense/BiasAdd:0"]
    close(dense, subclassed.dense(x))
    steps = values["doubler/while/body/mul:0"]
    assert isinstance(steps, list) and len(steps) == 3  # one array per iteration
    for k, step in enumerate(steps, 1):
        close(step, dense * 2.0**k)


def test_inputs_as_array_list_dict_or_random(functional: Any) -> None:
    m = probe.open(functional)
    x = np.random.default_rng(6).random((2, 6), dtype=np.float32)
    by_array = m.run(x, tensors=["head/BiasAdd:0"])["head/BiasAdd:0"]
    np.testing.assert_array_equal(m.run([x], tensors=["head/BiasAdd:0"])["head/BiasAdd:0"], by_array)
    np.testing.assert_array_equal(m.run({"features": x}, tensors=["head/BiasAdd:0"])["head/BiasAdd:0"], by_array)
    first, again = (m.run(tensors=["features:0"], seed=9)["features:0"] for _ in range(2))
    np.testing.assert_array_equal(first, again)  # seeded
    assert not np.array_equal(first, m.run(tensors=["features:0"], seed=10)["features:0"])
    with pytest.raises(probe.FeedError, match="2 input arrays given, but the model has 1 inputs"):
        m.run([x, x])
    with pytest.raises(probe.FeedError, match="'feature' is no input") as error:
        m.run({"feature": x})
    assert error.value.hint == "did you mean 'features'?"


def test_second_run_reuses_the_pruned_function(functional: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from probe_cli.backends import tfgraph

    m = probe.open(functional)
    calls: list[int] = []
    prune = tfgraph.prune
    monkeypatch.setattr(tfgraph, "prune", lambda *a, **k: calls.append(1) or prune(*a, **k))
    x = np.ones((1, 6), np.float32)
    first = m.run(x, layers=["hidden"])
    second = m.run(x * 2, layers=["hidden"])
    assert len(calls) == 1
    close(second["hidden/Relu:0"], 2 * first["hidden/Relu:0"])  # relu(2Wx) = 2 relu(Wx): no bias yet
    m.run(x, tensors=["hidden/MatMul:0"])
    assert len(calls) == 2  # a new selection is pruned once


def _process_state(tf: Any) -> tuple[Any, ...]:
    from tensorflow.python.eager import context

    loggers = {name: logging.getLogger(name).level for name in ("tensorflow", "absl", "keras", "h5py")}
    config = context.context().config.SerializeToString(deterministic=True)  # what functions are instantiated with
    return (
        list(warnings.filters),
        loggers,
        tf.get_logger().level,
        tf.config.optimizer.get_experimental_options(),
        config,
    )


def _model_state(model: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (layer.name, {k: copy.copy(v) if isinstance(v, (list, dict)) else v for k, v in vars(layer).items()})
        for layer in model._flatten_layers(include_self=True, recursive=True)
    ]


def _same_model_state(before: list[tuple[str, dict[str, Any]]], after: list[tuple[str, dict[str, Any]]]) -> None:
    assert [name for name, _ in before] == [name for name, _ in after]
    for (name, old), (_, new) in zip(before, after):
        assert old.keys() == new.keys(), (name, set(old) ^ set(new))
        for key, value in old.items():
            now = new[key]
            if isinstance(value, (list, dict)):  # a copied container: its items must be the same objects
                old_items = list(value.items()) if isinstance(value, dict) else list(value)
                new_items = list(now.items()) if isinstance(now, dict) else list(now)
                assert len(old_items) == len(new_items), (name, key)
                for x, y in zip(old_items, new_items):
                    pairs = zip(x, y) if isinstance(value, dict) else [(x, y)]
                    assert all(a is b or (not hasattr(a, "shape") and a == b) for a, b in pairs), (name, key)
            else:
                assert now is value or now == value, (name, key, value, now)


def test_the_callers_process_and_model_are_left_as_found(
    subclassed: Any, functional: Any, tf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook's settings: warnings shown always, TensorFlow logging at INFO, Grappler on with an option set."""
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    warnings.simplefilter("always")
    tf.get_logger().setLevel(logging.INFO)
    options = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"constant_folding": True})
    try:
        process, model, never_called = _process_state(tf), _model_state(subclassed), _model_state(functional)
        probe.open(functional).run()
        _same_model_state(never_called, _model_state(functional))  # Keras' _called stays False
        m = probe.open(subclassed)
        body = [t["name"] for t in m.tensors if t["context"]][:1]
        m.run(tensors=[*body, "dense/BiasAdd:0"])
        m.dump(tmp_path / "a.h5", tensors=[*body, "dense/BiasAdd:0"])
        probe.show(tmp_path / "a.h5")
        with pytest.raises(probe.PatternError):
            m.run(tensors=["nothing.*"])
        assert _process_state(tf) == process
        _same_model_state(model, _model_state(subclassed))
        assert "call" not in vars(subclassed.dense) and not hasattr(subclassed, "_inputs_struct")
    finally:
        tf.get_logger().setLevel(logging.NOTSET)
        tf.config.optimizer.set_experimental_options({**options, "constant_folding": False})


def test_dump_writes_the_archive_the_cli_writes(samples: Any, tmp_path: Path) -> None:
    x = np.random.default_rng(8).random((3, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    ok(invoke("dump", samples.cnn_h5, "-i", tmp_path / "x.npy", "-o", tmp_path / "cli.h5"))
    m = probe.open(samples.cnn_h5)
    result = m.dump(tmp_path / "api.h5", x)
    assert result.archive == tmp_path / "api.h5" and result.samples == 3
    cli, api = tensors_of(tmp_path / "cli.h5"), tensors_of(tmp_path / "api.h5")
    assert cli.keys() == api.keys()
    for name in cli:
        np.testing.assert_array_equal(api[name], cli[name], err_msg=name)
    np.testing.assert_array_equal(inputs_of(tmp_path / "api.h5")["image"], x)
    with h5py.File(tmp_path / "cli.h5") as a, h5py.File(tmp_path / "api.h5") as b:
        differ = {k for k in a.attrs if a.attrs[k] != b.attrs.get(k)}
        assert differ <= {"command", "created"}
        assert probe.show(tmp_path / "api.h5").provenance["model_path"] == str(samples.cnn_h5.resolve())
    assert probe.diff(tmp_path / "api.h5", tmp_path / "cli.h5").same
    with pytest.raises(probe.ProbeError, match="already exists") as error:
        m.dump(tmp_path / "api.h5", x)
    assert error.value.exit_code == 2 and error.value.hint


def test_random_inputs_equal_the_clis(samples: Any, tmp_path: Path) -> None:
    ok(invoke("dump", samples.cnn_h5, "--seed", "4", "-t", "probs/Softmax:0", "-o", tmp_path / "cli.h5"))
    values = probe.open(samples.cnn_h5).run(seed=4, tensors=["probs/Softmax:0"])
    np.testing.assert_array_equal(values["probs/Softmax:0"], tensors_of(tmp_path / "cli.h5")["probs/Softmax:0"])


def test_a_value_changing_input_cast_is_a_python_warning(functional: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The library prints nothing: float64 arrays convert with an InputConversionWarning, uint8 silently, and a
    refusal names the Python argument."""
    m = probe.open(functional)
    x = np.arange(12.0).reshape(2, 6)
    with pytest.warns(probe.InputConversionWarning) as caught:
        values = m.run(x, layers=["head"])
    assert [str(w.message) for w in caught] == [
        "input 'features' given in inputs=: float64 converted to float32, which can change values"
    ]
    assert caught[0].filename == __file__  # points at the caller's line
    close(values["head/BiasAdd:0"], functional(x.astype(np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.run(x.astype(np.uint8), layers=["head"])
    with pytest.raises(probe.FeedError, match=r"given in inputs=: .* complex128 .*arr\.astype\('float32'\)"):
        m.run(x.astype(complex))
    assert capsys.readouterr() == ("", "")


def test_errors_name_python_arguments(samples: Any, tmp_path: Path) -> None:
    """They named the CLI's flags: "--tensor 'x' matches no tensor", "pass --force"."""
    m = probe.open(samples.cnn_h5)
    with pytest.raises(probe.PatternError) as error:
        m.run(tensors=["conv1/Relu:0", "Conv9"])
    assert error.value.message == "tensors='Conv9' matches no tensor"
    with pytest.raises(probe.PatternError, match=r"^layers='Conv9' matches no layer"):
        m.run(layers=["Conv9"])
    (tmp_path / "a.h5").touch()
    with pytest.raises(probe.UsageProblem) as exists:
        m.dump(tmp_path / "a.h5", layers=["probs"])
    assert exists.value.hint == "pass force=True to overwrite it, or another path"
    with pytest.raises(probe.UsageProblem, match=r"^batch_size= must be at least 1"):
        m.run(batch_size=0)


def test_open_errors_are_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(probe.UsageProblem, match="does not exist"):
        probe.open(tmp_path / "missing.h5")
    with pytest.raises(probe.UsageProblem, match="cannot open a dict") as error:
        probe.open({"not": "a model"})
    assert error.value.hint


def test_an_unbuilt_model_is_refused(keras: Any) -> None:
    with pytest.raises(probe.ModelLoadError, match="has not been built"):
        probe.open(keras.Sequential([keras.layers.Dense(2)]))


def test_in_memory_archive_names_the_model(functional: Any, tmp_path: Path) -> None:
    probe.open(functional).dump(tmp_path / "m.h5")
    provenance = probe.show(tmp_path / "m.h5").provenance
    assert provenance["model_path"] == "<in-memory Functional 'functional_net'>"
    assert provenance["model_format"] == "keras-in-memory" and len(provenance["model_sha256"]) == 64


def test_run_over_batches_joins_by_batch_axis_or_per_batch(keras: Any, tf: Any) -> None:
    """Over several batches: a tensor with a batch axis is concatenated; a scalar gives one value per
    batch; values of other lengths per batch (kept boxes) come as a list, as dump stores them."""
    x = keras.Input((3,), name="x")
    total = keras.layers.Lambda(lambda t: tf.reduce_sum(t), name="total")(x)
    kept = keras.layers.Lambda(lambda t: tf.boolean_mask(t, t > 0.5), name="kept")(x)
    m = probe.open(keras.Model(x, [keras.layers.Dense(2, name="d")(x), total, kept]))
    data = np.arange(15, dtype=np.float32).reshape(5, 3) / 15
    values = m.run(data, batch_size=2)  # batches of 2, 2, 1
    close(values["d/BiasAdd:0"], m.run(data)["d/BiasAdd:0"])
    np.testing.assert_allclose(values["total/Sum:0"], [data[0:2].sum(), data[2:4].sum(), data[4:].sum()], rtol=1e-6)
    kept_name = next(name for name in values if name.startswith("kept/") and "GatherV2" in name)
    assert [len(v) for v in values[kept_name]] == [0, 4, 3]
