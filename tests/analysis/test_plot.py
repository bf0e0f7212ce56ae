"""``probe plot``: the PNG is checked pixel-wise (size, rows, where the channel maps are), not only that it exists."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke, ok
from test_show_diff import make_archive

from probe_cli.analysis import plot as plot_module

image = pytest.importorskip("matplotlib.image")

ROW = int(plot_module.ROW_HEIGHT * plot_module.DPI)  # pixels per tensor
HIST = int(plot_module.HIST_WIDTH * plot_module.DPI)
MAPS = int(plot_module.MAPS_WIDTH * plot_module.DPI)


def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "x:0": rng.random((2, 8, 8, 3), dtype=np.float32),
        "conv/Relu:0": rng.normal(size=(2, 6, 6, 5)).astype(np.float32),
        "dense/BiasAdd:0": np.concatenate([rng.normal(size=50), [np.nan, np.inf]]).astype(np.float32),
        "probs/Softmax:0": np.full((2, 4), 0.25, dtype=np.float32),
    }


def read_png(path: Path) -> np.ndarray:
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels[:, :, :3]


def colorful(region: np.ndarray) -> float:
    """Share of pixels that are neither white/gray nor black: histogram bars and viridis maps."""
    spread = region.max(axis=2) - region.min(axis=2)
    return float((spread > 0.15).mean())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "run.h5", tensors())


def test_one_png_with_one_row_per_tensor_and_channel_maps(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    result = ok(invoke("plot", archive, "--tensor", "conv/Relu", "--tensor", "dense/.*", "-o", out))
    assert result.stdout == f"Plotted 2 tensor(s), channel maps for 1: {out}\n"
    pixels = read_png(out)
    assert pixels.shape[:2] == (2 * ROW, HIST + MAPS)  # two rows; a maps column because one tensor is 4-D
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank or uniform image
    conv_hist, conv_maps = pixels[:ROW, :HIST], pixels[:ROW, HIST:]
    dense_hist, dense_maps = pixels[ROW:, :HIST], pixels[ROW:, HIST:]
    assert colorful(conv_hist) > 0.02 and colorful(dense_hist) > 0.02  # blue bars in both rows
    assert colorful(conv_maps) > 0.05  # 5 channel maps of the (N, H, W, C) tensor
    assert colorful(dense_maps) == 0.0  # a 1-D tensor gets no maps: that area stays blank


def test_without_image_like_tensors_the_png_is_histograms_only(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.png"
    ok(invoke("plot", archive, "-t", "probs/Softmax:0", "-t", "dense/BiasAdd:0", "-o", out))
    assert read_png(out).shape[:2] == (2 * ROW, HIST)


def test_output_directory_gets_one_png_per_tensor(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "pngs"
    out.mkdir()
    result = ok(invoke("plot", archive, "--tensor", ".*", "-o", out))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["conv__Relu_0.png", "dense__BiasAdd_0.png", "probs__Softmax_0.png", "x_0.png"]
    assert read_png(out / "x_0.png").shape[:2] == (ROW, HIST + MAPS)
    assert read_png(out / "probs__Softmax_0.png").shape[:2] == (ROW, HIST)
    assert result.stdout == "Plotted 4 tensor(s), channel maps for 2: 4 files\n"


def test_default_output_is_named_after_the_archive(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok(invoke("plot", archive, "-t", "x:0", "--sample", "1", "--max-channels", "2", "--bins", "5"))
    assert read_png(tmp_path / "run.png").shape[:2] == (ROW, HIST + MAPS)


def test_sample_maps_differ_by_sample(archive: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "s0.png", tmp_path / "s1.png"
    ok(invoke("plot", archive, "-t", "conv/Relu:0", "-o", first))
    ok(invoke("plot", archive, "-t", "conv/Relu:0", "--sample", "1", "-o", second))
    a, b = read_png(first), read_png(second)
    assert np.array_equal(a[:, :HIST], b[:, :HIST])  # same histogram of the whole tensor
    assert not np.array_equal(a[:, HIST:], b[:, HIST:])  # other channel maps


def test_non_numeric_and_all_nan_tensors_still_plot(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "odd.h5",
        {"nan/Log:0": np.full(4, np.nan, np.float32), "flag/Equal:0": np.array([True, False, True])},
    )
    out = tmp_path / "odd.png"
    ok(invoke("plot", archive, "-t", ".*", "-o", out))
    assert read_png(out).shape[:2] == (2 * ROW, HIST)


def test_no_selection_plots_what_the_archive_stores(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It failed with "Missing option '-t'"; now it draws the stored tensors (a dump's layer outputs), bounded."""
    everything, chosen = tmp_path / "all.png", tmp_path / "chosen.png"
    result = ok(invoke("plot", archive, "-o", everything))
    assert result.stdout == f"Plotted 4 tensor(s), channel maps for 2: {everything}\n"
    ok(invoke("plot", archive, "-t", ".*", "-o", chosen))
    assert np.array_equal(read_png(everything), read_png(chosen))
    monkeypatch.setattr(plot_module, "DEFAULT_MAX_TENSORS", 3)
    result = ok(invoke("plot", archive, "-o", everything))
    assert result.stdout.splitlines() == [
        f"Plotted 3 tensor(s), channel maps for 2: {everything}",
        "Note: the first 3 of the 4 stored tensors, in graph order; choose with -t REGEX",
    ]
    assert read_png(everything).shape[:2] == (3 * ROW, HIST + MAPS)  # three rows


def test_usage_errors(archive: Path, tmp_path: Path) -> None:
    line = assert_one_line_error(invoke("plot", archive, "-t", "x:0", "--sample", "2", "-o", tmp_path / "p.png"), 2)
    assert line == "Error: --sample 2 is out of range for 'x:0', which holds 2 sample(s)"
    line = assert_one_line_error(invoke("plot", archive, "-t", "Relu", "-o", tmp_path / "p.png"), 2)
    assert line.startswith("Error: --tensor 'Relu' matches no tensor")
    missing = tmp_path / "none.h5"
    assert (
        assert_one_line_error(invoke("plot", missing, "-t", "x:0"), 2)
        == f"Error: archive {str(missing)!r} does not exist"
    )
    line = assert_one_line_error(invoke("plot", archive, "-t", "x:0", "-o", tmp_path / "no" / "p.png"), 2)
    assert line == f"Error: output directory {str(tmp_path / 'no')!r} does not exist"
    assert not (tmp_path / "p.png").exists()


def test_missing_matplotlib_says_how_to_install_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    result = invoke("plot", archive, "-t", "x:0", "-o", tmp_path / "p.png")
    assert assert_one_line_error(result, 2) == "Error: probe plot needs matplotlib (pip install matplotlib)"
    assert not (tmp_path / "p.png").exists()
