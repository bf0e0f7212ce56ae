"""Datasets beyond one process: --stats-only, --shard K/N and probe merge, end to end through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, assert_one_line_error, invoke, ok, tensors_of

import probe_cli as probe
from probe_cli.archive.reader import list_distributions, open_archive

CNN = SAMPLES / "cnn.h5"
RUN = ("--samples", "10", "--batch-size", "3", "--seed", "7")


def dump(out: Path, *args: object) -> Path:
    ok(invoke("dump", CNN, *RUN, *map(str, args), "-o", out))
    return out


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dump(tmp_path_factory.mktemp("whole") / "whole.h5")


def test_shards_merged_equal_one_run_and_hold_no_copy(tmp_path: Path, whole: Path) -> None:
    parts = [dump(tmp_path / f"part{k}.h5", "--shard", f"{k}/3") for k in range(3)]
    with h5py.File(parts[1]) as f:
        assert (f.attrs["shard"], f.attrs["sample_start"], f.attrs["sample_stop"], f.attrs["samples_total"]) == (
            "1/3",
            3,
            6,
            10,
        )
    result = ok(invoke("merge", tmp_path / "merged.h5", *reversed(parts)))  # any order: sample order is restored
    assert result.stdout.startswith("Merged 3 parts, 10 samples, 7 tensors into")
    merged, reference = tensors_of(tmp_path / "merged.h5"), tensors_of(whole)
    assert merged.keys() == reference.keys()
    for name, value in reference.items():
        np.testing.assert_array_equal(merged[name], value, err_msg=name)
    with h5py.File(tmp_path / "merged.h5") as f:
        assert f["tensors/conv1/Relu:0"].is_virtual and f["inputs/image"].is_virtual
        np.testing.assert_array_equal(f["inputs/image"][()], h5py.File(whole)["inputs/image"][()])
    assert (tmp_path / "merged.h5").stat().st_size < min(p.stat().st_size for p in parts) / 4
    ok(invoke("show", tmp_path / "merged.h5"))
    assert ok(invoke("diff", tmp_path / "merged.h5", whole)).stdout.rstrip().endswith("within budget.")
    if shutil.which("h5ls"):  # the parts beside it, from another directory
        listing = subprocess.run(["h5ls", "-r", str(tmp_path / "merged.h5")], capture_output=True, text=True, cwd="/")
        assert "/tensors/conv1/Relu:0" in listing.stdout and "{10, 26, 26, 8}" in listing.stdout


def test_copy_is_self_contained(tmp_path: Path, whole: Path) -> None:
    parts = [dump(tmp_path / f"part{k}.h5", "--shard", f"{k}/2") for k in range(2)]
    ok(invoke("merge", tmp_path / "copy.h5", *parts, "--copy"))
    for part in parts:
        part.unlink()
    with h5py.File(tmp_path / "copy.h5") as f:
        assert not f["tensors/conv1/Relu:0"].is_virtual
    # batches of 3 over shards of 5 group samples unlike the whole run's: float32 rounding, no more
    copied, reference = tensors_of(tmp_path / "copy.h5")["probs/Softmax:0"], tensors_of(whole)["probs/Softmax:0"]
    np.testing.assert_allclose(copied, reference, rtol=1e-6)


def test_merge_refuses_what_is_not_one_run(tmp_path: Path) -> None:
    parts = [dump(tmp_path / f"part{k}.h5", "--shard", f"{k}/3") for k in range(3)]
    other_seed = tmp_path / "other.h5"
    ok(invoke("dump", CNN, "--samples", "10", "--batch-size", "3", "--seed", "8", "--shard", "2/3", "-o", other_seed))
    out = tmp_path / "out.h5"
    cases = [
        ((parts[0], parts[1], other_seed), "come from different runs (a different seed)"),
        ((parts[0], parts[2]), "samples 3-5 are in no part"),
        ((parts[0], parts[1]), "samples 6-9 are in no part"),
        ((parts[0], parts[0], parts[1], parts[2]), "overlaps another part"),
        ((parts[0], SAMPLES / "cnn.h5"), "not a probe archive"),
    ]
    for args, message in cases:
        assert_one_line_error(invoke("merge", out, *args), 2, message)
        assert not out.exists()
    selection = dump(tmp_path / "layers.h5", "--layer", "conv1", "--shard", "2/3")
    assert_one_line_error(invoke("merge", out, parts[0], parts[1], selection), 2, "different selection")
    with h5py.File(parts[2], "a") as f:  # an archive written before shards existed
        del f.attrs["fingerprint"]
    assert_one_line_error(invoke("merge", out, *parts), 2, "no part of a sharded run (no fingerprint)")


def test_stats_only_equals_numpy_over_the_full_dump(tmp_path: Path, whole: Path) -> None:
    stats = dump(tmp_path / "stats.h5", "--stats-only", "--histogram", "--channels", "--bins", "16")
    assert stats.stat().st_size < whole.stat().st_size / 4
    values = tensors_of(whole)
    with open_archive(stats) as f:
        found = {d.name: d.distribution for d in list_distributions(f)}
        assert f.attrs["stats_only"] and list(f["tensors"]) == []
    assert found.keys() == values.keys()
    for name, value in values.items():
        x = value.astype(np.float64)
        d = found[name]
        assert (d.size, d.nan, d.inf, d.zeros) == (x.size, 0, 0, int((x == 0).sum())), name
        np.testing.assert_allclose([d.moments.low, d.moments.high], [x.min(), x.max()], rtol=0, atol=0)
        # summed in the tensor's own precision (float32, pairwise) inside the graph, merged in float64
        np.testing.assert_allclose([d.moments.mean, float(d.moments.std)], [x.mean(), x.std()], rtol=1e-6, atol=1e-9)
        assert d.histogram.sum() == x.size and len(d.histogram) == 18  # 16 bins and two overflow bins
        if x.ndim >= 2:  # per channel: the last axis
            axes = tuple(range(x.ndim - 1))
            np.testing.assert_allclose(d.channels.mean, x.mean(axis=axes), rtol=1e-6, atol=1e-9)  # type: ignore[union-attr]
            np.testing.assert_allclose(d.channels.high, x.max(axis=axes))  # type: ignore[union-attr]
    shown = ok(invoke("show", stats)).stdout
    assert "conv1/Relu:0" in shown and "4 values" not in shown


def test_default_stats_are_full_health_counts_and_exact_moments(tmp_path: Path, whole: Path) -> None:
    """Without --histogram and --channels: FULL_HEALTH's counts and the moments, equal to NumPy's over the
    values of a full dump; neither a histogram nor per-channel moments in the archive, show or diff."""
    stats = dump(tmp_path / "stats.h5", "--stats-only")
    values = tensors_of(whole)
    with open_archive(stats) as f:
        found = {d.name: d.distribution for d in list_distributions(f)}
        assert not f.attrs["histogram"] and not f.attrs["channels"] and "bins" not in f.attrs
        datasets: list[str] = []
        f["stats"].visititems(lambda key, obj: datasets.append(key) if isinstance(obj, h5py.Dataset) else None)
        assert datasets == []  # no histogram, no channel_*
    assert found.keys() == values.keys()
    for name, value in values.items():
        x, d = value.astype(np.float64), found[name]
        counts = (d.size, d.nan, d.neg_inf, d.pos_inf, d.negative, d.zeros, d.positive)
        assert counts == (x.size, 0, 0, 0, (x < 0).sum(), (x == 0).sum(), (x > 0).sum()), name
        np.testing.assert_allclose([d.moments.low, d.moments.high], [x.min(), x.max()], rtol=0, atol=0)
        np.testing.assert_allclose([d.moments.mean, float(d.moments.std)], [x.mean(), x.std()], rtol=1e-6, atol=1e-9)
        assert d.histogram is None and d.channels is None
    doc = json.loads(ok(invoke("show", stats, "--json")).stdout)
    relu = next(t for t in doc["tensors"] if t["name"] == "conv1/Relu:0")
    assert relu["negative"] == 0 and relu["positive"] + relu["zero_share"] * relu["size"] == relu["size"]
    assert "histogram" not in relu and "channels" not in relu
    detailed = dump(tmp_path / "detailed.h5", "--stats-only", "--histogram")
    assert ok(invoke("diff", stats, detailed)).exit_code == 0  # one side without histograms: moments only
    assert ok(invoke("plot", stats, "-t", "conv1/Relu:0", "-o", tmp_path / "p.png")).exit_code == 0
    assert_one_line_error(invoke("dump", CNN, "--histogram", "-o", tmp_path / "x.h5"), 2, "go with --stats-only")


@pytest.mark.parametrize("stats", [("--stats-only", "--hist-range=-1,1"), ("--stats-only",)])
def test_stats_only_shards_merge_exactly(tmp_path: Path, stats: tuple[str, ...]) -> None:
    """With histograms (a range given for them), and the default statistics, which need no range."""
    assert_one_line_error(
        invoke("dump", CNN, *RUN, "--stats-only", "--histogram", "--shard", "0/2", "-o", tmp_path / "x.h5"),
        2,
        "needs --hist-range",
    )
    assert_one_line_error(
        invoke("dump", CNN, *RUN, "--stats-only", "--check-numerics", "-o", tmp_path / "x.h5"), 2, "--check-numerics"
    )
    whole = dump(tmp_path / "whole.h5", *stats)
    parts = [dump(tmp_path / f"s{k}.h5", *stats, "--shard", f"{k}/2") for k in range(2)]
    ok(invoke("merge", tmp_path / "merged.h5", *parts))
    with open_archive(whole) as a, open_archive(tmp_path / "merged.h5") as b:
        one, merged = ({d.name: d.distribution for d in list_distributions(f)} for f in (a, b))
    for name, d in one.items():
        m = merged[name]
        if len(stats) > 1:
            np.testing.assert_array_equal(m.histogram, d.histogram)
        else:
            assert m.histogram is None and d.histogram is None
        counts = ("size", "zeros", "negative", "positive", "nan", "neg_inf", "pos_inf")
        assert [getattr(m, k) for k in counts] == [getattr(d, k) for k in counts]
        assert m.moments.count == d.moments.count
        # merged in another order, over batches grouped otherwise: float32 rounding (docs/archive-format.md)
        np.testing.assert_allclose([m.moments.mean, m.moments.m2], [d.moments.mean, d.moments.m2], rtol=1e-5)
    assert ok(invoke("diff", tmp_path / "merged.h5", whole)).exit_code == 0


def test_stats_diff_finds_the_perturbed_layer(tmp_path: Path) -> None:
    a = dump(tmp_path / "a.h5", "--stats-only")
    b = tmp_path / "b.h5"
    ok(invoke("dump", SAMPLES / "cnn_perturbed_savedmodel", *RUN, "--stats-only", "-o", b))
    result = invoke("diff", b, a)
    assert result.exit_code == 1
    assert "First divergence: conv2/Relu:0 (op Relu, layer conv2): mean shift" in result.stdout


def test_the_python_api_shards_alike(tmp_path: Path, whole: Path) -> None:
    model = probe.open(CNN)
    for k in range(2):
        model.dump(tmp_path / f"p{k}.h5", samples=10, batch_size=3, seed=7, shard=(k, 2))
    ok(invoke("merge", tmp_path / "m.h5", tmp_path / "p0.h5", tmp_path / "p1.h5"))
    merged, reference = tensors_of(tmp_path / "m.h5")["conv2/Relu:0"], tensors_of(whole)["conv2/Relu:0"]
    np.testing.assert_allclose(merged, reference, rtol=1e-6, atol=1e-7)  # batches grouped otherwise
