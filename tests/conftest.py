"""Shared fixtures of the end-to-end CLI tests.

Everything expensive (importing TensorFlow, building extra models, loading the
samples into Keras for reference values) happens once per session; the CLI is
driven in-process through Click's ``CliRunner`` except where a real process
matters (see ``test_entrypoint.py``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
CNN_H5 = SAMPLES / "cnn.h5"
CNN_KERAS = SAMPLES / "cnn.keras"
MULTI_IO_H5 = SAMPLES / "multi_io.h5"
RCNN_H5 = SAMPLES / "mini_rcnn.h5"
RCNN_LAYERS = SAMPLES / "mini_rcnn_layers.py"
#: The command-line arguments that open the Mask-R-CNN-like sample.
RCNN = (str(RCNN_H5), "--custom-objects", str(RCNN_LAYERS))

ANSI = re.compile(r"\x1b\[")


class _NoTensorFlow:
    """Under ``make test-unit`` (``PROBE_NO_TENSORFLOW=1``): importing TensorFlow or Keras fails the test
    that tried, so a unit test that needs them cannot hide in the seconds-long suite."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} imported by a unit test (PROBE_NO_TENSORFLOW is set)")


if os.environ.get("PROBE_NO_TENSORFLOW"):
    sys.meta_path.insert(0, _NoTensorFlow())  # type: ignore[arg-type]


@dataclass(frozen=True)
class Samples:
    """Paths of the committed sample models."""

    cnn_h5: Path = CNN_H5
    cnn_keras: Path = CNN_KERAS
    multi_io_h5: Path = MULTI_IO_H5
    rcnn_h5: Path = RCNN_H5
    rcnn_layers: Path = RCNN_LAYERS


@dataclass(frozen=True)
class ExtraModels:
    """Small models built by the tests: code-holding Lambda models, a nested/shared-layer model."""

    lambda_h5: Path
    lambda_keras: Path
    nested_keras: Path
    nested_h5: Path
    #: A registered custom layer whose class name (``Identity``) is also a Keras built-in.
    custom_keras: Path
    custom_h5: Path
    custom_layers: Path
    #: A Lambda layer whose function (``plus_one``) lives in ``custom_layers``.
    function_keras: Path


CUSTOM_LAYERS = """\
import keras


@keras.saving.register_keras_serializable(package="probe_tests")
class Identity(keras.layers.Layer):
    \"\"\"Not the built-in Identity: triples its input.\"\"\"

    def call(self, x):
        return x * 3.0


def plus_one(x):
    return x + 1.0
"""


@pytest.fixture(autouse=True)
def _settings_from_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see probe's defaults: a developer's PROBE_* variables or a CI job's step summary stay out."""
    for name in list(os.environ):
        if (
            name.startswith("PROBE_")
            and name not in ("PROBE_NO_TENSORFLOW", "PROBE_FUZZ_CASES")
            or (name == "GITHUB_STEP_SUMMARY")
        ):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def samples() -> Samples:
    """Paths of the sample models in ``sample_models/``."""
    for path in (CNN_H5, CNN_KERAS, MULTI_IO_H5, RCNN_H5, RCNN_LAYERS):
        assert path.is_file(), f"sample {path} is missing (run 'make models')"
    return Samples()


def invoke(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """Runs ``probe ARGS`` in-process (with ``env`` added to the environment); stdout and stderr stay
    separate (Click 8.2+)."""
    from probe_cli.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, env=env)


def ok(result: Result) -> Result:
    """Asserts the command succeeded, showing its stderr otherwise."""
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def list_json(*args: str | os.PathLike[str]) -> dict[str, Any]:
    """``probe list ARGS --json`` parsed."""
    return json.loads(ok(invoke("list", *args, "--json")).stdout)


def assert_one_line_error(result: Result, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one ``Error: ...`` line on stderr, no traceback; returns the line."""
    assert result.exit_code == code, f"exit {result.exit_code} != {code}\nstderr:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("Error: "), line
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def tensors_of(archive: Path) -> dict[str, np.ndarray]:
    """Every tensor stored as one dataset under /tensors, by its ``name`` attribute.

    The step/batch datasets of ``per_iteration`` and ``per_batch`` groups carry no ``name``
    and are left out: read those with ``steps_of``.
    """
    found: dict[str, np.ndarray] = {}
    with h5py.File(archive, "r") as f:

        def visit(_: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and "name" in obj.attrs:
                found[str(obj.attrs["name"])] = obj[()]

        f["tensors"].visititems(visit)
    return found


def steps_of(archive: Path, name: str) -> list[np.ndarray]:
    """The values of a ``per_iteration`` or ``per_batch`` tensor, in stored order."""
    with h5py.File(archive, "r") as f:
        group = f[f"tensors/{name}"]
        assert isinstance(group, h5py.Group), f"{name} is stored as one dataset, not per step"
        return [group[key][()] for key in sorted(group)]


def inputs_of(archive: Path) -> dict[str, np.ndarray]:
    """The fed inputs stored under /inputs, by name."""
    with h5py.File(archive, "r") as f:
        return {name: ds[()] for name, ds in f["inputs"].items()}


def dense(layer: Any, x: np.ndarray) -> np.ndarray:
    """A Dense layer's pre-activation, recomputed from its weights: ``x @ W + b``."""
    kernel, bias = (np.asarray(w) for w in layer.weights)
    return x @ kernel + bias


def close(got: np.ndarray, expected: Any) -> None:
    """Equal to float32 rounding: what a value recomputed outside the graph can promise."""
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)


