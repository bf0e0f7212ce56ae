"""``probe diff`` appends a Markdown verdict to ``$GITHUB_STEP_SUMMARY`` in GitHub Actions (issue #11).

Archives are written without TensorFlow, so these tests take a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from probe_cli.analysis.coverage import LayerCoverage
from probe_cli.analysis.diff import DIFFERS, SCALE_AWARE, ArchiveDiff, TensorDiff, diff_archives
from probe_cli.archive.writer import write_archive
from probe_cli.cli.summary import diff_markdown
from probe_cli.core.types import TensorInfo
from probe_cli.feed import Feed

PROVENANCE = {
    "probe_version": "0.1.0",
    "model_path": "/models/net.h5",
    "model_sha256": "ab" * 32,
    "model_format": "keras-h5",
    "command": "probe dump /models/net.h5",
    "created": "2024-01-02T03:04:05+00:00",
    "batch_size": 1,
}
INPUT = np.arange(6, dtype=np.float32).reshape(2, 3)


def archive(path: Path, tensors: Mapping[str, list[float]]) -> Path:
    """An archive as dump writes it (tensors in the mapping's order as graph order), all fed the same input."""
    pairs = []
    for order, (name, values) in enumerate(tensors.items()):
        value = np.asarray(values, dtype=np.float32)
        op = name.rpartition(":")[0]
        info = TensorInfo(
            name, f"net_1/{op}:0", op.rpartition("/")[2], "float32", value.shape, op.partition("/")[0], order
        )
        pairs.append((info, value))
    return write_archive(path, pairs, [Feed("x", INPUT, "x.npy")], PROVENANCE, seed=0)


@pytest.fixture
def archives(tmp_path: Path) -> tuple[Path, Path]:
    """A (candidate) against B (reference): one tensor equal, two off, one of another shape, one only in A."""
    a = archive(
        tmp_path / "a.h5",
        {
            "alpha/Relu:0": [1.0],
            "beta/Conv2D:0": [3.0],
            "gamma/Add:0": [1.5],
            "delta/MatMul:0": [1.0, 2.0],
            "extra/Identity:0": [0.0],
        },
    )
    b = archive(
        tmp_path / "b.h5",
        {"alpha/Relu:0": [1.0], "beta/Conv2D:0": [1.0], "gamma/Add:0": [1.0], "delta/MatMul:0": [1.0, 2.0, 3.0]},
    )
    return a, b


FIRST = (
    "**First divergence:** `beta/Conv2D:0` (op Conv2D, layer beta): relative error 2, max abs error 2 at [0], "
    "1 of 1 (100%) elements out of tolerance"
)
DIFFERENT = """\
### probe diff: ❌ different

Reference `{b}`, candidate `{a}`: 3 of 4 paired tensor(s) differ; 0 only in the reference, 1 only in the candidate.

A tensor passes when |c - r| <= atol + rtol * |r| for every element; atol 0.1, rtol 0.

{first}

Differing tensors:

| tensor | status | max abs error | rel error | out of tolerance |
|---|---|--:|--:|--:|
| `delta/MatMul:0` | shape mismatch: shape [3] in the reference, [2] in the candidate | - | - | - |
| `beta/Conv2D:0` | differs | 2 | 2 | 1 of 1 (100%) |
| `gamma/Add:0` | differs | 0.5 | 0.5 | 1 of 1 (100%) |

Only in the candidate (1): `extra/Identity:0`

"""

SAME = """\
### probe diff: ✅ same

Reference `{a}`, candidate `{a}`: all 5 paired tensor(s) pass.

A tensor passes when |c - r| <= atol + rtol * |r| for every element; atol 0.1, rtol 0.

"""


def test_diff_appends_its_verdict(archives: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = archives
    summary = tmp_path / "step_summary.md"
    summary.write_text("# Earlier step\n\n", encoding="utf-8")  # GitHub's file is shared by the job's steps
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    tolerances = ("--atol", "0.1", "--rtol", "0")
    first = invoke("diff", a, b, *tolerances)
    assert first.exit_code == 1 and first.stderr == ""
    assert invoke("diff", a, a, *tolerances).exit_code == 0
    expected = "# Earlier step\n\n" + DIFFERENT.format(a=a, b=b, first=FIRST) + SAME.format(a=a)
    assert summary.read_text(encoding="utf-8") == expected


def test_json_output_stays_clean(archives: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = archives
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke("diff", a, b, "--atol", "0.1", "--rtol", "0", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_divergence"] == "beta/Conv2D:0"
    assert summary.read_text(encoding="utf-8") == DIFFERENT.format(a=a, b=b, first=FIRST)


@pytest.mark.parametrize("value", [None, ""])
def test_off_without_the_variable(
    archives: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    a, b = archives
    if value is None:
        monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    else:
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", value)
    before = sorted(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    assert invoke("diff", a, b).exit_code == 1
    assert sorted(tmp_path.iterdir()) == before


def test_unwritable_summary_warns_and_keeps_the_verdict(
    archives: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = archives
    target = tmp_path / "missing" / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    result = invoke("diff", a, b, "--atol", "0.1")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Warning: could not append the summary to $GITHUB_STEP_SUMMARY ({target}): No such file or directory\n"
    )


def test_worst_tensors_and_long_lists_are_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seven differing tensors: the five largest errors, in that order; twelve one-sided names: ten and a count."""
    off = {f"t{k}/Add:0": [1.0 + k] for k in range(1, 8)}
    a = archive(tmp_path / "a.h5", {**off, **{f"only{k}/Identity:0": [0.0] for k in range(12)}})
    b = archive(tmp_path / "b.h5", {name: [1.0] for name in off})
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert invoke("diff", a, b, "--atol", "0.1").exit_code == 1
    text = summary.read_text(encoding="utf-8")
    assert "Differing tensors (worst 5 of 7):" in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| `")]
    assert rows == ["| `t7/Add:0`", "| `t6/Add:0`", "| `t5/Add:0`", "| `t4/Add:0`", "| `t3/Add:0`"]
    names = ", ".join(f"`only{k}/Identity:0`" for k in range(10))
    assert f"Only in the candidate (12): {names} and 2 more\n" in text


def test_the_criterion_is_the_diffs(archives: tuple[Path, Path]) -> None:
    """Without --atol/--rtol the verdict is each tensor's relative error against its budget."""
    a, b = archives
    lines = diff_markdown(diff_archives(a, b), title="probe compare").splitlines()
    assert lines[0] == "### probe compare: ❌ different"
    assert lines[4] == f"A tensor passes when {SCALE_AWARE} (c: the candidate's values, r: the reference's)."


def test_a_fused_first_divergence_names_its_layers_and_the_coverage_is_said() -> None:
    conv = TensorDiff(
        "bn/batchnorm/mul_1:0", "Conv", "bn", DIFFERS, (1, 4), (1, 4), "float32", "float32", 4,
        name_b="bn/batchnorm/add_1:0", paired_by="fused", rel_error=0.01, max_abs_error=0.5, failed=True,
        budget=1e-4, layers=("conv", "bn"),
    )  # fmt: skip
    coverage = LayerCoverage(("x", "conv", "bn"), ("conv",), ())
    result = ArchiveDiff("m.onnx", "m.keras", 1e-5, 1e-4, [conv], [], [], layer_coverage=coverage)
    lines = diff_markdown(result).splitlines()
    assert lines[6:10] == [
        "Reference layers: 3 of 3 compared, 1 of them downstream (fused or dropped by the converter).",
        "",
        "**First divergence:** `bn/batchnorm/add_1:0` = `bn/batchnorm/mul_1:0` (layers conv + bn, fused into one "
        "Conv): relative error 0.01 (budget 0.0001), max abs error 0.5",
        "",
    ]
