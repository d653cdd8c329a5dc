"""The panels in a real browser: JupyterLab and Voila started here on 127.0.0.1, headless Debian Chromium driven by
Playwright, the demo notebook opened, the GeneratePanel filled and clicked, images and the run log updating, and a
sweep run from the SweepPanel. Screenshots go to artifacts/screenshots/ (gitignored).

Skipped, not failed, where Chromium or Playwright is missing (CI installs Debian's chromium first).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_available,
    jupyterlab,
    open_notebook7_and_run_all,
    open_notebook_and_run_all,
    screenshot,
    voila,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.local,
    pytest.mark.skipif(not chromium_available(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

NOTEBOOK = Path(__file__).parent / "notebooks" / "panels_demo.ipynb"
# Errors Notebook 7's own shell logs on a fresh profile (it asks for file-browser commands and settings that only
# JupyterLab registers); they come before any widget renders and are not the panels'.
NOTEBOOK7_SHELL_NOISE = re.compile(r"filebrowser:open-path|reading 'schema'")
# Generous for a loaded 2-core machine; a healthy run takes a fraction of it.
TIMEOUT_MS = 90_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def served_folder(tmp_path, demo_weights):
    """A throwaway folder with a copy of the demo notebook (autosave never touches the repo's copy) and a toolkit
    home whose demo weights are already built (copied from the test session's)."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    home = tmp_path / "home"
    shutil.copytree(demo_weights, home / "demo-weights")
    env = {"KANDINSKY_NB_HOME": str(home), "KANDINSKY_NB_ENGINE": "demo"}
    return root, env


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _new_page(browser, height: int = 1000):
    page = browser.new_page(viewport={"width": 1280, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def _generate_from_the_panel(page, prompt: str, log_rows: int = 1) -> None:
    panel = page.locator(".knb-generate-panel")
    expect(panel).to_be_visible()
    generate = panel.locator("button.knb-generate")
    expect(generate).to_be_disabled()  # no prompt yet: invalid, and the problem is shown next to the prompt
    expect(panel.locator(".knb-problem-positivePrompt")).to_contain_text("positivePrompt")
    panel.locator(".knb-positivePrompt textarea").fill(prompt)
    expect(panel.locator(".knb-json-preview")).to_contain_text(prompt)
    expect(panel.locator(".knb-cost")).to_contain_text("Estimated cost")
    expect(generate).to_be_enabled()
    generate.click()
    expect(panel.locator(".knb-results img.knb-thumb")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(panel.locator(".knb-results")).to_contain_text("seed")
    expect(panel.locator(".knb-log-count")).to_have_text(str(log_rows))


def test_jupyterlab_and_notebook7_generate_gallery_and_sweep(served_folder, browser):
    root, env = served_folder
    started = time.perf_counter()
    with jupyterlab(root, env) as server:
        page, page_errors = _new_page(browser, height=1600)  # tall: the panel's screenshot is not clipped
        open_notebook_and_run_all(page, server, NOTEBOOK.name)
        _generate_from_the_panel(page, "a red fox in snow")
        # The click ran as an asyncio task on the kernel's loop (not synchronously): re-run the last cell to ask.
        last_cell = page.locator(".jp-CodeCell").nth(page.locator(".jp-CodeCell").count() - 1)
        expect(last_cell.locator(".jp-OutputArea-output")).to_contain_text("generate task: none")
        last_cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")  # run in place (Shift+Enter would add a cell below)
        expect(last_cell.locator(".jp-OutputArea-output")).to_contain_text("generate task: done")
        screenshot(page, "lab_generate_panel_page")
        page.locator(".knb-generate-panel").screenshot(path=str(screenshot_path("generate_panel")))

        # The run log grew: the gallery shows the new image after a refresh, and opens it.
        gallery = page.locator(".knb-gallery")
        gallery.locator("button.knb-gallery-refresh").click()
        expect(gallery.locator(".knb-gallery-tile")).to_have_count(1)
        gallery.locator("button.knb-gallery-open").first.click()
        expect(gallery.locator(".knb-detail-params")).to_contain_text("positivePrompt")

        # A sweep from the SweepPanel: 2 cells planned, priced, run, drawn.
        sweep = page.locator(".knb-sweep-panel")
        sweep.locator(".knb-sweep-prompt textarea").fill("a blue whale")
        sweep.locator(".knb-sweep-CFGScale input").fill("3, 5")
        sweep.locator(".knb-sweep-CFGScale input").press("Enter")
        expect(sweep.locator(".knb-sweep-summary")).to_contain_text(re.compile(r"2\s*cells"))
        sweep.locator("button.knb-sweep-run").click()
        expect(sweep.locator(".knb-sweep-grid img")).to_have_count(2, timeout=TIMEOUT_MS)
        expect(sweep.locator(".knb-sweep-progress-label")).to_contain_text("2 ok")
        sweep.screenshot(path=str(screenshot_path("sweep_panel")))
        page.close()

        # Notebook 7 on the same server (it joins the notebook's running kernel): the same panel works there.
        page, notebook7_errors = _new_page(browser)
        open_notebook7_and_run_all(page, server, NOTEBOOK.name)
        _generate_from_the_panel(page, "a fox in Notebook 7", log_rows=4)
        screenshot(page, "notebook7_generate_panel")
        page.close()
    assert not page_errors, page_errors
    assert not [e for e in notebook7_errors if not NOTEBOOK7_SHELL_NOISE.search(e)], notebook7_errors
    assert time.perf_counter() - started < 240


def test_voila_renders_the_panel_and_generates(served_folder, browser):
    root, env = served_folder
    with voila(root / NOTEBOOK.name, env) as server:
        page, page_errors = _new_page(browser, height=1500)  # tall: the README screenshot shows form and result
        page.goto(f"{server.base}/")
        _generate_from_the_panel(page, "a lighthouse at dusk")
        screenshot(page, "voila_generate_panel")
        page.close()
    assert not page_errors, page_errors


def screenshot_path(name: str) -> Path:
    from browser_support import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
