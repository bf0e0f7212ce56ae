"""Bad input: every case one ``Error:`` line, a documented exit code, no traceback, nothing written.

Exit codes: 2 for the user's input (usage, missing/unreadable/not-a-model
files, inputs, patterns, an existing archive, --unsafe/--custom-objects
needed), 1 for a model file of a known kind that is broken or fails to run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import (
    RCNN,
    ExtraModels,
    Samples,
    assert_one_line_error,
    close,
    datasets,
    dense,
    inputs_of,
    invoke,
    leftovers,
    list_json,
    ok,
    tensors_of,
)

from probe_cli.cli.commands import INTERRUPTED_MESSAGE
from probe_cli.core import interrupt
from probe_cli.core.errors import ArchiveError

BAD_MODELS = "bad_models"


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, samples: Samples) -> Path:
    """A directory of broken and misleading model files."""
    root = tmp_path_factory.mktemp(BAD_MODELS)
    data = samples.cnn_h5.read_bytes()
    (root / "truncated.h5").write_bytes(data[: len(data) // 2])
    (root / "text.h5").write_text("this is not a model\n")
    (root / "empty.h5").write_bytes(b"")
    (root / "no_model_dir").mkdir()
    (root / "no_model_dir" / "readme.txt").write_text("nothing here")
    with h5py.File(root / "weights_only.h5", "w") as f:
        f.attrs["layer_names"] = [b"dense"]
    with h5py.File(root / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    with zipfile.ZipFile(samples.cnn_keras) as src, zipfile.ZipFile(root / "broken_config.keras", "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "config.json":
                payload = payload[: len(payload) // 2]
            dst.writestr(item, payload)
    with zipfile.ZipFile(samples.cnn_keras) as src, zipfile.ZipFile(root / "wrong_config.keras", "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "config.json":
                payload = json.dumps({"class_name": "Sequential", "config": {"layers": 42}}).encode()
            dst.writestr(item, payload)
    with zipfile.ZipFile(root / "not_keras.keras", "w") as dst:
        dst.writestr("hello.txt", "hi")
    flipped = bytearray(data)  # one byte of the JSON config flipped, as a bad copy does it
    at = data.index(b'{"class_name"') + 1
    flipped[at] ^= 0x05  # '"' -> "'"
    (root / "flipped_config.h5").write_bytes(bytes(flipped))
    return root


@pytest.fixture(scope="module")
def probe_archive(tmp_path_factory: pytest.TempPathFactory, samples: Samples) -> Path:
    """A real probe archive, to be passed where a model is expected."""
    path = tmp_path_factory.mktemp("archive") / "dump.h5"
    ok(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", path))
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    """Where a failing dump would write; asserts afterwards that nothing (and no temp file) is there."""
    directory = tmp_path / "dest"
    directory.mkdir()
    target = directory / "out.h5"
    yield target
    assert not target.exists(), "a failed run must not leave an archive"
    assert leftovers(directory) == []
    assert list(directory.iterdir()) == []


# ---------------------------------------------------------------- model files


@pytest.mark.parametrize("command", ["list", "dump"])
def test_missing_model(command: str, tmp_path: Path, dest: Path) -> None:
    missing = tmp_path / "nope.h5"
    extra = ["-o", str(dest)] if command == "dump" else []
    assert_one_line_error(invoke(command, missing, *extra), 2, "nope.h5", "does not exist")


def test_directory_without_model(bad: Path, dest: Path) -> None:
    assert_one_line_error(invoke("list", bad / "no_model_dir"), 2, "no_model_dir", "no model")
    assert_one_line_error(invoke("dump", bad / "no_model_dir", "-o", dest), 2, "no model")


def test_truncated_h5(bad: Path, dest: Path) -> None:
    assert_one_line_error(invoke("list", bad / "truncated.h5"), 1, "truncated.h5", "truncated")
    assert_one_line_error(invoke("dump", bad / "truncated.h5", "-o", dest), 1, "truncated.h5")


@pytest.mark.parametrize("name", ["text.h5", "empty.h5"])
def test_not_hdf5_named_h5(bad: Path, dest: Path, name: str) -> None:
    assert_one_line_error(invoke("list", bad / name), 2, name, "not a model")
    assert_one_line_error(invoke("dump", bad / name, "-o", dest), 2, name)


def test_probe_archive_is_not_a_model(probe_archive: Path, dest: Path) -> None:
    assert_one_line_error(invoke("list", probe_archive), 2, "probe archive", "not a model")
    assert_one_line_error(invoke("dump", probe_archive, "-o", dest), 2, "probe archive")


@pytest.mark.parametrize("name", ["weights_only.h5", "plain.h5"])
def test_hdf5_without_model(bad: Path, name: str) -> None:
    assert_one_line_error(invoke("list", bad / name), 2, name)


@pytest.mark.parametrize("name", ["broken_config.keras", "wrong_config.keras"])
def test_keras_zip_with_broken_config(bad: Path, dest: Path, name: str) -> None:
    assert_one_line_error(invoke("list", bad / name), 1, name)
    assert_one_line_error(invoke("dump", bad / name, "-o", dest), 1, name)


def test_a_corrupt_config_is_named_as_such(bad: Path) -> None:
    """Said "Expecting property name enclosed in double quotes: line 1 column 1543", a JSON parser's words."""
    line = assert_one_line_error(invoke("list", bad / "flipped_config.h5"), 1)
    assert line == (
        f"Error: cannot load {str(bad / 'flipped_config.h5')!r}: the model's stored configuration is corrupt "
        "(not valid JSON at character 1) (the file is damaged; save or copy the model again)"
    )


