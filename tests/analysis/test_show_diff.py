"""``probe show`` and ``probe diff`` on archives written without TensorFlow, so these tests run in seconds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import assert_one_line_error, invoke, ok

from probe_cli.analysis import diff as inspect_diff
from probe_cli.analysis import show as inspect_show
from probe_cli.archive import reader as archive_reader
from probe_cli.archive.format import GRAPH
from probe_cli.archive.writer import write_archive
from probe_cli.cli import commands as cli_module
from probe_cli.core.graph import GraphNode, ModelGraph
from probe_cli.core.stats import summarize
from probe_cli.core.types import TensorInfo
from probe_cli.feed import Feed

PROVENANCE = {
    "probe_version": "0.1.0",
    "tensorflow_version": "2.99.0",
    "keras_version": "3.99.0",
    "model_path": "/models/net.h5",
    "model_sha256": "ab" * 32,
    "model_format": "keras-h5",
    "command": "probe dump /models/net.h5 -o a.h5",
    "created": "2024-01-02T03:04:05+00:00",
    "batch_size": 1,
}


def base_tensors() -> dict[str, np.ndarray]:
    """Graph order on purpose not alphabetical, so sorting by name would show."""
    rng = np.random.default_rng(7)
    return {
        "x:0": rng.random((2, 3), dtype=np.float32),
        "zeta/Conv2D:0": np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 1,
        "beta/Relu:0": np.array([1.0, 2.0, 3.0, np.nan, np.inf], dtype=np.float32),
        "alpha/Softmax:0": np.full((2, 4), 0.25, dtype=np.float32),
    }


def make_archive(
    path: Path,
    tensors: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    inputs: Mapping[str, np.ndarray] | None = None,
    source: str = "random",
) -> Path:
    """An archive as dump writes it; tensors keep the mapping's order as graph order."""
    tensors = base_tensors() if tensors is None else tensors
    if inputs is None:
        inputs = {"x": np.random.default_rng(seed).random((2, 3), dtype=np.float32)}
    pairs = [
        (
            TensorInfo(
                name=name,
                graph_name=f"net_1/{name}",
                op_type=name.rpartition(":")[0].rpartition("/")[2] or "Placeholder",
                dtype=str(value.dtype),
                shape=value.shape,
                layer=name.partition("/")[0] if "/" in name else None,
                order=order,
            ),
            value,
        )
        for order, (name, value) in enumerate(tensors.items())
    ]
    feeds = [Feed(name, array, source) for name, array in inputs.items()]
    return write_archive(path, pairs, feeds, {**PROVENANCE, "seed": seed}, seed=seed)


def rows(text: str) -> list[list[str]]:
    """Plain (piped) tables as split rows, so column widths do not matter."""
    return [line.split() for line in text.splitlines()]


# --------------------------------------------------------------------------- show


def test_show_prints_provenance_and_tensors_in_graph_order(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.h5")
    result = ok(invoke("show", archive))
    out = result.stdout
    assert f"Archive:  {archive}" in out
    assert "Model:    /models/net.h5 (keras-h5)" in out
    assert "SHA-256:  " + "ab" * 32 in out
    assert "Versions: probe 0.1.0, tensorflow 2.99.0, keras 3.99.0" in out
    assert "Samples:  ?, batch size 1" in out  # written without sample counts
    assert "Seed:     0 (of the random inputs)" in out
    assert "Command:  probe dump /models/net.h5 -o a.h5" in out
    assert "Created:  2024-01-02T03:04:05+00:00" in out
    assert ["x", "(2,", "3)", "float32", "random,", "seed", "0"] in rows(out)
    names = [line.split()[0] for line in out.split("Tensors (4):")[1].strip().splitlines()[1:]]
    assert names == ["x:0", "zeta/Conv2D:0", "beta/Relu:0", "alpha/Softmax:0"]
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("beta/Relu:0"))
    # name, shape "(5,)", dtype, min, max, mean, std, nan, inf over the finite values 1, 2, 3
    assert row == ["beta/Relu:0", "(5,)", "float32", "1", "3", "2", f"{math.sqrt(2 / 3):.6g}", "1", "1"]


