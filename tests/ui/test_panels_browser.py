"""The panels in a real browser: JupyterLab and Voila started here on 127.0.0.1, headless Debian Chromium driven by
Playwright, the demo notebook opened, the GeneratePanel filled and clicked, images and the run log updating, and a
sweep run from the SweepPanel. Light and dark themes, full and half width: every panel is measured (no widget outside
its panel, no overlapping neighbours, no clipped label) and its text contrast checked; images keep their aspect.
Screenshots and the measured click-to-image time go to artifacts/screenshots/ (gitignored).

Skipped, not failed, where Chromium or Playwright is missing (CI installs Debian's chromium first).
"""

from __future__ import annotations

import json
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


# Measures a panel in the page: widgets (and images, buttons, labels) outside the panel's box, neighbours in one row
# that overlap, and labels cut short (an ellipsis or hidden overflow). Hidden elements and the contents of our own
# scroll areas (.knb-json, .knb-scroll: a wide sweep table scrolls inside its panel) are left out.
_LAYOUT_PROBLEMS = """
(root) => {
  const box = root.getBoundingClientRect();
  const problems = [];
  const visible = (el) => {
    if (!el.getClientRects().length) return false;
    const style = getComputedStyle(el);
    return style.visibility !== 'hidden' && style.display !== 'none';
  };
  const name = (el) => (el.className && el.className.baseVal === undefined ? String(el.className) : el.tagName)
    .split(' ').filter((c) => c.startsWith('knb-') || c.startsWith('jupyter-widget') || c.startsWith('widget-'))
    .slice(0, 3).join('.') + ' "' + (el.innerText || el.alt || '').trim().slice(0, 30) + '"';
  const scrolled = (el) => el.closest('.knb-json, .knb-scroll');
  const parts = root.querySelectorAll('.jupyter-widgets, button, img, label, .widget-label, .widget-readout');
  for (const el of parts) {
    if (!visible(el) || (scrolled(el) && scrolled(el) !== el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < box.left - 1 || r.right > box.right + 1) {
      problems.push(`outside the panel: ${name(el)} ${Math.round(r.left)}..${Math.round(r.right)} of ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
    if (el.matches('button, label, .widget-label') && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`clipped label: ${name(el)} (${el.scrollWidth} > ${el.clientWidth} px)`);
    }
  }
  for (const row of root.querySelectorAll('.jupyter-widget-hbox, .widget-hbox')) {
    if (!visible(row)) continue;
    const kids = [...row.children].filter(visible).map((el) => [el, el.getBoundingClientRect()]);
    for (let i = 0; i < kids.length; i++) {
      for (let j = i + 1; j < kids.length; j++) {
        const [a, ra] = kids[i], [b, rb] = kids[j];
        const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
        const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
        if (w > 2 && h > 2) problems.push(`overlap: ${name(a)} and ${name(b)}`);
      }
    }
  }
  return problems;
}
"""

# WCAG contrast of an element's text against the first opaque background behind it.
_CONTRAST = """
(el) => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let node = el, background = null;
  while (node && node.nodeType === 1) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) { background = c; break; }
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const [l1, l2] = [lum(rgb(getComputedStyle(el).color)), lum(background)].sort((a, b) => b - a);
  return (l1 + 0.05) / (l2 + 0.05);
}
"""


def assert_fits(page, selector: str, what: str) -> None:
    """Every panel matching ``selector`` lays out inside itself (see _LAYOUT_PROBLEMS)."""
    panels = page.locator(selector)
    assert panels.count(), f"no {selector} on the page"
    for index in range(panels.count()):
        problems = panels.nth(index).evaluate(_LAYOUT_PROBLEMS)
        assert not problems, f"{what}, {selector}: " + "; ".join(problems[:12])


def assert_readable(page, selector: str, what: str, minimum: float = 4.5) -> None:
    """Text in ``selector`` has at least WCAG AA contrast against what is behind it."""
    elements = page.locator(selector)
    assert elements.count(), f"no {selector} on the page"
    for index in range(elements.count()):
        ratio = elements.nth(index).evaluate(_CONTRAST)
        assert ratio >= minimum, f"{what}: {selector} has contrast {ratio:.2f}, below {minimum}"


def assert_aspect_kept(image, what: str) -> None:
    # A busy machine may still be decoding the image (naturalWidth 0) or laying it out: wait for both, then measure.
    image.wait_for(state="visible")
    image.page.wait_for_function(
        "(el) => el.complete && el.naturalWidth > 0 && el.getBoundingClientRect().width > 0",
        arg=image.element_handle(),
        timeout=TIMEOUT_MS,
    )
    natural_w, natural_h, shown_w, shown_h = image.evaluate(
        "(el) => [el.naturalWidth, el.naturalHeight, el.getBoundingClientRect().width, el.getBoundingClientRect().height]"
    )
    assert natural_w and shown_w, what
    assert abs(shown_w / shown_h - natural_w / natural_h) < 0.03 * natural_w / natural_h, (
        f"{what}: a {natural_w}x{natural_h} image shown at {shown_w:.0f}x{shown_h:.0f}"
    )


def switch_jupyterlab_theme(page, theme: str, light: bool) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{theme}$")).click()
    expect(page.locator(f"body[data-jp-theme-light='{str(light).lower()}']")).to_be_attached()