def test_zip_that_is_not_keras(bad: Path) -> None:
    assert_one_line_error(invoke("list", bad / "not_keras.keras"), 2, "not_keras.keras", "config.json")


@pytest.fixture
def unregistered_proposal_layer(keras: Any, reference_models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the ROI layer class that earlier tests registered in this process."""
    registry = keras.saving.get_custom_objects()
    for key in [k for k in registry if k.endswith("ProposalLayer")]:
        monkeypatch.delitem(registry, key)


@pytest.mark.usefixtures("unregistered_proposal_layer")
def test_custom_layer_missing(samples: Samples, dest: Path) -> None:
    assert_one_line_error(invoke("list", samples.rcnn_h5), 2, "ProposalLayer", "--custom-objects")
    assert_one_line_error(invoke("dump", samples.rcnn_h5, "-o", dest), 2, "ProposalLayer", "--custom-objects")


@pytest.mark.parametrize("kind", ["custom_keras", "custom_h5"])
def test_custom_layer_with_builtin_name_missing(
    extra_models: ExtraModels, keras: Any, monkeypatch: pytest.MonkeyPatch, dest: Path, kind: str
) -> None:
    """A registered class called like a Keras built-in (Identity) still asks for --custom-objects."""
    monkeypatch.delitem(keras.saving.get_custom_objects(), "probe_tests>Identity")
    model = getattr(extra_models, kind)
    assert_one_line_error(invoke("list", model), 2, "Identity", "--custom-objects")
    assert_one_line_error(invoke("dump", model, "-o", dest), 2, "Identity", "--custom-objects")


@pytest.mark.parametrize("kind", ["custom_keras", "custom_h5"])
def test_custom_layer_given(extra_models: ExtraModels, keras: Any, tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "custom.h5"
    model = getattr(extra_models, kind)
    ok(invoke("dump", model, "--custom-objects", extra_models.custom_layers, "-l", "d", "-l", "triple", "-o", archive))
    with h5py.File(archive, "r") as f:
        layers = {str(ds.attrs["layer"]): ds[()] for ds in datasets(f["tensors"])}
    reference = keras.models.load_model(model, compile=False)  # its class was registered by ``extra_models``
    expected = dense(reference.get_layer("d"), inputs_of(archive)["c"])
    close(layers["d"], expected)
    close(layers["triple"], 3 * expected)


def test_lambda_function_missing_then_given(extra_models: ExtraModels, tmp_path: Path, dest: Path) -> None:
    """A Lambda naming a module-level function: asked for with --custom-objects, found there."""
    assert_one_line_error(invoke("list", extra_models.function_keras), 2, "function 'plus_one'", "--custom-objects")
    archive = tmp_path / "inc.h5"
    model = extra_models.function_keras
    ok(invoke("dump", model, "--custom-objects", extra_models.custom_layers, "-l", ".*", "-o", archive))
    with h5py.File(archive, "r") as f:
        np.testing.assert_allclose(f["tensors/inc/add:0"][()], f["inputs/f"][()] + 1.0, rtol=1e-6)


def test_custom_objects_file_missing(samples: Samples, tmp_path: Path, dest: Path) -> None:
    assert_one_line_error(
        invoke("dump", samples.rcnn_h5, "--custom-objects", tmp_path / "nope.py", "-o", dest), 2, "nope.py"
    )


def test_custom_objects_file_broken(samples: Samples, tmp_path: Path, dest: Path) -> None:
    broken = tmp_path / "broken_layers.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert_one_line_error(
        invoke("dump", samples.rcnn_h5, "--custom-objects", broken, "-o", dest), 2, "broken_layers.py", "boom"
    )


@pytest.mark.parametrize("kind", ["lambda_h5", "lambda_keras"])
def test_lambda_needs_unsafe(extra_models: ExtraModels, dest: Path, kind: str) -> None:
    model = getattr(extra_models, kind)
    assert_one_line_error(invoke("list", model), 2, "--unsafe")
    assert_one_line_error(invoke("dump", model, "-o", dest), 2, "--unsafe")


@pytest.mark.parametrize("kind", ["lambda_h5", "lambda_keras"])
def test_lambda_loads_with_unsafe(extra_models: ExtraModels, keras: Any, tmp_path: Path, kind: str) -> None:
    model = getattr(extra_models, kind)
    doc = list_json(model, "--unsafe")
    assert "double" in {layer["name"] for layer in doc["layers"]}
    archive = tmp_path / "lambda.h5"
    ok(invoke("dump", model, "--unsafe", "-l", "dense", "-l", "double", "-o", archive))
    with h5py.File(archive, "r") as f:
        layers = {str(ds.attrs["layer"]): ds[()] for ds in datasets(f["tensors"])}
    reference = keras.models.load_model(model, compile=False, safe_mode=False)
    expected = dense(reference.get_layer("dense"), inputs_of(archive)["x"])
    close(layers["dense"], expected)
    close(layers["double"], 2 * expected)


# ---------------------------------------------------------------- inputs


@pytest.fixture
def npy(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Saves an array as ``tmp_path/NAME`` and returns its path."""

    def save(name: str, array: Any) -> Path:
        path = tmp_path / name
        np.save(path, array, allow_pickle=True)
        return path

    return save


def test_npy_wrong_shape(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("wrong_shape.npy", np.zeros((1, 28, 28, 3), np.float32))
    line = assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "image", "shape")
    assert "28, 28, 1" in line and "28, 28, 3" in line, "names expected and given shape"


def test_npy_wrong_rank(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("wrong_rank.npy", np.zeros((28, 28, 1), np.float32))
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "image", "shape")


def test_npy_float_into_int_input(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("float_tokens.npy", np.full((1, 12), 0.5, np.float32))
    line = assert_one_line_error(
        invoke("dump", samples.multi_io_h5, "-i", f"tokens={path}", "-o", dest), 2, "tokens", "dtype"
    )
    assert "int32" in line and "float32" in line


def test_npy_zero_length(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("empty.npy", np.zeros((0, 28, 28, 1), np.float32))
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "image", "empty")


def test_npy_corrupt_header(samples: Samples, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "corrupt.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'fortran_order': Fa" + b"\x00" * 16)
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "corrupt.npy")


def test_npy_truncated_data(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("short.npy", np.zeros((1, 28, 28, 1), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "short.npy")


def test_npy_object_array_is_refused(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    array = np.empty((1,), dtype=object)
    array[0] = {"not": "numbers"}
    path = npy("objects.npy", array)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(path, allow_pickle=False)  # the file holds a pickle, which probe must never load
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "objects.npy", "object")


def test_npy_is_not_an_array_file(samples: Samples, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "text.npy"
    path.write_text("1, 2, 3\n")
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-o", dest), 2, "text.npy")


def test_input_file_missing(samples: Samples, tmp_path: Path, dest: Path) -> None:
    assert_one_line_error(
        invoke("dump", samples.cnn_h5, "-i", tmp_path / "nope.npy", "-o", dest), 2, "nope.npy", "does not exist"
    )


def test_npz_missing_key(samples: Samples, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "feeds.npz"
    np.savez(path, image=np.zeros((1, 32, 32, 3), np.float32), other=np.zeros((1, 12), np.int32))
    line = assert_one_line_error(invoke("dump", samples.multi_io_h5, "-i", f"tokens={path}", "-o", dest), 2, "tokens")
    assert "image" in line and "other" in line, "names the keys the file has"


def test_npz_unknown_key(samples: Samples, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "feeds.npz"
    np.savez(path, image=np.zeros((1, 32, 32, 3), np.float32), token=np.zeros((1, 12), np.int32))
    assert_one_line_error(invoke("dump", samples.multi_io_h5, "-i", path, "-o", dest), 2, "token", "tokens")


def test_unknown_input_name(samples: Samples, npy: Callable[[str, Any], Path], dest: Path) -> None:
    path = npy("x.npy", np.zeros((1, 28, 28, 1), np.float32))
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-i", path, "-i", path, "-o", dest), 2, "input")


@pytest.mark.parametrize(
    "option",
    [
        ("--shape", "image"),
        ("--shape", "image="),
        ("--shape", "image=a,b"),
        ("--shape", "=1,2"),
        ("--shape", "image=1,-28,28,1"),
        ("--shape", "nope=1,28,28,1"),
        ("--shape", "image=1,28,28"),
        ("--value-range", "image=1"),
        ("--value-range", "image=2,1"),
        ("--value-range", "image=a,b"),
        ("--value-range", "image=0,inf"),
        ("--value-range", "image"),
        ("--value-range", "nope=0,1"),
    ],
)
def test_malformed_shape_and_range(samples: Samples, dest: Path, option: tuple[str, str]) -> None:
    flag, value = option
    assert_one_line_error(
        invoke("dump", samples.cnn_h5, flag, value, "-o", dest), 2, flag if "nope" not in value else "nope"
    )


def test_model_fails_to_run(samples: Samples, dest: Path) -> None:
    """Token ids beyond the Embedding's input_dim make the graph fail: exit 1, nothing written, and the
    line names the cause and the op or layer that failed."""
    line = assert_one_line_error(
        invoke("dump", samples.multi_io_h5, "--value-range", "tokens=1000,2000", "-o", dest), 1, "fail"
    )
    assert "is not in [0, 50)" in line, line
    assert "embed" in line, "names the op or layer that failed"


# ---------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    "args",
    [
        ("dump", "-t", "("),
        ("dump", "-l", "[a-"),
        ("dump", "-t", "conv1", "-t", "*"),
        ("list", "--match", "("),
    ],
)
def test_regex_that_does_not_compile(samples: Samples, dest: Path, args: tuple[str, ...]) -> None:
    command, *rest = args
    extra = ["-o", str(dest)] if command == "dump" else []
    assert_one_line_error(invoke(command, samples.cnn_h5, *rest, *extra), 2, "regular expression")


def test_pattern_matching_nothing_suggests_wildcards(samples: Samples, dest: Path) -> None:
    line = assert_one_line_error(
        invoke("dump", *RCNN, "-t", "NonMaxSuppressionV3", "-o", dest), 2, "NonMaxSuppressionV3"
    )
    assert ".*NonMaxSuppressionV3.*" in line
    assert "ROI/" in line, "names an existing tensor"


def test_pattern_matching_nothing_names_closest(samples: Samples, dest: Path) -> None:
    line = assert_one_line_error(invoke("dump", samples.cnn_h5, "-t", "conv9/Relu:0", "-o", dest), 2, "conv9/Relu:0")
    assert "conv1/Relu:0" in line or "conv2/Relu:0" in line


def test_layer_pattern_matching_nothing(samples: Samples, dest: Path) -> None:
    line = assert_one_line_error(invoke("dump", samples.cnn_h5, "-l", "conv", "-o", dest), 2, "--layer", "conv")
    assert ".*conv.*" in line


def test_one_bad_pattern_among_good_ones(samples: Samples, dest: Path) -> None:
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-t", "conv1/Relu:0", "-t", "Nope", "-o", dest), 2, "Nope")


# ---------------------------------------------------------------- destination


def test_output_directory_missing(samples: Samples, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.h5"
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", target), 2, "missing", "does not exist")
    assert not target.parent.exists()


def test_output_parent_is_a_file(samples: Samples, tmp_path: Path) -> None:
    parent = tmp_path / "regular_file"
    parent.write_text("I am a file")
    result = invoke("dump", samples.cnn_h5, "-l", "probs", "-o", parent / "out.h5")
    assert_one_line_error(result, 2, "regular_file", "not a directory")
    assert parent.read_text() == "I am a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regular_file"]


def test_output_is_a_directory(samples: Samples, tmp_path: Path) -> None:
    target = tmp_path / "dir.h5"
    target.mkdir()
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", target), 2, "directory")
    assert list(target.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_directory_not_writable(samples: Samples, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_one_line_error(invoke("dump", samples.cnn_h5, "-l", "probs", "-o", locked / "out.h5"), 2, "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("where", ["before the command", "after it"])
def test_debug_shows_the_exception(tmp_path: Path, where: str) -> None:
    """With --debug the ProbeError propagates (and Python prints its traceback), wherever it is given."""
    from probe_cli.core.errors import FileProblem

    args = (
        ["--debug", "list", tmp_path / "nope.h5"]
        if where == "before the command"
        else ["list", tmp_path / "nope.h5", "--debug"]
    )
    with pytest.raises(FileProblem, match="does not exist"):
        invoke(*args)
    # the next invocation without it is back to one line
    assert_one_line_error(invoke("list", tmp_path / "nope.h5"), 2, "does not exist")


def test_usage_errors_are_one_line(samples: Samples) -> None:
    assert_one_line_error(invoke("dump", samples.cnn_h5, "--no-such-option"), 2, "--no-such-option")
    assert_one_line_error(invoke("dump"), 2, "MODEL")
    assert_one_line_error(invoke("dump", samples.cnn_h5, "--batch-size", "0"), 2, "batch-size")
    assert_one_line_error(invoke("--no-such-option"), 2, "--no-such-option")
    assert_one_line_error(invoke("no-such-command"), 2, "no-such-command")


# ---------------------------------------------------------------- interrupted and failed writes


def _fail_on_second_write(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Makes the archive writer raise ``error`` after it has written one dataset."""
    from probe_cli.archive.writer import ArchiveWriter

    original = ArchiveWriter.stream
    calls = {"n": 0}

    def stream(self: ArchiveWriter, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise error
        original(self, *args, **kwargs)

    monkeypatch.setattr(ArchiveWriter, "stream", stream)


def test_interrupt_midway_leaves_nothing(samples: Samples, monkeypatch: pytest.MonkeyPatch, dest: Path) -> None:
    _fail_on_second_write(monkeypatch, KeyboardInterrupt())
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", dest), 130, INTERRUPTED_MESSAGE)


def _chained(
    error: Exception, *, cause: BaseException | None = None, context: BaseException | None = None
) -> Exception:
    """``error`` as raised ``from cause`` while handling ``context``."""
    error.__cause__, error.__context__ = cause, context
    return error


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        # pybind11's import failure: ImportError from the KeyboardInterrupt
        (_chained(ImportError("initialization failed"), cause=KeyboardInterrupt()), 130, INTERRUPTED_MESSAGE),
        (_chained(ArchiveError("cannot write", hint="retry"), cause=KeyboardInterrupt()), 130, INTERRUPTED_MESSAGE),
        # the interrupt behind an unrelated explicit cause
        (_chained(RuntimeError("x"), cause=ValueError("y"), context=KeyboardInterrupt()), 130, INTERRUPTED_MESSAGE),
        # no interrupt anywhere in the chain: an unexpected error, as before
        (_chained(ImportError("initialization failed"), cause=OSError("no such file")), 1, "unexpected ImportError"),
    ],
    ids=["import-error", "probe-error", "context-behind-cause", "no-interrupt"],
)
def test_an_error_caused_by_an_interrupt_is_an_interrupt(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, dest: Path, error: Exception, code: int, message: str
) -> None:
    """A signal during ``import tensorflow`` came back as ``ImportError: initialization failed`` (exit 1) in CI."""
    monkeypatch.setattr(interrupt, "_requested", False)
    _fail_on_second_write(monkeypatch, error)
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", dest), code, message)


def test_an_error_after_a_signal_is_an_interrupt(samples: Samples, monkeypatch: pytest.MonkeyPatch, dest: Path) -> None:
    """An extension module may drop the KeyboardInterrupt from the chain; the signal handler's record still counts."""
    from probe_cli.archive.writer import ArchiveWriter
    from probe_cli.cli import commands as cli

    monkeypatch.setattr(interrupt, "_requested", False)

    def stream(self: ArchiveWriter, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(KeyboardInterrupt):
            cli._interrupt(signal.SIGTERM, None)
        raise ImportError("initialization failed")  # raised outside the handler: no chain

    monkeypatch.setattr(ArchiveWriter, "stream", stream)
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", dest), 130, INTERRUPTED_MESSAGE)


def test_interrupt_with_force_keeps_old_archive(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "old.h5"
    target.write_bytes(b"previous archive")
    _fail_on_second_write(monkeypatch, KeyboardInterrupt())
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", target, "--force"), 130, INTERRUPTED_MESSAGE)
    assert target.read_bytes() == b"previous archive"
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]


def test_disk_full_midway_keeps_old_archive(samples: Samples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "old.h5"
    target.write_bytes(b"previous archive")
    _fail_on_second_write(monkeypatch, OSError(28, "No space left on device"))
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", target, "--force"), 1, "No space left on device")
    assert target.read_bytes() == b"previous archive"
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """What Python drops as "Exception ignored in ...", collected instead of printed."""
    dropped: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda arg: dropped.append(arg.exc_value))
    return dropped


class _SignalledOnCollection:
    """Receives the signal in ``__del__``, where Python drops the KeyboardInterrupt."""

    def __del__(self) -> None:
        from probe_cli.cli import commands as cli

        cli._interrupt(signal.SIGINT, None)


def test_a_signal_whose_exception_is_lost_still_stops_the_dump(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, dest: Path, unraisable: list[BaseException | None]
) -> None:
    """A signal landing in a ``__del__`` (or an import that swallows everything) ran the dump to the end: exit 0."""
    from probe_cli.archive.writer import ArchiveWriter

    monkeypatch.setattr(interrupt, "_requested", False)
    original = ArchiveWriter.stream

    def stream(self: ArchiveWriter, *args: Any, **kwargs: Any) -> None:
        _SignalledOnCollection()  # collected at once: "Exception ignored in ... KeyboardInterrupt"
        original(self, *args, **kwargs)

    monkeypatch.setattr(ArchiveWriter, "stream", stream)
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", dest), 130, INTERRUPTED_MESSAGE)
    assert unraisable and all(isinstance(exc, KeyboardInterrupt) for exc in unraisable)


def test_a_lost_signal_interrupts_a_command_that_writes_nothing(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, unraisable: list[BaseException | None]
) -> None:
    from probe_cli.cli import render

    monkeypatch.setattr(interrupt, "_requested", False)
    original = render.render_index

    def render_index(*args: Any, **kwargs: Any) -> None:
        _SignalledOnCollection()
        original(*args, **kwargs)

    monkeypatch.setattr(render, "render_index", render_index)
    result = invoke("list", samples.cnn_h5, "--layers")
    assert (result.exit_code, result.stderr.splitlines()) == (130, [f"Error: {INTERRUPTED_MESSAGE}"])
    assert len(unraisable) == 1


def test_a_signal_of_one_invocation_does_not_stop_the_next(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, unraisable: list[BaseException | None]
) -> None:
    """A script or notebook running the CLI in-process again after a Ctrl-C: the old signal is forgotten."""
    from probe_cli.cli import render

    monkeypatch.setattr(interrupt, "_requested", False)
    original, calls = render.render_index, []

    def render_index(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            _SignalledOnCollection()
        original(*args, **kwargs)

    monkeypatch.setattr(render, "render_index", render_index)
    assert invoke("list", samples.cnn_h5, "--layers").exit_code == 130
    assert ok(invoke("list", samples.cnn_h5, "--layers")).stdout and not interrupt.requested()


def test_a_signal_while_the_archive_is_published_says_it_was_written(
    samples: Samples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Too late to stop the publishing: exit 130 all the same, and the message does not deny the archive."""
    from probe_cli.archive import writer
    from probe_cli.cli import commands as cli

    dest = tmp_path / "out.h5"
    monkeypatch.setattr(interrupt, "_requested", False)
    link = os.link

    def link_then_signal(src: Any, dst: Any) -> None:
        link(src, dst)
        cli._interrupt(signal.SIGTERM, None)  # recorded, not raised, while publishing

    monkeypatch.setattr(writer.os, "link", link_then_signal)
    assert_one_line_error(invoke("dump", samples.cnn_h5, "-o", dest), 130, f"interrupted after writing {str(dest)!r}")
    assert "probs/Softmax:0" in tensors_of(dest)
