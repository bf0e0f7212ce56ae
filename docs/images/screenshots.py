"""Regenerates the screenshots of docs/comparing.md (needs chromium, playwright and ai-edge-model-explorer).

    python docs/images/screenshots.py

Runs the two compares the page shows, renders the HTML report and the Model Explorer overlay in headless
Chromium, and writes them as palette PNGs beside this file.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SAMPLES = Path("sample_models")  # relative to ROOT, where probe runs: the page shows the paths as given
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def probe(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "probe_cli", *map(str, args)], cwd=ROOT, check=False, capture_output=True)


def save(shot: Path, name: str, colours: int = 256) -> None:
    """A palette PNG: the pages are flat colours, so this keeps them small and crisp."""
    Image.open(shot).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT).save(HERE / name, optimize=True)


def report_shot(page: Page, work: Path) -> None:
    probe("compare", SAMPLES / "cnn.h5", SAMPLES / "cnn_int8.tflite", "--html", work / "int8.html")
    page.set_viewport_size({"width": 1280, "height": 1500})
    page.goto((work / "int8.html").as_uri())
    page.screenshot(path=str(work / "report.png"))
    save(work / "report.png", "report-int8.png")


def explorer_shot(page: Page, work: Path) -> None:
    probe("compare", SAMPLES / "cnn.h5", SAMPLES / "cnn_perturbed_savedmodel", "--model-explorer", work / "me")
    readme = (work / "me" / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().endswith("/candidate.json"))
    args = shlex.split(command)[1:]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "model-explorer"), *args, "--no_open_in_browser", "--port", "18479"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = next(m.group(1) for line in server.stdout if (m := re.search(r"(http://localhost:\d+/\?data=\S+)", line)))
        page.set_viewport_size({"width": 1280, "height": 1100})
        page.goto(url)
        expand = page.locator("mat-icon", has_text="unfold_more_double").first
        expand.wait_for(timeout=120_000)
        time.sleep(3)
        expand.click()
        time.sleep(3)
        page.mouse.move(455, 600)  # zoom in a little (Ctrl+Scroll)
        page.keyboard.down("Control")
        page.mouse.wheel(0, -50)
        page.keyboard.up("Control")
        time.sleep(2)
        page.screenshot(path=str(work / "me.png"))
        save(work / "me.png", "model-explorer-perturbed.png")
    finally:
        server.terminate()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page()
        report_shot(page, Path(tmp))
        explorer_shot(page, Path(tmp))
        browser.close()


if __name__ == "__main__":
    main()
