"""Unit tests of ``probe_cli.archive``: layout, attributes, atomic writes, reading back (no TensorFlow)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from probe_cli.archive import writer as archive_module
from probe_cli.archive.format import FORMAT_VERSION, dataset_path, tensor_attrs
from probe_cli.archive.reader import list_tensors, open_archive, read_attrs, read_inputs
from probe_cli.archive.writer import ArchiveWriter, check_destination, write_archive
from probe_cli.core.errors import USAGE, ArchiveError, ArchiveExists, FileProblem
from probe_cli.core.types import Execution, Feed, TensorInfo

ROOT_ATTRS = {
    "probe_version": "0.1.0",
    "tensorflow_version": "2.99.0",
    "keras_version": "3.99.0",
    "model_path": "/models/mini_rcnn.h5",
    "model_sha256": "ab" * 32,
    "seed": 7,
    "command": "probe dump mini_rcnn.h5 --tensor 'ROI/.*NonMax.*'",
    "created": "2024-01-01T00:00:00+00:00",
}


def info(
    name: str, order: int, layer: str | None = "conv1", op_type: str = "Relu", dtype: str = "float32"
) -> TensorInfo:
    """A TensorInfo built by hand."""
    return TensorInfo(name, f"mini_rcnn_1/{name}", op_type, dtype, (None, 2), layer, order)


def sample_tensors() -> list[tuple[TensorInfo, np.ndarray]]:
    """Tensors of several dtypes and ranks, in graph order."""
    return [
        (info("conv1/Relu:0", 0), np.arange(6, dtype=np.float32).reshape(2, 3)),
        (info("ROI/map/while/NonMaxSuppressionV3:0", 1, "ROI", "NonMaxSuppressionV3", "int32"), np.array([3, 1, 0])),
        (info("ROI/unstack:1", 2, "ROI", "Unpack"), np.float32(1.5)),
        (info("mask:0", 3, None, "Greater", "bool"), np.array([[True, False]])),
        (info("empty:0", 4, None, "Slice"), np.zeros((0, 4), np.float64)),
        (info("half:0", 5, None, "Cast", "float16"), np.array([0.5, -2.0, np.inf], np.float16)),
    ]


def sample_feeds() -> list[Feed]:
    """Two fed inputs: one from a file, one random."""
    return [
        Feed("image", np.linspace(0, 1, 8, dtype=np.float32).reshape(1, 2, 2, 2), "/data/image.npy"),
        Feed("tokens", np.array([[1, 2, 3]], np.int32), "random"),
    ]


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """A complete archive of the sample tensors and feeds."""
    return write_archive(tmp_path / "out.h5", sample_tensors(), sample_feeds(), ROOT_ATTRS, seed=7)


def entries(directory: Path) -> list[str]:
    """Everything in a directory, temporary files included."""
    return sorted(os.listdir(directory))


# --- layout and attributes ----------------------------------------------------------------------


def test_layout_with_plain_h5py(written: Path) -> None:
    with h5py.File(written, "r") as f:
        assert set(f.keys()) == {"tensors", "inputs"}
        paths: list[str] = []
        f.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert sorted(paths) == sorted(
        [
            "inputs/image",
            "inputs/tokens",
            "tensors/conv1/Relu:0",
            "tensors/ROI/map/while/NonMaxSuppressionV3:0",
            "tensors/ROI/unstack:1",
            "tensors/mask:0",
            "tensors/empty:0",
            "tensors/half:0",
        ]
    )


def test_dataset_path_follows_tensor_name() -> None:
    assert dataset_path("conv1/Relu:0") == "tensors/conv1/Relu:0"


def test_values_read_back_identical(written: Path) -> None:
    with h5py.File(written, "r") as f:
        for tensor, value in sample_tensors():
            stored = f[dataset_path(tensor.name)][()]
            assert stored.dtype == np.asarray(value).dtype, tensor.name
            assert np.shape(stored) == np.shape(value)
            np.testing.assert_array_equal(stored, value)
        for feed in sample_feeds():
            np.testing.assert_array_equal(f["inputs"][feed.name][()], feed.array)


def test_dataset_attributes(written: Path) -> None:
    with h5py.File(written, "r") as f:
        attrs = dict(f["tensors/ROI/map/while/NonMaxSuppressionV3:0"].attrs)
        no_layer = dict(f["tensors/mask:0"].attrs)
    assert {k: attrs[k] for k in ("name", "graph_name", "op_type", "layer", "dtype")} == {
        "name": "ROI/map/while/NonMaxSuppressionV3:0",
        "graph_name": "mini_rcnn_1/ROI/map/while/NonMaxSuppressionV3:0",
        "op_type": "NonMaxSuppressionV3",
        "layer": "ROI",
        "dtype": "int32",
    }
    assert attrs["order"] == 1
    assert no_layer["layer"] == ""


def test_input_attributes(written: Path) -> None:
    with h5py.File(written, "r") as f:
        image = dict(f["inputs/image"].attrs)
        tokens = dict(f["inputs/tokens"].attrs)
    assert image["name"] == "image" and image["source"] == "/data/image.npy" and image["seed"] == 7
    assert image["dtype"] == "float32"
    assert tokens["source"] == "random" and tokens["seed"] == 7 and tokens["dtype"] == "int32"


def test_root_attributes(written: Path) -> None:
    with h5py.File(written, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    for key, value in ROOT_ATTRS.items():
        assert attrs[key] == value, key
    assert attrs["probe_format"] == FORMAT_VERSION


def test_structured_and_none_root_attrs(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a.h5", [], [], {**ROOT_ATTRS, "extra": {"a": [1, 2]}, "nothing": None}, seed=0)
    with open_archive(path) as f:
        attrs = read_attrs(f)
    assert attrs["extra"] == '{"a": [1, 2]}' and attrs["nothing"] == ""


def test_string_tensors_round_trip(tmp_path: Path) -> None:
    tensors = [
        (info("bytes:0", 0, None, "Const", "string"), np.array([b"abc", b"de"], dtype=object)),
        (info("text:0", 1, None, "Const", "string"), np.array(["h\u00e9llo", "w"])),
    ]
    path = write_archive(tmp_path / "s.h5", tensors, [], ROOT_ATTRS, seed=0)
    with h5py.File(path, "r") as f:
        assert f["tensors/bytes:0"][()].tolist() == [b"abc", b"de"]
        assert [v.decode() for v in f["tensors/text:0"][()]] == ["h\u00e9llo", "w"]


# --- reading back -------------------------------------------------------------------------------


def test_list_tensors_in_graph_order(tmp_path: Path) -> None:
    """Order comes from the ``order`` attribute, not HDF5's alphabetical listing."""
    tensors = [(info(name, i), np.full((2,), i, np.float32)) for i, name in enumerate(["z/op:0", "b:0", "a/x:1"])]
    path = write_archive(tmp_path / "o.h5", tensors, [], ROOT_ATTRS, seed=0)
    with open_archive(path) as f:
        stored = list_tensors(f)
    assert [t.name for t in stored] == ["z/op:0", "b:0", "a/x:1"]
    assert [t.path for t in stored] == ["/tensors/z/op:0", "/tensors/b:0", "/tensors/a/x:1"]
    assert all(t.shape == (2,) and t.dtype == "float32" for t in stored)
    assert stored[0].attrs["graph_name"] == "mini_rcnn_1/z/op:0" and stored[0].attrs["order"] == 0