def import_file(path: Path, module_name: str) -> ModuleType:
    """Imports a Python file as module ``module_name`` (registering any Keras classes it defines)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def leftovers(directory: Path) -> list[str]:
    """Temporary archive files left in ``directory``."""
    return sorted(p.name for p in directory.glob(".*.tmp"))


@pytest.fixture(scope="session")
def keras() -> Any:
    """Keras, imported through probe so TensorFlow's noise stays hidden."""
    from probe_cli.backends import tfenv as _tf

    return _tf.keras()


@pytest.fixture(scope="session")
def tf(keras: Any) -> Any:
    """TensorFlow (after Keras, through probe)."""
    from probe_cli.backends import tfenv as _tf

    return _tf.tf()


@pytest.fixture(scope="session")
def reference_models(keras: Any, samples: Samples) -> dict[str, Any]:
    """The sample models loaded directly with Keras, to compute reference values."""
    sys.path.insert(0, str(SAMPLES))
    try:
        from mini_rcnn_layers import ProposalLayer
    finally:
        sys.path.remove(str(SAMPLES))
    return {
        "cnn": keras.models.load_model(samples.cnn_h5, compile=False),
        "multi_io": keras.models.load_model(samples.multi_io_h5, compile=False),
        "mini_rcnn": keras.models.load_model(
            samples.rcnn_h5, compile=False, custom_objects={"ProposalLayer": ProposalLayer}
        ),
    }


@pytest.fixture(scope="session")
def extra_models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> ExtraModels:
    """Builds the extra test models once: Lambda (.h5 and .keras) and nested + shared layer (.keras and .h5)."""
    out = tmp_path_factory.mktemp("extra_models")
    keras.utils.set_random_seed(7)

    x = keras.Input(shape=(4,), name="x")
    y = keras.layers.Dense(3, name="dense")(x)
    y = keras.layers.Lambda(lambda t: t * 2.0, name="double")(y)
    lambda_model = keras.Model(x, y, name="with_lambda")
    lambda_model.save(out / "lambda.h5")
    lambda_model.save(out / "lambda.keras")

    sys.path.insert(0, str(SAMPLES))
    from make_models import nested_shared  # the same builder as sample_models/nested_shared.h5

    nested = nested_shared()
    nested.save(out / "nested.keras")
    nested.save(out / "nested.h5")

    layers_file = out / "custom_layers.py"
    layers_file.write_text(CUSTOM_LAYERS)
    module = import_file(layers_file, "probe_tests_custom_layers")
    c = keras.Input(shape=(3,), name="c")
    custom = keras.Model(c, module.Identity(name="triple")(keras.layers.Dense(2, name="d")(c)), name="custom")
    custom.save(out / "custom.keras")
    custom.save(out / "custom.h5")
    f = keras.Input(shape=(3,), name="f")
    keras.Model(f, keras.layers.Lambda(module.plus_one, name="inc")(f), name="function").save(out / "function.keras")
    return ExtraModels(
        lambda_h5=out / "lambda.h5",
        lambda_keras=out / "lambda.keras",
        nested_keras=out / "nested.keras",
        nested_h5=out / "nested.h5",
        custom_keras=out / "custom.keras",
        custom_h5=out / "custom.h5",
        custom_layers=layers_file,
        function_keras=out / "function.keras",
    )


@pytest.fixture(scope="session")
def index_of(samples: Samples, extra_models: ExtraModels) -> Callable[[str], dict[str, Any]]:
    """``probe list --json`` of a model by short name, computed once per session."""
    args = {
        "cnn": (samples.cnn_h5,),
        "cnn_keras": (samples.cnn_keras,),
        "multi_io": (samples.multi_io_h5,),
        "mini_rcnn": RCNN,
        "nested": (extra_models.nested_keras,),
        "nested_h5": (extra_models.nested_h5,),
    }
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cache[name] = list_json(*args[name])
        return cache[name]

    return get


@pytest.fixture
def out_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty output directory; asserts no temporary archive litter remains after the test."""
    directory = tmp_path / "out"
    directory.mkdir()
    yield directory
    assert leftovers(directory) == []


def datasets(group: Any) -> list[Any]:
    """Every h5py dataset below ``group``, in visiting order."""
    found: list[Any] = []
    group.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def hdf5_tool(name: str) -> str:
    """Path of an hdf5-tools binary, or skip the test."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (hdf5-tools) is not installed")
    return path


@pytest.fixture(scope="session")
def map_fn_nms_reference(keras: Any) -> Callable[[Any], list[Any]]:
    """NMS of each image computed directly from the map_fn sample's box and score heads."""
    import tensorflow as tf

    from probe_cli.backends.base import import_custom_objects

    objects = import_custom_objects([SAMPLES / "map_fn_layers.py"])
    model = keras.models.load_model(SAMPLES / "map_fn_nms.keras", compile=False, custom_objects=objects)
    layer = model.get_layer("proposals")
    heads = keras.Model(model.inputs, [model.get_layer("bbox").output, model.get_layer("class").output])

    def per_image(images: Any) -> list[Any]:
        boxes, scores = (np.asarray(a) for a in heads(images))
        return [
            tf.image.non_max_suppression(b, s, layer.proposal_count, layer.nms_threshold).numpy()
            for b, s in zip(boxes, scores)
        ]

    return per_image


def tiny_residual(keras: Any, shape: tuple[int, ...]) -> Any:
    """A small Keras CNN with what converters rewrite: convolution, batch norm with the statistics a trained
    model has (the folded offset is not zero), depthwise convolution, residual add, dense layers."""
    x = image = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(12, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(image, x, name="tiny")
    rng = np.random.default_rng(7)
    bn = model.get_layer("bn1")
    gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
    bn.set_weights(
        [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape), rng.normal(0, 0.2, mean.shape)]
        + [rng.uniform(0.5, 2.0, var.shape)]
    )
    return model
