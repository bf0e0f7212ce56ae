"""``--html``: the report page, built from archives written without TensorFlow, and rendered in Chromium."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_show_diff import make_archive

from probe_cli.analysis import report
from probe_cli.analysis.coverage import LayerCoverage
from probe_cli.analysis.diff import ArchiveDiff, Budgets, TensorDiff, diff_archives
from probe_cli.archive.reader import list_tensors

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def drifting(scale: float) -> dict[str, np.ndarray]:
    """Four layers in graph order, the candidate's third off by ``scale`` of its values and the last by more."""
    rng = np.random.default_rng(3)
    values = {
        "x:0": rng.random((2, 8), dtype=np.float32),
        "d1/Relu:0": rng.random((2, 16), dtype=np.float32),
        "d2/Relu:0": np.maximum(rng.normal(size=(2, 16)), 0).astype(np.float32),
        "out/Softmax:0": rng.random((2, 4), dtype=np.float32),
    }
    if scale:
        values["d2/Relu:0"] = values["d2/Relu:0"] * np.float32(1 + scale)
        values["out/Softmax:0"] = values["out/Softmax:0"] * np.float32(1 + 3 * scale)
    return values


@pytest.fixture
def archives(tmp_path: Path) -> tuple[Path, Path]:
    """(candidate, reference)"""
    return make_archive(tmp_path / "cand.h5", drifting(0.01)), make_archive(tmp_path / "ref.h5", drifting(0.0))


def test_the_page_names_the_first_divergence_and_lists_every_tensor(archives: tuple[Path, Path]) -> None:
    cand, ref = archives
    result = diff_archives(cand, ref)
    page = report.build_report(result, cand, ref, title="probe diff")
    assert result.first_divergence is not None and result.first_divergence.name == "d2/Relu:0"
    assert "First divergence</b>: <a href='#t-d2/Relu:0'><code>d2/Relu:0</code></a>" in page
    assert "2 of 4 compared tensors over budget" in page
    # the table: one row per compared tensor in graph order, the two over budget marked
    rows = re.findall(r"<tr id='t-([^']+)' class='([^']*)'>", page)
    assert rows == [("x:0", ""), ("d1/Relu:0", ""), ("d2/Relu:0", "over first"), ("out/Softmax:0", "over")]
    # provenance: both models, their hashes, the inputs fed, the budget
    assert page.count("<code title='/models/net.h5'>/models/net.h5</code>") == 2
    assert page.count(f"title='{'ab' * 32}'>{'ab' * 8}</code>") == 2
    assert "x float32[2, 3] from random (seed 0)" in page
    assert "A tensor passes when <code>||c - r|| &lt;= 0.0001 * ||r||" in page
    # self-contained: no URL of any kind, no external script, style or font
    assert not re.search(r"(src|href)=['\"](?!#)", page) and "http" not in page and "@import" not in page


def test_histograms_count_both_runs_on_shared_bins(archives: tuple[Path, Path]) -> None:
    cand, ref = archives
    result = diff_archives(cand, ref)
    found = report.collect_histograms(result, cand, ref)
    assert list(found) == ["d2/Relu:0", "out/Softmax:0"]  # the first divergence, then the worst others
    h = found["d2/Relu:0"]
    reference, candidate = drifting(0.0)["d2/Relu:0"], drifting(0.01)["d2/Relu:0"]
    low, high = float(min(reference.min(), candidate.min())), float(max(reference.max(), candidate.max()))
    assert h.edges[0] == pytest.approx(low) and h.edges[-1] == pytest.approx(high)
    assert np.array_equal(h.reference, np.histogram(reference, bins=h.edges)[0])
    assert np.array_equal(h.candidate, np.histogram(candidate, bins=h.edges)[0])
    assert h.error is not None and h.error_edges is not None
    assert np.array_equal(h.error, np.histogram(candidate.astype(np.float64) - reference, bins=h.error_edges)[0])


def test_colours_are_absolute_against_the_budget() -> None:
    budget = 1e-4
    assert report.colour(None, budget) == report.UNCOMPARED
    assert report.colour(0.0, budget) == report.colour(1e-6, budget) == "#e8f5e9"
    assert report.colour(1e-4, budget) == "#fff59d"  # at the budget: still within
    assert report.colour(2e-4, budget) == "#ffb74d"  # over it, whatever the other values are
    assert report.colour(5e-4, 1e-3) == "#fff59d"  # a tensor's own budget (--max-error PATTERN=REL)
    assert report.colour(1.0, budget) == report.DARKEST
    assert report.colour(1e-9, budget, failed=True) == "#ffb74d"  # failed elementwise: over, not green


def synthetic(count: int) -> ArchiveDiff:
    """A compare of ``count`` layers whose error appears at the middle one and grows."""
    tensors = []
    for i in range(count):
        rel = 0.0 if i < count // 2 else 1e-3 * (1 + i - count // 2)
        tensors.append(
            TensorDiff(
                f"block{i}/Relu:0",
                "Relu",
                f"block{i}",
                "differs" if rel else "ok",
                (1, 8),
                (1, 8),
                "float32",
                "float32",
                8,
                rel_error=rel,
                added_error=rel / 10,
                failed=rel > 1e-4,
                budget=1e-4,
                role="layer",
            )  # fmt: skip
        )
    return ArchiveDiff("cand.tflite", "ref.h5", 1e-5, 1e-4, tensors, [], [], budgets=Budgets())