def test_read_attrs_and_inputs(written: Path) -> None:
    with open_archive(written) as f:
        attrs = read_attrs(f)
        inputs = read_inputs(f)
    assert attrs["probe_version"] == "0.1.0" and attrs["seed"] == 7 and isinstance(attrs["seed"], int)
    assert set(inputs) == {"image", "tokens"}
    array, meta = inputs["tokens"]
    assert array.tolist() == [[1, 2, 3]] and meta["source"] == "random" and meta["seed"] == 7


def test_open_archive_closes_what_it_opened(written: Path) -> None:
    with open_archive(written) as f:
        handle = f
        assert handle.id.valid
    assert not handle.id.valid


def test_open_archive_leaves_a_given_file_open(written: Path) -> None:
    with h5py.File(written, "r") as f:
        with open_archive(f) as same:
            assert same is f
        assert f.id.valid


def test_open_archive_missing(tmp_path: Path) -> None:
    path = tmp_path / "none.h5"
    with pytest.raises(FileProblem) as error:
        with open_archive(path):
            pass
    assert error.value.message == f"archive {str(path)!r} does not exist"


def test_open_archive_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(FileProblem) as error:
        with open_archive(path):
            pass
    assert error.value.message == f"{str(path)!r} is not an HDF5 file, so not a probe archive"
    assert error.value.exit_code == USAGE


