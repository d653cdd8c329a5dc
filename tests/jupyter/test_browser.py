"""The JupyterLab extension in a real browser: JupyterLab and Notebook 7 started here on 127.0.0.1 over a run log
made by a real demo sweep, headless Debian Chromium driven by Playwright. The sidebar lists the runs (thumbnails,
filters), the status bar shows spend, the compare view shows the parameter diff, the sweep view its contact sheet,
a row's "insert code" cell runs in a kernel and regenerates the same pixels, the launcher card makes a notebook,
and Notebook 7 opens the sidebar from the command palette. Screenshots go to artifacts/screenshots/.

Skipped, not failed, where Chromium or Playwright is missing (CI installs Debian's chromium first).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sqlite3
import urllib.request

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    TOKEN,
    accept_kernel_dialog,
    chromium_available,
    jupyterlab,
    screenshot,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.local,
    pytest.mark.slow,
    pytest.mark.skipif(not chromium_available(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

TIMEOUT_MS = 120_000  # generous for a loaded 2-core machine; a healthy run takes a fraction of it
expect.set_options(timeout=TIMEOUT_MS)
# Errors Notebook 7's own shell logs on a fresh profile (it asks for file-browser commands and settings that only
# JupyterLab registers); they are not the extension's.
NOTEBOOK7_SHELL_NOISE = re.compile(r"filebrowser:open-path|reading 'schema'")
EMPTY_NOTEBOOK = {
    "cells": [],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture
def served(tmp_path, demo_log, demo_weights):
    """A folder to serve (with an empty notebook) and a toolkit home holding the demo log and the demo weights."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "scratch.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
    # A budget the demo log has already spent, as set in the settings editor: the status bar must say so. Demo
    # costs are measured GPU seconds, so they depend on the machine: the budget is half of what this log spent.
    with contextlib.closing(sqlite3.connect(demo_log.home / "runs.db")) as db:
        (spent,) = db.execute("SELECT SUM(cost_usd) FROM runs WHERE status = 'ok'").fetchone()
    settings = root / "_lab_settings" / "kandinsky-nb"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"budgetUSD": spent / 2, "budgetScope": "all"}))
    home = tmp_path / "home"
    shutil.copytree(demo_log.home, home)
    if not (home / "demo-weights").exists():
        shutil.copytree(demo_weights, home / "demo-weights")
    return root, {"KANDINSKY_NB_HOME": str(home), "KANDINSKY_NB_ENGINE": "demo"}


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _page(browser, width=1400, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def _api(server, route: str):
    with urllib.request.urlopen(f"{server.base}/kandinsky-nb/api/{route}?token={TOKEN}", timeout=30) as reply:
        body = reply.read()
    return json.loads(body) if route.count("/") < 2 else body


def _pixels(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


# pytest-jupyter's autouse fixtures make an event loop current for each test and close it afterwards; Playwright's
# sync API would run on that loop, and closing it then fails. These tests start (and stop) their own server
# process, so they switch both fixtures off.
@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    yield


def _show_runs(page) -> None:
    # The palette command activates the sidebar whatever its state (a tab click would close an open one). On a
    # loaded machine Notebook 7's shell may still be settling (a theme loading, a kernel starting) and close the
    # palette or miss the first Enter: try again, a few times, before failing.
    panel = page.locator("#kandinsky-nb-runs")
    for _attempt in range(4):
        try:
            page.keyboard.press("Control+Shift+C")
            palette = page.locator(".lm-CommandPalette-input")
            palette.fill("Kandinsky: Show Runs", timeout=15_000)
            active = page.locator(".lm-CommandPalette-item.lm-mod-active", has_text="Kandinsky: Show Runs")
            expect(active).to_be_visible(timeout=15_000)
            palette.press("Enter", timeout=15_000)
            expect(panel).to_be_visible(timeout=15_000)
            return
        except (AssertionError, playwright.Error):
            page.keyboard.press("Escape")
    expect(panel).to_be_visible()


def _luminance(css_color: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def _row_action(page, run_id: int, label: str) -> None:
    page.locator(f'.knb-RunRow[data-run-id="{run_id}"]').click(button="right")
    page.locator(".lm-Menu-item", has_text=label).click()


def test_jupyterlab_sidebar_compare_sweep_insert_code_and_spend(served, browser, demo_log):
    root, env = served
    with jupyterlab(root, env) as server:
        total = _api(server, "runs")["total"]
        page, errors = _page(browser)
        page.goto(f"{server.base}/lab?token={TOKEN}&reset")

        # The launcher shows the card that makes a notebook ready to generate.
        expect(page.locator(".jp-LauncherCard", has_text="Kandinsky Notebook")).to_be_visible()

        # The sidebar: every run, newest first, thumbnails loaded, the demo badge, the spend in the status bar.
        page.locator('.jp-SideBar.jp-mod-left li[data-id="kandinsky-nb-runs"]').click()
        panel = page.locator("#kandinsky-nb-runs")
        expect(panel.locator(".knb-RunRow")).to_have_count(total)
        expect(panel.locator(".knb-RunsPanel-summary")).to_contain_text(f"{total} runs")
        ids = [int(i) for i in panel.locator(".knb-RunRow").evaluate_all("rows => rows.map(r => r.dataset.runId)")]
        assert ids == sorted(ids, reverse=True)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#kandinsky-nb-runs img.knb-thumb')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        expect(panel.locator(".knb-badge-demo").first).to_be_visible()
        expect(panel.locator(f'.knb-RunRow[data-run-id="{demo_log.failed_id}"] .knb-RunRow-status')).to_have_text(
            "failed"
        )
        spend = page.locator(".knb-SpendStatus")
        expect(spend).to_contain_text(re.compile(r"Kandinsky \$[\d.]+ session · \$[\d.]+ today · \$[\d.]+ all"))
        expect(spend).to_have_class(re.compile("knb-mod-over"))
        expect(spend).to_contain_text("over budget")
        screenshot(page, "jupyterlab_extension_sidebar")

        # Filters: prompt text, then a sweep.
        panel.locator(".knb-filter-q").fill("lighthouse")
        expect(panel.locator(".knb-RunRow")).to_have_count(1)
        panel.locator(".knb-filter-q").fill("")
        panel.locator(".knb-filter-sweep").select_option(demo_log.sweep_name)
        expect(panel.locator(".knb-RunRow")).to_have_count(demo_log.sweep_cells)
        panel.locator(".knb-filter-sweep").select_option("")
        expect(panel.locator(".knb-RunRow")).to_have_count(total)

        # Compare two runs: select one, Ctrl-click another, then the row's context menu.
        first, second = demo_log.run_ids[0], demo_log.run_ids[1]
        panel.locator(f'.knb-RunRow[data-run-id="{first}"]').click()
        panel.locator(f'.knb-RunRow[data-run-id="{second}"]').click(modifiers=["Control"])
        _row_action(page, second, "Compare Two Runs")
        compare = page.locator(".knb-CompareView")
        expect(compare).to_be_visible()
        expect(compare.locator('.knb-mod-differs[data-parameter="positivePrompt"]')).to_be_visible()
        expect(compare.locator('.knb-mod-differs[data-parameter="seed"]')).to_be_visible()
        expect(compare.locator('.knb-diff-row[data-parameter="steps"]')).not_to_have_class(
            re.compile("knb-mod-differs")
        )
        expect(compare.locator(".knb-CompareView-summary")).to_contain_text("positivePrompt")
        # What the runs came to is shown, never counted as a difference (as in the kernel's ComparisonView).
        expect(compare.locator('.knb-diff-outcome[data-parameter="created_utc"]')).to_be_visible()
        expect(compare.locator('.knb-diff-row[data-parameter="created_utc"]')).not_to_have_class(
            re.compile("knb-mod-differs")
        )
        expect(compare.locator(".knb-CompareView-summary")).not_to_contain_text("created_utc")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.knb-CompareView img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        screenshot(page, "jupyterlab_extension_compare")
        # The whole parameter table, the outcome rows under it included (below the fold in the page's screenshot).
        compare.locator(".knb-CompareView-diff").screenshot(path=str(SCREENSHOTS / "jupyterlab_compare_table.png"))
        compare.locator(".knb-mode-wipe").click()
        expect(compare.locator(".knb-CompareView-slider")).to_be_visible()

        # The sweep: its contact sheet by axes, every cell's thumbnail, the spend.
        sweep_row = panel.locator(f'.knb-RunRow[data-sweep="{demo_log.sweep_name}"]').first
        _row_action(page, int(sweep_row.get_attribute("data-run-id")), "Open Sweep")
        sweep = page.locator(".knb-SweepView")
        expect(sweep.locator(".knb-SweepView-cell img")).to_have_count(demo_log.sweep_cells)
        expect(sweep.locator(".knb-SweepView-summary")).to_contain_text(f"{demo_log.sweep_cells} ok")
        expect(sweep.locator(".knb-axis-x").first).to_contain_text("=")
        screenshot(page, "jupyterlab_extension_sweep")

        # Insert code into a notebook, run it in the kernel: the same pixels as the logged run.
        page.goto(f"{server.base}/lab/tree/scratch.ipynb?token={TOKEN}")
        expect(page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible()
        accept_kernel_dialog(page)
        _show_runs(page)
        original = demo_log.run_ids[2]
        _row_action(page, original, "Insert Code Reproducing the Run")
        cell = page.locator(".jp-Notebook .jp-CodeCell", has_text=f"Reproduces run {original}")
        expect(cell).to_be_visible()
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        expect(cell.locator(".jp-OutputArea-output").first).to_be_visible()
        expect(page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible()
        newest = _api(server, "runs")["runs"][0]
        assert newest["id"] > max(ids) and newest["status"] == "ok", newest
        assert _pixels(_api(server, f"runs/{newest['id']}/image")) == _pixels(_api(server, f"runs/{original}/image"))
        # The sidebar picks the new run up by itself while it is open.
        expect(panel.locator(f'.knb-RunRow[data-run-id="{newest["id"]}"]')).to_be_visible()
        screenshot(page, "jupyterlab_extension_insert_code")

        # File > New > Kandinsky Notebook: a notebook with the starter cells, ready to generate.
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^New$")).click()
        page.locator(".lm-Menu-itemLabel", has_text="Kandinsky Notebook").click()
        starter = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").first
        expect(starter).to_contain_text("%load_ext kandinsky_nb")
        page.close()
    assert not errors, errors


def test_notebook7_opens_the_sidebar_from_the_palette_in_the_dark_theme(served, browser, demo_log):
    root, env = served
    themes = root / "_lab_settings" / "@jupyterlab" / "apputils-extension"
    themes.mkdir(parents=True, exist_ok=True)
    (themes / "themes.jupyterlab-settings").write_text(json.dumps({"theme": "JupyterLab Dark"}))
    with jupyterlab(root, env) as server:
        total = _api(server, "runs")["total"]
        page, errors = _page(browser)
        page.goto(f"{server.base}/notebooks/scratch.ipynb?token={TOKEN}")
        page.locator(".jp-NotebookPanel").first.wait_for(state="visible")
        accept_kernel_dialog(page)
        # Notebook 7 has no left tab bar: the palette's command opens the sidebar.
        _show_runs(page)
        panel = page.locator("#kandinsky-nb-runs")
        expect(panel.locator(".knb-RunRow")).to_have_count(total)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#kandinsky-nb-runs img.knb-thumb')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        # The theme's variables, not fixed colours: dark background, light text.
        background, text = panel.evaluate(
            "node => [getComputedStyle(node).backgroundColor, getComputedStyle(node).color]"
        )
        assert _luminance(background) < 0.3 < 0.6 < _luminance(text), (background, text)
        screenshot(page, "notebook7_extension_sidebar_dark")
        page.close()
    assert not [e for e in errors if not NOTEBOOK7_SHELL_NOISE.search(e)], errors