def record_timing(name: str, seconds: float) -> None:
    from browser_support import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 3)
    path.write_text(json.dumps(timings, indent=2))


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
    # The engine and what the estimate means are said before anything runs.
    expect(panel.locator(".knb-engine-line")).to_contain_text("demo")
    started = time.perf_counter()
    generate.click()
    expect(panel.locator(".knb-results img.knb-thumb")).to_have_count(1, timeout=TIMEOUT_MS)
    record_timing(f"click_to_image_s:{prompt}", time.perf_counter() - started)
    expect(panel.locator(".knb-results")).to_contain_text("seed")
    expect(panel.locator(".knb-log-count")).to_have_text(str(log_rows))
    # A click on the thumbnail opens the image in place, with its own aspect; a second click closes it.
    panel.locator(".knb-results img.knb-thumb").first.click()
    large = panel.locator(".knb-results img.knb-large").first
    expect(large).to_be_visible()
    assert_aspect_kept(large, "the GeneratePanel's opened result")
    large.click()
    expect(large).to_be_hidden()


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

        # The run log grew: the gallery shows the new image after a refresh, and opens it (aspect kept).
        gallery = page.locator(".knb-gallery")
        gallery.locator("button.knb-gallery-refresh").click()
        expect(gallery.locator(".knb-gallery-tile")).to_have_count(1)
        gallery.locator("button.knb-gallery-open").first.click()
        expect(gallery.locator(".knb-detail-params")).to_contain_text("positivePrompt")
        assert_aspect_kept(gallery.locator("img.knb-detail-image"), "the Gallery's opened image")

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
        cost = page.locator(".knb-cost-panel")
        cost.locator("button.knb-cost-refresh").click()
        expect(cost.locator("img.knb-cost-plot")).to_be_visible()
        assert_fits(page, ".knb-panel", "light theme, full width")

        # Dark theme: the request JSON and captions stay readable (theme variables, not fixed colours).
        switch_jupyterlab_theme(page, "JupyterLab Dark", light=False)
        for selector in (".knb-json", ".knb-caption", ".knb-problems, .knb-muted", ".knb-engine-line b"):
            assert_readable(page, selector, "dark theme")
        screenshot(page, "lab_dark_generate_panel")

        # Half width: nothing overlaps, spills out of its panel or loses its label.
        page.set_viewport_size({"width": 760, "height": 1600})
        page.wait_for_timeout(500)  # let JupyterLab lay out again
        assert_fits(page, ".knb-panel", "dark theme, half width")
        for name, selector in (
            ("generate", ".knb-generate-panel"),
            ("sweep", ".knb-sweep-panel"),
            ("gallery", ".knb-gallery"),
            ("cost", ".knb-cost-panel"),
        ):
            page.locator(selector).screenshot(path=str(screenshot_path(f"half_width_dark_{name}")))
        switch_jupyterlab_theme(page, "JupyterLab Light", light=True)
        for selector in (".knb-json", ".knb-caption", ".knb-engine-line b"):
            assert_readable(page, selector, "light theme")
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


def test_ctrl_enter_generates_in_jupyterlab_without_running_the_cell(served_folder, browser):
    root, env = served_folder
    with jupyterlab(root, env) as server:
        page, page_errors = _new_page(browser, height=1600)
        open_notebook_and_run_all(page, server, NOTEBOOK.name)
        panel = page.locator(".knb-generate-panel")
        prompt = panel.locator(".knb-positivePrompt textarea")
        prompt.fill("a heron at dawn")
        expect(panel.locator("button.knb-generate")).to_be_enabled()
        # Focus order follows the form: Tab from the prompt reaches the negative prompt, then the size.
        prompt.focus()
        page.keyboard.press("Tab")
        expect(panel.locator(".knb-negativePrompt textarea")).to_be_focused()
        page.keyboard.press("Tab")
        expect(panel.locator(".knb-size select")).to_be_focused()
        prompt.focus()
        started = time.perf_counter()
        prompt.press("Control+Enter")
        expect(panel.locator(".knb-results img.knb-thumb")).to_have_count(1, timeout=TIMEOUT_MS)
        record_timing("ctrl_enter_to_image_s", time.perf_counter() - started)
        # The panel generated; JupyterLab did not also run the cell (that would redraw an empty form) and the
        # prompt got no new line.
        expect(prompt).to_have_value("a heron at dawn")
        expect(panel.locator(".knb-log-count")).to_have_text("1")
        page.close()
    assert not page_errors, page_errors


def test_voila_renders_the_panel_and_generates(served_folder, browser):
    root, env = served_folder
    with voila(root / NOTEBOOK.name, env) as server:
        page, page_errors = _new_page(browser, height=1500)  # tall: the README screenshot shows form and result
        page.goto(f"{server.base}/")
        _generate_from_the_panel(page, "a lighthouse at dusk")
        assert_fits(page, ".knb-panel", "Voila, light theme")
        screenshot(page, "voila_generate_panel")
        page.close()
    assert not page_errors, page_errors


def test_voila_dark_at_half_width(served_folder, browser):
    root, env = served_folder
    config = root / "_jupyter_config"  # the JUPYTER_CONFIG_DIR browser_support gives the server
    config.mkdir(parents=True, exist_ok=True)
    (config / "voila.json").write_text(json.dumps({"VoilaConfiguration": {"theme": "dark"}}))
    with voila(root / NOTEBOOK.name, env) as server:
        page = browser.new_page(viewport={"width": 640, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.goto(f"{server.base}/")
        _generate_from_the_panel(page, "a harbour at night")
        expect(page.locator("body[data-jp-theme-light='false']")).to_be_attached()
        assert_fits(page, ".knb-panel", "Voila, dark theme, 640 px")
        for selector in (".knb-json", ".knb-caption", ".knb-engine-line b"):
            assert_readable(page, selector, "Voila, dark theme")
        screenshot(page, "voila_dark_half_width", full_page=True)
        page.close()
    assert not page_errors, page_errors


def screenshot_path(name: str) -> Path:
    from browser_support import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