def test_open_archive_hdf5_but_not_probe(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.create_dataset("model_weights/w", data=np.zeros(3))
    with pytest.raises(FileProblem) as error:
        with open_archive(path):
            pass
    assert error.value.message == (
        f"{str(path)!r} is an HDF5 file but not a probe archive (no probe_version attribute)"
    )


# --- refusing destinations ----------------------------------------------------------------------


def test_existing_file_refused_without_force(written: Path) -> None:
    before = written.read_bytes()
    with pytest.raises(ArchiveExists) as error:
        write_archive(written, sample_tensors()[:1], [], ROOT_ATTRS, seed=0)
    assert error.value.message == f"archive {str(written)!r} already exists"
    assert error.value.hint == "pass --force to overwrite it, or -o to choose another path"
    assert error.value.exit_code == USAGE
    assert written.read_bytes() == before
    assert entries(written.parent) == ["out.h5"]


def test_force_overwrites(written: Path) -> None:
    write_archive(written, sample_tensors()[:1], [], {**ROOT_ATTRS, "seed": 99}, seed=99, force=True)
    with open_archive(written) as f:
        assert [t.name for t in list_tensors(f)] == ["conv1/Relu:0"]
        assert read_attrs(f)["seed"] == 99
    assert entries(written.parent) == ["out.h5"]


def test_destination_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ArchiveExists, match="is a directory"):
        check_destination(tmp_path, force=True)


