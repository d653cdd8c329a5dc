"""The run viewer and the comparison, on the real offline demo engine: a GeneratePanel result, a Gallery tile and a
SweepPanel cell each open one run (full image, parameters, file link, reproducing code); Reuse fills a GeneratePanel,
Re-run sends the same request as a new task through the session, Compare puts runs side by side with what differs
marked. State objects and widget values only; no browser."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kandinsky_nb.errors import ConfigurationError, SweepError
from kandinsky_nb.html import ComparedRun, differing_fields, html_from_comparison
from kandinsky_nb.ui import Gallery, GeneratePanel, SweepPanel
from kandinsky_nb.ui.viewer import (
    ComparisonState,
    RunViewer,
    code_for_row,
    compare_runs,
    compared_params,
    request_from_row,
)

pytestmark = pytest.mark.local


def generate(panel: GeneratePanel, **values) -> None:
    panel.update(**({"positivePrompt": "a red fox in snow", "steps": 10, "size": "1K (~20:9)"} | values))
    panel.generate()  # no running loop in a plain test: runs now
    assert panel.run_state.outcome == "success", panel.errors.widget.value


def row(session, run_id: int) -> dict:
    (found,) = session.runs.get(run_id)
    return found


def pixels(path_or_bytes):
    import io

    from PIL import Image

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


# -- pure: what differs, the HTML that marks it, the code ---------------------------------------------------------


def test_differing_fields_and_the_comparison_html_mark_only_what_differs():
    a = {"steps": 10, "CFGScale": 5.0, "lora": [{"model": "x", "weight": 1}]}
    b = {"steps": 20, "CFGScale": 5.0, "lora": [{"weight": 1, "model": "x"}], "negativePrompt": "blur"}
    assert differing_fields([a, b]) == ["steps", "negativePrompt"]  # a field only one run has differs
    markup = html_from_comparison(
        [ComparedRun("#1", None, a, {"cost": "$0.01"}), ComparedRun("#2", None, b, {"cost": "$0.02"})]
    )
    assert markup.count('class="knb-differs"') == 2 and "<b>2</b> parameters differ: negativePrompt, steps" in markup
    assert '<tr class="knb-differs"><th>steps' in markup and "<tr><th>CFGScale</th>" in markup
    # What a run came to is shown, never marked: every run's cost and time differ.
    assert '<tr class="knb-outcome"><th>cost</th>' in markup
    assert "Nothing to compare" in html_from_comparison([])


def test_the_code_a_run_copies_is_the_jupyter_sidebars_and_reproduces_its_request(demo_session):
    from kandinsky_nb.jupyter import code as jupyter_code
    from kandinsky_nb.planning import code as planning_code

    assert jupyter_code.reproduce_code is planning_code.reproduce_code  # one builder, below the panels
    demo_session.generate("a red fox in snow", steps=12)  # the seed is left to the engine
    logged = row(demo_session, 1)
    code = code_for_row(logged)
    assert "knb.Session(engine='demo')" in code and "'taskUUID'" not in code
    # The request the code builds is the logged one, with the seed the engine drew fixed.
    body = code.split("request = ", 1)[1].split("\ngeneration = ")[0]
    import kandinsky_nb as knb

    rebuilt = eval(body, {"knb": knb})
    expected = {k: v for k, v in json.loads(logged["request_json"]).items() if k != "taskUUID"}
    assert {k: v for k, v in rebuilt.to_wire().items() if k != "taskUUID"} == expected | {"seed": logged["seed"]}
    assert request_from_row(logged).to_wire() | {"taskUUID": None} == rebuilt.to_wire() | {"taskUUID": None}


def test_a_defaulted_scheduler_compares_equal_to_the_one_it_stands_for(demo_session):
    demo_session.generate("a fox", steps=10, seed=3)  # scheduler left to the model
    demo_session.generate("a fox", steps=10, seed=3, scheduler="Euler")
    demo_session.generate("a fox", steps=14, seed=4, scheduler="Euler")
    first, named, other = (compared_params(row(demo_session, i)) for i in (1, 2, 3))
    assert first["scheduler"] == named["scheduler"] == "Euler"
    state = ComparisonState()
    for run_id in (1, 2):
        state.add(row(demo_session, run_id))
    assert state.differing() == [] and not state.add(row(demo_session, 1))  # each run at most once
    state.add(row(demo_session, 3))
    assert state.differing() == ["steps", "seed"] and other["size"] == "1024x1024"
    view = compare_runs(demo_session, [1, 3])
    assert view.table.value.count('class="knb-differs"') == 2 and view.table.value.count("knb-compare-image") == 2
    assert "demo weights: noise" in view.table.value
    # Two runs: a wipe between their images too (a slider over the two stacked images).
    assert view.wipe.value.count("<img") == 2 and 'type="range"' in view.wipe.value and "#1" in view.wipe.value
    view.add(row(demo_session, 2))
    assert view.wipe.value == ""  # three runs: side by side only
    view.clear_button.click()
    assert view.state.runs == [] and view.layout.display == "none"


# -- the GeneratePanel: View, Reuse, Re-run, Compare ----------------------------------------------------------------


def test_a_generate_panel_result_opens_in_the_viewer_with_every_action(demo_session):
    panel = GeneratePanel(demo_session)
    assert panel.view_buttons.children == () and panel.viewer is None
    generate(panel, numberResults=2)
    assert [b.description for b in panel.view_buttons.children] == ["View image 1", "View image 2"]
    panel.view_buttons.children[1].click()
    viewer = panel.viewer
    assert viewer is not None and panel.viewer_area.children == (viewer,) and viewer.layout.display is None
    logged = row(demo_session, viewer.state.run_id)
    assert logged["result_index"] == 1 and viewer.state.run_id == 2
    # The full image, aspect kept (not stretched to the parameters' height), its parameters, its file and its code.
    path = demo_session.runs.image_path(logged)
    assert viewer.image.value == path.read_bytes() and viewer.image.format == "jpeg"
    layout = viewer.image.layout
    assert (layout.object_fit, layout.height, layout.align_self) == ("contain", "auto", "flex-start")
    assert f"{logged['seed']}" in viewer.params.value and "demo weights" in viewer.title.value
    assert path.as_uri() in viewer.file_link.value
    assert 'class="knb-copy"' in viewer.code_html.value and "navigator.clipboard" in viewer.code_html.value
    assert "session.generate(request=request)" in viewer.code_html.value and viewer.code() == code_for_row(logged)

    # Reuse puts the run back in this panel, its seed fixed (the form had moved on).
    panel.update(steps=30, positivePrompt="something else")
    viewer.reuse_button.click()
    assert panel.request.steps == 10 and panel.request.seed == logged["seed"]
    assert panel.state.positivePrompt == "a red fox in snow" and "Reused run #2" in viewer.status.value

    # Re-run: the same request as a new task, logged as a new run, and opened; the same seed gives the same pixels.
    viewer.rerun_button.click()
    assert viewer.state.run_id == 3 and "Re-ran run #2 as run #3" in viewer.status.value
    again = row(demo_session, 3)
    assert again["task_uuid"] != logged["task_uuid"] and again["seed"] == logged["seed"]
    assert pixels(demo_session.runs.image_path(again)) == pixels(path)

    # Compare the re-run with its original: the same request, nothing marked.
    viewer.compare_button.click()
    viewer.show(2)
    viewer.compare_button.click()
    viewer.compare_button.click()  # already there: said, not added twice
    assert viewer.comparison.state.ids == [3, 2] and "already in" in viewer.status.value
    assert "(the same request)" in viewer.comparison.table.value
    assert 'class="knb-differs"' not in viewer.comparison.table.value
    # Close hides the run; the comparison stays on screen until it is cleared.
    viewer.close_button.click()
    assert viewer.run is None and viewer.body.layout.display == "none" and viewer.layout.display is None
    assert viewer.reuse_button.disabled and viewer.rerun_button.disabled
    viewer.comparison.clear_button.click()
    assert viewer.layout.display == "none"


async def test_a_rerun_runs_as_a_task_and_a_second_click_waits_for_it(demo_session):
    demo_session.generate("a fox", steps=10, seed=5)
    viewer = RunViewer(demo_session, 1)
    task = viewer.rerun()
    assert isinstance(task, asyncio.Task) and viewer.rerun_button.disabled
    assert viewer.rerun_button.description == "Re-running…"
    assert viewer.rerun() is task  # one re-run at a time: never paid twice
    generation = await task
    assert generation.seeds == [5] and viewer.state.run_id == 2 and not viewer.rerun_button.disabled
    assert len(demo_session.runs) == 2


def test_a_viewer_says_what_it_lacks(demo_session):
    demo_session.generate("a fox", steps=10, seed=5)
    with pytest.raises(ConfigurationError, match="needs a run log"):
        RunViewer().show(1)
    with pytest.raises(ConfigurationError, match="no such row"):
        RunViewer(demo_session).show(99)
    viewer = RunViewer(demo_session, demo_session.runs.df["id"].iloc[0])  # a NumPy integer, as a df gives
    assert viewer.state.run_id == 1
    with pytest.raises(ConfigurationError, match="no GeneratePanel to fill"):
        viewer.reuse()
    assert viewer.state.generate_state().seed == "5"  # the form's values, for code that has no panel
    viewer.reuse_button.click()  # a button's error lands in the viewer, not lost in the front end
    assert "no GeneratePanel to fill" in viewer.errors.widget.value
    standalone = RunViewer(runs=demo_session.runs, run=1)  # a run log alone: no session to re-run through
    assert standalone.rerun_button.disabled and not standalone.compare_button.disabled


# -- the Gallery and the SweepPanel open their runs in the viewer ----------------------------------------------------


def test_gallery_tiles_open_in_the_viewer_and_two_of_them_compare(demo_session):
    panel = GeneratePanel(demo_session)
    generate(panel, steps=10, random_seed=False, seed="7")
    generate(panel, steps=14, random_seed=False, seed="7")
    gallery = Gallery(demo_session, panel=panel)
    assert gallery.detail is gallery.viewer and gallery.viewer.layout.display == "none"
    newest, oldest = gallery.grid.children
    newest.children[-1].click()
    assert gallery.viewer.state.run_id == 2 == gallery.state.selected_id
    gallery.viewer.compare_button.click()
    oldest.children[-1].click()
    gallery.viewer.compare_button.click()
    table = gallery.viewer.comparison.table.value
    assert "<b>1</b> parameter differs: steps" in table and table.count('class="knb-differs"') == 1
    # A re-run from the gallery joins its thumbnails without a click on Refresh.
    gallery.viewer.rerun_button.click()
    assert len(gallery.grid.children) == 3 and gallery.viewer.state.run_id == 3
    # Closing the viewer forgets the selection.
    gallery.viewer.close_button.click()
    assert gallery.state.selected_id is None


def test_a_sweep_cell_opens_in_the_viewer_from_the_list_or_a_click_on_its_image(demo_session):
    sweep = SweepPanel(demo_session)
    sweep.update(prompt="a blue whale", axes={"seed": "1, 2"})
    assert [label for label, _ in sweep.cell_picker.options] == ["choose a finished cell"]
    with pytest.raises(SweepError, match="none yet"):
        sweep.open_cell("seed=1")
    sweep.run()
    labels = [label for label, _ in sweep.cell_picker.options][1:]
    assert len(labels) == 2 and sweep.viewer.layout.display == "none"
    # Each cell's image carries its key and a click handler that picks it in the list.
    for label in labels:
        assert f'data-cell="{label}"' in sweep.grid.value
    assert sweep.grid.value.count("knb-sweep-open select") == 2
    # Picking a cell (what a click on its image does in the browser) opens it; the list goes back to its prompt,
    # so the same cell can be opened again.
    sweep.cell_picker.label = labels[1]
    opened = sweep.viewer.run
    assert opened is not None and sweep.cell_picker.value is None and sweep.viewer.layout.display is None
    assert labels == ["seed=1", "seed=2"] and opened["seed"] == 2 and opened["sweep_id"]
    assert sweep.open_cell(labels[0]).run["seed"] == 1
    with pytest.raises(SweepError, match="finished cells: "):
        sweep.open_cell("seed=99")
    # With no GeneratePanel as its base, Reuse opens one under the viewer.
    sweep.viewer.reuse_button.click()
    (opened_panel,) = sweep.viewer.panel_area.children
    assert isinstance(opened_panel, GeneratePanel) and opened_panel.request.seed == 1
    assert opened_panel.request.positivePrompt == "a blue whale"
    # A form that no longer plans a sweep offers none of its cells.
    sweep.update(axes={"seed": "1-"})
    assert sweep.plan is None and [label for label, _ in sweep.cell_picker.options] == ["choose a finished cell"]


# -- the inline handlers, in a real browser (a static page: no Jupyter needed) ---------------------------------------


@pytest.mark.browser
def test_the_copy_button_the_wipe_and_a_cell_click_work_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from browser_support import CHROMIUM, CHROMIUM_ARGS, chromium_available

    if not chromium_available():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from PIL import Image

    from kandinsky_nb.html import STYLE, html_from_code, html_from_wipe
    from kandinsky_nb.ui.sweep import _OPEN_CELL_HANDLER

    images = []
    for colour in ("red", "blue"):
        path = tmp_path / f"{colour}.png"
        Image.new("RGB", (320, 160), colour).save(path)
        images.append(path.read_bytes())
    wipe = html_from_wipe(ComparedRun("#1", images[0], {}), ComparedRun("#2", images[1], {}))
    # The SweepPanel's DOM as ipywidgets draws it: a Dropdown's <select> whose option values are the labels as given
    # and whose text has no-break spaces, and the grid's cell image.
    label = "seed=1, CFGScale=5"
    shown = label.replace(" ", "\xa0")
    cell = (
        '<div class="knb-sweep-panel"><div class="knb-sweep-open"><select>'
        '<option value="choose a finished cell">choose\xa0a\xa0finished\xa0cell</option>'
        f'<option value="{label}">{shown}</option></select></div>'
        f'<img id="cell" data-cell="{label}" onclick="{_OPEN_CELL_HANDLER}" width="40" height="40"/></div>'
        "<script>document.querySelector('select').addEventListener('change',"
        "e=>{window.picked=e.target.selectedIndex})</script>"
    )
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_content(STYLE + html_from_code("print('hello')") + wipe + cell)
            page.locator("button.knb-copy").click()
            playwright.expect(page.locator("button.knb-copy")).to_have_text("Copied")
            top = page.locator("img.knb-wipe-top")
            assert "50%" in top.get_attribute("style")
            page.locator("input.knb-wipe-slider").fill("80")
            assert "80%" in top.evaluate("e => e.style.clipPath")
            page.locator("#cell").click()
            assert page.evaluate("window.picked") == 1
        finally:
            browser.close()