def test_a_model_of_500_layers_stays_readable() -> None:
    result = synthetic(500)
    page = report.render_report(result)
    assert len(page) < 1_500_000  # about 2 KB a layer, with no histograms
    assert page.count("<a class='node") == 500 and page.count("<tr id='t-") == 500
    # the curve scrolls sideways at 3 px or more a layer, labelled by position, every tensor with its tooltip
    width = int(re.search(r"<svg class='chart' width='(\d+)'", page).group(1))  # type: ignore[union-attr]
    assert width >= 500 * 3 and page.count("<circle") == 500
    assert "<title>block250/Relu:0: relative error 0.001" in page
    assert "x: position in graph order" in page
    # the first divergence is marked on the curve and in the chain
    assert "first divergence: block250/Relu:0" in page and "<a class='node first' href='#t-block250/Relu:0'" in page


def test_the_chain_shows_layers_and_what_differs_not_every_op() -> None:
    result = synthetic(6)
    const = replace(result.tensors[0], name="block0/kernel:0", role=None)
    result = replace(result, tensors=[const, *result.tensors])
    page = report.render_report(result)
    assert "<tr id='t-block0/kernel:0'" in page  # listed in the table
    assert page.count("<a class='node") == 6  # not in the chain: no role, within budget
    assert "6 of the 7 compared tensors" in page


def test_the_report_is_written_or_the_problem_named(tmp_path: Path) -> None:
    path = report.write_report(tmp_path / "r.html", "<html></html>")
    assert path.read_text() == "<html></html>"
    with pytest.raises(report.FileProblem, match="cannot write the report"):
        report.write_report(tmp_path / "missing" / "r.html", "x")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Headless Chromium through Playwright, with no network; skipped (with the reason) when either is missing."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--disable-background-networking"]
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield instance
        instance.close()


def test_the_page_renders_offline_in_chromium(browser, archives: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cand, ref = archives
    page_path = report.write_report(tmp_path / "report.html", report.build_report(diff_archives(cand, ref), cand, ref))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(page_path.as_uri())
    shot = tmp_path / "shot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert requests == [page_path.as_uri()] and failed == [] and errors == []
    # not blank: many colours, and the charts drew (SVG elements with a size)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.height > 1000 and len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50
    box = page.locator("svg.chart").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    assert page.locator("section.panel").count() == 2
    # the table sorts: by relative error, largest first on the second click
    header = page.locator("table.sortable th", has_text="rel error")
    header.click()
    header.click()
    first_row = page.locator("table.sortable tbody tr").first.get_attribute("id")
    assert first_row == "t-out/Softmax:0"
    assert errors == []


def test_tensors_without_finite_values_get_no_histograms(tmp_path: Path) -> None:
    nan = {"x:0": np.full((2, 3), np.nan, dtype=np.float32)}
    cand, ref = make_archive(tmp_path / "c.h5", nan), make_archive(tmp_path / "r.h5", nan)
    with h5py.File(cand) as fc, h5py.File(ref) as fr:
        path = next(t.path for t in list_tensors(fc))
        assert report.histograms(fc[path], fr[path], "x:0") is None
    # values that count, but whose differences are all NaN (Inf - Inf): histograms without an error histogram
    inf = {"x:0": np.array([np.inf, 1.0, 2.0], dtype=np.float32)}
    cand, ref = make_archive(tmp_path / "c2.h5", inf), make_archive(tmp_path / "r2.h5", inf)
    with h5py.File(cand) as fc, h5py.File(ref) as fr:
        path = next(t.path for t in list_tensors(fc))
        made = report.histograms(fc[path], fr[path], "x:0")
        assert made is not None and made.candidate.sum() == 2 and made.error is not None and made.error.sum() == 2


def fused_first(result: ArchiveDiff) -> ArchiveDiff:
    """The first divergence made a Conv that stands for two reference layers, with the layers' coverage."""
    tensors = list(result.tensors)
    at = tensors.index(result.first_divergence)  # type: ignore[arg-type]
    tensors[at] = replace(tensors[at], op_type="Conv", paired_by="fused", layers=("block3_conv", "block3_bn"))
    coverage = LayerCoverage(("block3_conv", "block3_bn", "aux"), ("block3_conv",), ("aux",))
    return replace(result, tensors=tensors, layer_coverage=coverage)


def test_a_fused_first_divergence_names_its_layers_and_the_coverage_is_said() -> None:
    page = report.render_report(fused_first(synthetic(6)))
    assert "<code>block3/Relu:0</code></a> (layers block3_conv + block3_bn, fused into one Conv)" in page
    coverage = "Reference layers: 2 of 3 compared, 1 of them downstream (fused or dropped by the converter)"
    assert f" {coverage}; 1 not compared." in page