def test_output_directory_missing(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "out.h5"
    with pytest.raises(FileProblem) as error:
        write_archive(path, [], [], ROOT_ATTRS, seed=0)
    assert error.value.message == f"output directory {str(path.parent)!r} does not exist"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_directory_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(FileProblem, match="is not writable"):
        write_archive(locked / "out.h5", [], [], ROOT_ATTRS, seed=0)


# --- atomic writes ------------------------------------------------------------------------------


def test_no_temporary_litter_after_success(written: Path) -> None:
    assert entries(written.parent) == ["out.h5"]


def test_archive_mode_follows_umask(tmp_path: Path) -> None:
    """The temporary file is created 0600; the finished archive gets a normal file's mode."""
    old = os.umask(0o022)
    try:
        path = write_archive(tmp_path / "m.h5", [], [], ROOT_ATTRS, seed=0)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def failing_tensors(exc: BaseException) -> Iterator[tuple[TensorInfo, np.ndarray]]:
    """Yields one tensor, then fails the way a run can fail midway."""
    yield sample_tensors()[0]
    raise exc


@pytest.mark.parametrize("exc", [RuntimeError("graph failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_failure_midway_leaves_nothing(tmp_path: Path, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        write_archive(tmp_path / "out.h5", failing_tensors(exc), sample_feeds(), ROOT_ATTRS, seed=0)
    assert entries(tmp_path) == []


def test_failure_midway_keeps_existing_archive(written: Path) -> None:
    before = written.read_bytes()
    with pytest.raises(RuntimeError):
        write_archive(written, failing_tensors(RuntimeError("x")), [], ROOT_ATTRS, seed=0, force=True)
    assert written.read_bytes() == before
    assert entries(written.parent) == ["out.h5"]


def test_ctrl_c_between_removing_the_old_archive_and_the_rename(written: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--force removes the old archive before renaming the new one into place; interrupted right
    there, the complete new archive still takes its place."""
    real_replace = os.replace
    calls = []

    def interrupted_once(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("probe_cli.archive.writer.os.replace", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        write_archive(written, sample_tensors()[:1], [], {**ROOT_ATTRS, "seed": 99}, seed=99, force=True)
    assert len(calls) == 2
    with open_archive(written) as f:
        assert read_attrs(f)["seed"] == 99
    assert entries(written.parent) == ["out.h5"]


def test_duplicate_tensor_name_is_an_archive_error(tmp_path: Path) -> None:
    tensors = [sample_tensors()[0], sample_tensors()[0]]
    with pytest.raises(ArchiveError) as error:
        write_archive(tmp_path / "dup.h5", tensors, [], ROOT_ATTRS, seed=0)
    assert error.value.message.startswith("cannot store tensor 'conv1/Relu:0': ")
    assert entries(tmp_path) == []


def test_writer_context_aborts_on_exception(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"):
        with ArchiveWriter(tmp_path / "w.h5") as writer:
            writer.set_attrs(ROOT_ATTRS)
            writer.add_tensor(*sample_tensors()[0])
            raise ValueError("boom")
    assert entries(tmp_path) == []


def test_writer_context_commits(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path / "w.h5") as writer:
        writer.set_attrs(ROOT_ATTRS)
        writer.add_input(sample_feeds()[0], seed=3)
        writer.add_tensor(*sample_tensors()[0])
        assert (tmp_path / "w.h5").exists() is False  # nothing at the destination until complete
    assert entries(tmp_path) == ["w.h5"]
    with open_archive(tmp_path / "w.h5") as f:
        assert [t.name for t in list_tensors(f)] == ["conv1/Relu:0"]


@pytest.mark.parametrize("force", [False, True], ids=["link", "replace"])
@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["enospc", "ctrl-c"])
def test_failing_publish_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, force: bool
) -> None:
    """Publishing links the archive into place (rename with --force); either failing leaves no file."""

    def fail(*_: Any) -> None:
        raise exc

    monkeypatch.setattr(archive_module.os, "replace", fail)
    monkeypatch.setattr(archive_module.os, "link", fail)
    expected = ArchiveError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as error:
        write_archive(tmp_path / "out.h5", sample_tensors(), sample_feeds(), ROOT_ATTRS, seed=0, force=force)
    if expected is ArchiveError:
        assert "No space left on device" in str(error.value) and "out.h5" in str(error.value)
    assert entries(tmp_path) == []


def test_failing_open_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(archive_module.h5py, "File", refuse)
    with pytest.raises(ArchiveError, match="Permission denied"):
        write_archive(tmp_path / "out.h5", [], [], ROOT_ATTRS, seed=0)
    assert entries(tmp_path) == []


def test_fast_attribute_writer_matches_h5py(tmp_path: Path) -> None:
    """``write_attrs`` takes a shortcut for strings and integers; readers must not see a difference."""
    attrs = {
        "name": "conv1/Relu:0",
        "layer": "größe ✓",
        "empty": "",
        "none": None,
        "order": 3,
        "big": -(2**40),
        "numpy_int": np.int64(7),
        "int32": np.int32(-5),
        "uint64": np.uint64(2**64 - 1),
        "huge": 2**63,
        "flag": True,
        "ratio": 0.25,
        "shape": [1, 2],
        "steps": np.arange(3),
    }
    with h5py.File(tmp_path / "a.h5", "w") as file:
        fast = file.create_dataset("fast", data=np.zeros(2))
        slow = file.create_dataset("slow", data=np.zeros(2))
        archive_module.write_attrs(fast, attrs)
        slow.attrs.update({k: archive_module._attr(v) for k, v in attrs.items()})
        for key in attrs:
            a, b = fast.attrs[key], slow.attrs[key]
            assert type(a) is type(b), key
            np.testing.assert_array_equal(a, b)
            assert fast.attrs.get_id(key).get_type() == slow.attrs.get_id(key).get_type(), key


def test_executions_across_batches_and_a_branch_that_never_ran(tmp_path: Path) -> None:
    """Steps numbered across batches; the group's arrays say each step's iteration and batch."""
    body = replace(info("ROI/map/while/body/NonMaxSuppressionV3:0", 1), context="loop ROI/map/while/body")
    branch = replace(info("gate/cond/then/Relu:0", 2), context="branch gate/cond/then")
    with ArchiveWriter(tmp_path / "w.h5") as writer:
        writer.set_attrs(ROOT_ATTRS)
        for batch, iterations in enumerate(([0, 1, 2], [0, 1])):
            runs = [Execution(i, (i,), np.full(2, 10 * batch + i, np.float32)) for i in iterations]
            writer.executions(tensor_attrs(body), runs, batch)
            writer.executions(tensor_attrs(branch), [], batch)
    with h5py.File(tmp_path / "w.h5", "r") as f:
        group = f[dataset_path(body.name)]
        assert group.attrs["layout"] == "per_iteration" and group.attrs["count"] == 5
        assert group.attrs["iterations"].tolist() == [0, 1, 2, 0, 1]
        assert group.attrs["batches"].tolist() == [0, 0, 0, 1, 1]
        assert [group[f"step_{k:06d}"][0] for k in range(5)] == [0, 1, 2, 10, 11]
        assert group["step_000004"].attrs["path"] == "[1]" and group["step_000004"].attrs["batch"] == 1
        never = f[dataset_path(branch.name)]
        assert never.attrs["count"] == 0 and len(never) == 0 and never.attrs["iterations"].tolist() == []


def test_executions_beyond_what_an_attribute_header_holds(tmp_path: Path) -> None:
    """An LSTM over thousands of samples: 9,000 steps need 72 KiB of ``iterations``, more than the
    64 KiB an attribute can take in an object header."""
    body = replace(info("lstm/while/body/Tanh:0", 1), context="loop lstm/while/body")
    with ArchiveWriter(tmp_path / "w.h5") as writer:
        writer.set_attrs(ROOT_ATTRS)
        for batch in range(3):
            writer.executions(tensor_attrs(body), [Execution(i, (i,), np.float32(i)) for i in range(3000)], batch)
    with open_archive(tmp_path / "w.h5") as f:
        group = f[dataset_path(body.name)]
        assert group.attrs["count"] == 9000
        assert group.attrs["iterations"].tolist() == list(range(3000)) * 3
        assert group.attrs["batches"].tolist() == [0] * 3000 + [1] * 3000 + [2] * 3000
        (stored,) = list_tensors(f)
        assert stored.parts == 9000


def test_an_archive_that_appears_while_writing_is_never_replaced(tmp_path: Path) -> None:
    """Without --force, the destination is checked again at the moment of publishing (a hard link
    fails if the name exists), so a concurrent dump's archive survives and this one is not published."""
    dest = tmp_path / "out.h5"
    with pytest.raises(ArchiveExists, match="appeared while this dump ran") as error:
        with ArchiveWriter(dest) as writer:
            writer.set_attrs(ROOT_ATTRS)
            dest.write_bytes(b"the other dump's archive")
    assert error.value.exit_code == USAGE
    assert dest.read_bytes() == b"the other dump's archive" and entries(tmp_path) == ["out.h5"]
    with ArchiveWriter(dest, force=True) as writer:
        writer.set_attrs(ROOT_ATTRS)
    with open_archive(dest) as f:
        assert read_attrs(f)["probe_version"] == ROOT_ATTRS["probe_version"]