def test_show_says_what_a_reader_needs_and_keeps_the_rest_for_json(tmp_path: Path) -> None:
    """It printed raw attributes (fingerprint:75a6..., sample_start:0) and a seed for inputs read from files."""
    archive = make_archive(tmp_path / "a.h5", seed=5, source="x.npy")
    with h5py.File(archive, "r+") as f:
        attrs = {"fingerprint": "75a6" * 16, "sample_start": 128, "sample_stop": 256, "samples_total": 256}
        f.attrs.update({**attrs, "shard": "1/2", "samples": 128})
        f["inputs/x"].attrs["converted_from"] = "float64"
    out = ok(invoke("show", archive)).stdout
    head = out.split("Inputs (1):")[0].splitlines()
    assert [line.split(":")[0] for line in head if line] == [
        "Archive", "Model", "SHA-256", "Samples", "Versions", "Command", "Created"
    ]  # fmt: skip
    assert "Samples:  128-255 of 256 (shard 1/2), batch size 1" in head
    assert "fingerprint" not in out and "sample_start" not in out and "Seed" not in out
    assert ["x", "(2,", "3)", "float32", "x.npy", "(float64,", "converted)"] in rows(out)
    doc = json.loads(ok(invoke("show", archive, "--json")).stdout)
    assert doc["extra_attributes"]["fingerprint"] == "75a6" * 16 and doc["provenance"]["seed"] == 5
    assert doc["inputs"][0]["converted_from"] == "float64"


def test_show_json_has_stable_keys_and_exact_statistics(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.h5", seed=3)
    result = ok(invoke("show", archive, "--json"))
    doc = json.loads(result.stdout)
    assert doc["provenance"]["model_sha256"] == "ab" * 32
    assert doc["provenance"]["seed"] == 3
    assert doc["inputs"] == [{"name": "x", "shape": [2, 3], "dtype": "float32", "source": "random", "seed": 3}]
    beta = doc["tensors"][2]
    assert beta["name"] == "beta/Relu:0"
    assert beta["graph_name"] == "net_1/beta/Relu:0"
    assert beta["op_type"] == "Relu"
    assert beta["layer"] == "beta"
    assert beta["shape"] == [5]
    assert (beta["min"], beta["max"], beta["mean"], beta["nan"], beta["inf"]) == (1.0, 3.0, 2.0, 1, 1)
    assert beta["std"] == pytest.approx(math.sqrt(2 / 3))
    zeta = doc["tensors"][1]
    assert (zeta["min"], zeta["max"], zeta["mean"]) == (1.0, 24.0, 12.5)


def test_show_match_uses_the_resolver_semantics(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.h5")
    by_op_name = json.loads(ok(invoke("show", archive, "--match", "zeta/Conv2D", "--json")).stdout)
    assert [t["name"] for t in by_op_name["tensors"]] == ["zeta/Conv2D:0"]
    assert by_op_name["total_tensors"] == 4
    several = json.loads(ok(invoke("show", archive, "--match", ".*/.*", "--match", "x:0", "--json")).stdout)
    assert [t["name"] for t in several["tensors"]] == ["x:0", "zeta/Conv2D:0", "beta/Relu:0", "alpha/Softmax:0"]
    plain = ok(invoke("show", archive, "--match", "beta/.*"))
    assert "Tensors (1 of 4):" in plain.stdout
    # a partial match is no match, as in dump; the error names the fix
    line = assert_one_line_error(invoke("show", archive, "--match", "Conv2D"), 2)
    assert line.startswith("Error: --match 'Conv2D' matches no tensor")
    assert "'.*Conv2D.*'" in line
    bad = invoke("show", archive, "--match", "(")
    assert bad.exit_code == 2
    assert "not a valid regular expression" in bad.stderr


def test_show_errors_on_missing_and_foreign_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    assert assert_one_line_error(invoke("show", missing), 2) == f"Error: archive {str(missing)!r} does not exist"
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    assert "is not an HDF5 file, so not a probe archive" in assert_one_line_error(invoke("show", text), 2)
    foreign = tmp_path / "weights.h5"
    with h5py.File(foreign, "w") as f:
        f["layer/kernel"] = np.ones(3)
    assert "is an HDF5 file but not a probe archive" in assert_one_line_error(invoke("show", foreign), 2)


def test_show_tolerates_archives_lacking_newer_attributes(tmp_path: Path) -> None:
    old = tmp_path / "old.h5"
    with h5py.File(old, "w") as f:
        f.attrs["probe_version"] = "0.0.1"
        f["tensors/conv/Relu:0"] = np.array([[1.0, -1.0]], dtype=np.float32)
        f["inputs/x"] = np.zeros((1, 2), dtype=np.float32)  # no attributes at all
    result = ok(invoke("show", old))
    assert "Model:    -" in result.stdout
    assert "Versions: probe 0.0.1" in result.stdout
    assert ["x", "(1,", "2)", "float32", "-"] in rows(result.stdout)
    doc = json.loads(ok(invoke("show", old, "--json")).stdout)
    assert doc["provenance"]["seed"] is None
    assert doc["tensors"] == [
        {
            "name": "conv/Relu:0",
            "graph_name": "conv/Relu:0",
            "op_type": None,
            "layer": None,
            "shape": [1, 2],
            "parts": None,
            "dtype": "float32",
            "min": -1.0,
            "max": 1.0,
            "mean": 0.0,
            "std": 1.0,
            "nan": 0,
            "inf": 0,
        }
    ]


def test_statistics_are_computed_in_bounded_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(1).normal(5.0, 2.0, size=(50, 3)).astype(np.float32)
    values[7, 1], values[33, 2] = np.nan, -np.inf
    archive = make_archive(tmp_path / "a.h5", {"big:0": values})
    reads: list[Any] = []
    original = archive_reader.read_slice
    monkeypatch.setattr(archive_reader, "CHUNK_ELEMENTS", 7)  # 2 rows of 3 per slice
    monkeypatch.setattr(archive_reader, "read_slice", lambda ds, key: reads.append(key) or original(ds, key))
    stats = inspect_show.show_archive(archive).tensors[0].stats
    assert len(reads) == 25 and all(isinstance(k, slice) and k.stop - k.start <= 2 for k in reads)
    whole = summarize(values)
    assert (stats["nan"], stats["inf"], stats["min"], stats["max"]) == (1, 1, whole["min"], whole["max"])
    assert stats["mean"] == pytest.approx(whole["mean"], rel=1e-12)
    assert stats["std"] == pytest.approx(whole["std"], rel=1e-9)


def test_show_reads_per_batch_groups(tmp_path: Path) -> None:
    """Values without a batch axis, dumped over several batches, are stored once per batch under a group."""
    archive = make_archive(tmp_path / "a.h5", {"x:0": np.zeros((1, 2), dtype=np.float32)})
    with h5py.File(archive, "a") as f:
        group = f.create_group("tensors/w/Read:0")
        group.attrs.update(name="w/Read:0", order=1, layout="per_batch", batches=2, op_type="ReadVariableOp")
        group["batch_00000"] = np.array([1.0, 2.0], dtype=np.float32)
        group["batch_00001"] = np.array([3.0, 4.0], dtype=np.float32)
    w = inspect_show.show_archive(archive).tensors[1]
    assert (w.name, w.shape, w.stats["min"], w.stats["max"], w.stats["mean"]) == ("w/Read:0", (2,), 1.0, 4.0, 2.5)


def test_archive_commands_do_not_import_tensorflow(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5")
    b = make_archive(tmp_path / "b.h5")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from probe_cli.cli import cli\n"
        f"for args in (['show', {str(a)!r}], ['diff', {str(a)!r}, {str(b)!r}]):\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- diff


def test_identical_archives_exit_0(tmp_path: Path) -> None:
    a, b = make_archive(tmp_path / "a.h5"), make_archive(tmp_path / "b.h5")
    result = ok(invoke("diff", a, b))
    assert "Same: all 4 paired tensor(s) within budget." in result.stdout
    assert result.stderr == ""
    doc = json.loads(ok(invoke("diff", a, b, "--json")).stdout)
    assert doc["same"] is True and doc["first_divergence"] is None
    assert [t["name"] for t in doc["tensors"]] == ["x:0", "zeta/Conv2D:0", "beta/Relu:0", "alpha/Softmax:0"]
    # NaN and Inf at the same positions are equal
    beta = doc["tensors"][2]
    assert (beta["status"], beta["out_of_tolerance"], beta["max_abs_error"]) == ("ok", 0, 0.0)
    assert (doc["atol"], doc["rtol"]) == (1e-5, 1e-4)


def test_first_divergence_is_the_earliest_perturbed_tensor(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5")
    tensors = base_tensors()
    tensors["zeta/Conv2D:0"][1, 2, 3] += 0.5  # 24 -> 24.5 in B, exact in float32
    tensors["alpha/Softmax:0"][0, 0] += 2.0  # later in graph order, larger: still not the first
    b = make_archive(tmp_path / "b.h5", tensors)
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["first_divergence"] == "zeta/Conv2D:0"
    zeta = doc["tensors"][1]
    assert zeta["status"] == "differs"
    assert zeta["max_abs_error"] == 0.5
    assert zeta["max_rel_error"] == 0.5 / 24.5
    assert (zeta["out_of_tolerance"], zeta["size"], zeta["share_out_of_tolerance"]) == (1, 24, 1 / 24)
    assert zeta["worst_index"] == [1, 2, 3]
    assert doc["tensors"][3]["max_abs_error"] == 2.0
    assert [t["status"] for t in doc["tensors"]] == ["ok", "differs", "ok", "differs"]

    text = invoke("diff", a, b)
    assert text.exit_code == 1
    assert (
        "First divergence: zeta/Conv2D:0 (op Conv2D, layer zeta): relative error 0.00712525 (budget 0.0001), "
        "max abs error 0.5 at [1, 2, 3]" in text.stdout
    )
    assert "Different: 2 of 4 paired tensor(s) differ." in text.stdout
    assert "Error" not in text.output


def test_tolerance_follows_numpy_isclose(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5", {"t:0": np.array([1.0, 2.0], dtype=np.float64)})
    b = make_archive(tmp_path / "b.h5", {"t:0": np.array([1.5, 2.0], dtype=np.float64)})
    # |a - b| = 0.5 <= atol + rtol * |b| = 0.2 + 0.2 * 1.5 = 0.5: within (the bound is inclusive)
    assert invoke("diff", a, b, "--atol", "0.2", "--rtol", "0.2").exit_code == 0
    assert invoke("diff", a, b, "--atol", "0.5", "--rtol", "0").exit_code == 0
    assert invoke("diff", a, b, "--atol", "0.25", "--rtol", "0").exit_code == 1
    # the defaults (1e-5, 1e-4) accept a tiny difference
    c = make_archive(tmp_path / "c.h5", {"t:0": np.array([1.0 + 1e-6, 2.0], dtype=np.float64)})
    assert invoke("diff", a, c).exit_code == 0
    assert invoke("diff", a, c, "--atol", "0", "--rtol", "0").exit_code == 1
    assert invoke("diff", a, b, "--atol", "-1").exit_code == 2


def test_nan_in_one_archive_only_is_a_difference(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5", {"t:0": np.array([1.0, 2.0, np.inf], dtype=np.float32)})
    b = make_archive(tmp_path / "b.h5", {"t:0": np.array([1.0, np.nan, -np.inf], dtype=np.float32)})
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == 1, result.output
    t = json.loads(result.stdout)["tensors"][0]
    assert (t["out_of_tolerance"], t["nonfinite_mismatches"], t["max_abs_error"]) == (2, 2, 0.0)


def test_shape_and_dtype_mismatches_are_differences(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5", {"s:0": np.zeros((2, 3), np.float32), "d:0": np.ones(4, np.float32)})
    b = make_archive(tmp_path / "b.h5", {"s:0": np.zeros((3, 2), np.float32), "d:0": np.ones(4, np.float64)})
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    s, d = doc["tensors"]
    assert (s["status"], s["shape_a"], s["shape_b"], s["max_abs_error"]) == ("shape mismatch", [2, 3], [3, 2], None)
    assert (d["status"], d["out_of_tolerance"]) == ("dtype mismatch", 0)
    assert (d["dtype_a"], d["dtype_b"]) == ("float32", "float64")
    assert doc["first_divergence"] == "s:0"
    # a dtype change alone (values equal) is reported and fails the diff, but is no divergence of values
    only_dtype = invoke("diff", a, b, "--match", "d:0", "--json")
    assert only_dtype.exit_code == 1, only_dtype.output
    assert json.loads(only_dtype.stdout)["first_divergence"] is None
    text = invoke("diff", a, b).stdout
    assert "First divergence: s:0 (op s): shape (3, 2) in the reference, (2, 3) in the candidate" in text


def test_tensors_in_only_one_archive_are_listed(tmp_path: Path) -> None:
    tensors = base_tensors()
    a = make_archive(tmp_path / "a.h5", tensors)
    del tensors["beta/Relu:0"]
    tensors["extra/Add:0"] = np.zeros(2, np.float32)
    b = make_archive(tmp_path / "b.h5", tensors)
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    assert "Only in the candidate (1):\n  beta/Relu:0\n" in result.stdout
    assert "Only in the reference (1):\n  extra/Add:0\n" in result.stdout
    assert (
        "Different: all 3 paired tensor(s) within budget; 1 only in the reference, 1 only in the candidate."
        in result.stdout
    )
    as_json = invoke("diff", a, b, "--json")
    assert as_json.exit_code == 1, as_json.output
    doc = json.loads(as_json.stdout)
    assert (doc["only_in_a"], doc["only_in_b"], doc["first_divergence"]) == (["beta/Relu:0"], ["extra/Add:0"], None)
    # --match narrows both sides: the common tensors alone are the same
    assert invoke("diff", a, b, "--match", "x.*", "--match", "zeta/.*").exit_code == 0


def test_different_inputs_are_warned(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5", seed=0)
    b = make_archive(tmp_path / "b.h5", seed=1)
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == 0, result.output  # same tensors: the warning alone does not fail the diff
    warning = "input 'x' has different values in the two runs (candidate: random, seed 0; reference: random, seed 1)"
    assert result.stderr == f"Warning: {warning}\n"
    assert json.loads(result.stdout)["warnings"] == [warning]

    c = make_archive(tmp_path / "c.h5", inputs={"x": np.zeros((2, 3), np.float32), "y": np.ones(2)}, source="in.npz")
    lines = invoke("diff", a, c).stderr.splitlines()
    assert lines == [
        "Warning: input 'y' was fed only to the reference",
        "Warning: input 'x' has different values in the two runs (candidate: random, seed 0; reference: in.npz)",
    ]
    d = make_archive(tmp_path / "d.h5", inputs={"x": np.zeros((1, 3), np.float32)})
    assert (
        "input 'x' differs: float32 [2, 3] in the candidate, float32 [1, 3] in the reference"
        in invoke("diff", a, d).stderr
    )
    # inputs named otherwise (a Keras file's input_layer, its SavedModel's keras_tensor_14) pair in order
    e = make_archive(tmp_path / "e.h5", inputs={"renamed": np.zeros((2, 3), np.float32)})
    f = make_archive(tmp_path / "f.h5", inputs={"other": np.zeros((2, 3), np.float32)})
    assert invoke("diff", e, f).stderr == ""
    # names both archives share stay paired by name; only the others pair in order
    same = np.ones((2, 3), np.float32)
    g = make_archive(tmp_path / "g.h5", inputs={"x": same, "y": np.zeros((2, 3), np.float32)})
    h = make_archive(tmp_path / "h.h5", inputs={"z": np.zeros((2, 3), np.float32), "x": same})
    assert invoke("diff", g, h).stderr == ""


def test_seeds_are_compared_when_no_inputs_are_recorded(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5", seed=0, inputs={})
    b = make_archive(tmp_path / "b.h5", seed=5, inputs={})
    assert invoke("diff", a, b).stderr == (
        "Warning: the archives record no inputs and were made with different seeds (0 vs 5)\n"
    )


def test_diff_slices_big_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.arange(60, dtype=np.float32).reshape(20, 3)
    changed = values.copy()
    changed[13, 2] += 4.0
    changed[2, 0] += 1.0
    a = make_archive(tmp_path / "a.h5", {"t:0": values})
    b = make_archive(tmp_path / "b.h5", {"t:0": changed})
    monkeypatch.setattr(archive_reader, "CHUNK_ELEMENTS", 6)
    t = inspect_diff.diff_archives(a, b).tensors[0]
    assert (t.max_abs_error, t.worst_index, t.out_of_tolerance) == (4.0, (13, 2), 2)


def test_per_batch_values_are_compared_batch_by_batch(tmp_path: Path) -> None:
    paths = []
    for label, last in (("a", 4.0), ("b", 4.5)):
        archive = make_archive(tmp_path / f"{label}.h5", {"x:0": np.zeros((1, 2), dtype=np.float32)})
        with h5py.File(archive, "a") as f:
            group = f.create_group("tensors/w/Read:0")
            group.attrs.update(name="w/Read:0", order=1, layout="per_batch", batches=2)
            group["batch_00000"] = np.array([1.0, 2.0], dtype=np.float32)
            group["batch_00001"] = np.array([3.0, last], dtype=np.float32)
        paths.append(archive)
    result = inspect_diff.diff_archives(*paths)
    assert result.first_divergence is not None and result.first_divergence.name == "w/Read:0"
    assert (result.first_divergence.max_abs_error, result.first_divergence.size) == (0.5, 4)


def test_diff_trouble_exits_2(tmp_path: Path) -> None:
    a = make_archive(tmp_path / "a.h5")
    missing = tmp_path / "missing.h5"
    assert assert_one_line_error(invoke("diff", a, missing), 2) == f"Error: archive {str(missing)!r} does not exist"
    text = tmp_path / "x.txt"
    text.write_text("not hdf5")
    assert "not a probe archive" in assert_one_line_error(invoke("diff", text, a), 2)
    assert "--match 'nothing' matches no tensor" in assert_one_line_error(invoke("diff", a, a, "--match", "nothing"), 2)
    assert invoke("diff", a, a, "--match", "[").exit_code == 2
    assert invoke("diff", a).exit_code == 2


def test_diff_help_documents_defaults_and_exit_codes() -> None:
    result = invoke("diff", "--help")
    assert result.exit_code == 0
    flat = " ".join(result.stdout.split())
    assert "adds the elementwise verdict" in flat
    assert "||c - r|| > budget * ||r||" in result.stdout and "|c - r| > atol + rtol * |r|" in result.stdout
    assert "The budget is 1e-4 unless --max-error sets it" in result.stdout
    assert "1  differences found" in result.stdout
    # the help repeats the library's criterion (so --help need not import it): they must agree
    assert (inspect_diff.REL_TOL, inspect_diff.ABS_FLOOR) == (1e-4, 1e-9)
    assert "+ 1e-9 * sqrt(n)" in result.stdout
    assert cli_module.DIFF_VERDICT.count("\n") > 3


def test_equal_integers_of_two_widths_are_the_same_and_said_so(tmp_path: Path) -> None:
    """ONNX's Shape gives int64 where TensorFlow's gives int32: equal values pass; unequal ones still fail."""
    a = make_archive(tmp_path / "a.h5", {"s/Shape:0": np.array([2, 3], np.int64)})
    b = make_archive(tmp_path / "b.h5", {"s/Shape:0": np.array([2, 3], np.int32)})
    doc = json.loads(ok(invoke("diff", a, b, "--json")).stdout)
    (shape,) = doc["tensors"]
    assert shape["status"] == "ok" and shape["layout_change"] == "reference cast int32 -> int64"
    c = make_archive(tmp_path / "c.h5", {"s/Shape:0": np.array([2, 4], np.int32)})
    assert invoke("diff", a, c).exit_code == 1


def test_diff_says_how_the_references_layers_were_compared(tmp_path: Path) -> None:
    """The archives store their graph: the layer whose output only the reference holds is not compared."""
    values = base_tensors()
    both = {k: v for k, v in values.items() if k != "beta/Relu:0"}
    cand, ref = make_archive(tmp_path / "a.h5", both), make_archive(tmp_path / "b.h5", values)
    for path, names in ((cand, list(both)), (ref, list(values))):
        nodes = tuple(GraphNode(n, f"net_1/{n}", layer=n.partition("/")[0] if "/" in n else None) for n in names)
        with h5py.File(path, "a") as file:
            file.create_dataset(GRAPH, data=ModelGraph(nodes, layer_outputs=tuple(names[1:])).to_json())
    result = invoke("diff", cand, ref)
    assert result.exit_code == 1
    assert "Reference layers: 2 of 3 compared; 1 not compared (-v lists them)." in result.stdout.splitlines()
    lines = invoke("diff", cand, ref, "-v").stdout.splitlines()
    at = lines.index("Reference layers: 2 of 3 compared; 1 not compared.")
    assert lines[at + 1 : at + 3] == [
        "  beta",
        "Different: all 3 paired tensor(s) within budget; 1 only in the reference, 0 only in the candidate.",
    ]
    document = json.loads(invoke("diff", cand, ref, "--json").stdout)
    assert document["layer_coverage"] == {"layers": 3, "compared": 2, "downstream": [], "not_compared": ["beta"]}
    assert [t["layers"] for t in document["tensors"]] == [[], ["zeta"], ["alpha"]]
